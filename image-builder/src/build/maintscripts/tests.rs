//! The snippets are from Debian 12's packages (`dpkg-deb --control`),
//! shortened where marked.

use super::*;

fn post(script: &str) -> Vec<Finding> {
    classify(None, Some(script), false)
}

fn messages(findings: &[Finding], pkg: &str) -> Vec<String> {
    findings.iter().filter_map(|f| f.message(pkg)).collect()
}

/// openssh-server 1:9.2p1-2+deb12u10 postinst (shortened).
const OPENSSH_SERVER: &str = r#"#!/bin/sh
set -e

. /usr/share/debconf/confmodule
db_version 2.0

action="$1"

umask 022

get_config_option() {
	option="$1"

	[ -f /etc/ssh/sshd_config ] || return

	# TODO: actually only one '=' allowed after option
	sed -E -n -e 's/[[:space:]]+/ /g' -e 's/[[:space:]]+$//' \
		-e 's/^[[:space:]]*'"$option"'[[:space:]=]+//Ip' \
		/etc/ssh/sshd_config
}

create_key() {
	msg="$1"
	shift
	hostkeys="$1"
	shift
	file="$1"
	shift

	if echo "$hostkeys" | grep -x "$file" >/dev/null && \
	   [ ! -f "$file" ] ; then
		printf %s "$msg"
		ssh-keygen -q -f "$file" -N '' "$@"
		echo
		if command -v restorecon >/dev/null 2>&1; then
			restorecon "$file" "$file.pub"
		fi
		ssh-keygen -l -f "$file.pub"
	fi
}

new_config=

cleanup() {
	if [ "$new_config" ]; then
		rm -f "$new_config"
	fi
}

create_sshdconfig() {
	db_get openssh-server/permit-root-login
	permit_root_login="$RET"

	trap cleanup EXIT
	new_config="$(mktemp)"
	cp -aZ /usr/share/openssh/sshd_config "$new_config"
	if [ "$permit_root_login" != true ]; then
		sed -i 's/^#*PermitRootLogin .*/PermitRootLogin yes/' \
			"$new_config"
	fi
	mkdir -pZ /etc/ssh
	ucf --three-way --debconf-ok \
		--sum-file /usr/share/openssh/sshd_config.md5sum \
		"$new_config" /etc/ssh/sshd_config
	ucfr openssh-server /etc/ssh/sshd_config
}

setup_sshd_user() {
	if ! getent passwd sshd >/dev/null; then
		adduser --quiet --system --no-create-home --home /run/sshd --shell /usr/sbin/nologin sshd
	fi
}

if [ "$action" = configure ]; then
	create_sshdconfig
	setup_sshd_user
	if dpkg --compare-versions "$2" lt-nl 1:7.9p1-5 && \
	   [ -f /etc/ssh/moduli.dpkg-bak ]; then
	    mv /etc/ssh/moduli.dpkg-bak /etc/ssh/moduli
	fi
	if dpkg --compare-versions "$2" lt-nl 1:9.1p1-1~ && \
	   deb-systemd-helper --quiet was-enabled ssh.socket && \
	   [ -d /run/systemd/system ]
	then
		systemctl unmask ssh.service
		systemctl disable ssh.service
	fi
fi

# Automatically added by dh_runit/2.15.2
if [ -z "${DPKG_ROOT:-}" ] ; then
    NAME='ssh' ENABLE='yes' ONUPGRADE='restart' /lib/runit-helper/runit-helper postinst "$@"
fi
# End automatically added section
# Automatically added by dh_installinit/13.11.4
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ] ; then
	if [ -z "${DPKG_ROOT:-}" ] && [ -x "/etc/init.d/ssh" ]; then
		update-rc.d ssh defaults >/dev/null
		invoke-rc.d --skip-systemd-native ssh $_dh_action || exit 1
	fi
fi
# End automatically added section

db_stop

exit 0
"#;

#[test]
fn openssh_server_needs_its_config_its_user_and_host_keys() {
    let f = post(OPENSSH_SERVER);
    let m = messages(&f, "openssh-server");
    assert_eq!(m.len(), 3, "{m:#?}");
    assert_eq!(
        m[0],
        "postinst of openssh-server creates `sshd` (`adduser --quiet --system --no-create-home --home /run/sshd --shell /usr/sbin/nologin sshd`), which Tandem does not run: declare `sshd` in the image definition's [[users]]"
    );
    assert_eq!(
        m[1],
        "postinst of openssh-server creates /etc/ssh/sshd_config, which Tandem does not run: provide /etc/ssh/sshd_config: [[usr.files]] source = \"…\" target = \"/etc/ssh/sshd_config\" (the package's template is /usr/share/openssh/sshd_config)"
    );
    assert_eq!(
        m[2],
        "postinst of openssh-server runs `ssh-keygen -q -f \"$file\" -N '' \"$@\"` and one more `ssh-keygen` command, which Tandem does not run: check whether openssh-server needs its effect"
    );
    // With a sysusers.d file, the user is the package's own business.
    let f = classify(None, Some(OPENSSH_SERVER), true);
    assert!(
        !f.iter().any(|f| matches!(f, Finding::User { .. })),
        "{f:?}"
    );
}

/// base-passwd 3.6.1 preinst and postinst (shortened): the user database,
/// which Tandem writes itself.
#[test]
fn base_passwd_is_quiet() {
    let pre = r#"#! /bin/sh
set -e

if [ "$1" = install ]; then
	if [ ! -e "$DPKG_ROOT/etc/passwd" ]; then
		cat > "$DPKG_ROOT/etc/passwd" <<'EOF'
root:*:0:0:root:/root:/bin/bash
daemon:*:1:1:daemon:/usr/sbin:/usr/sbin/nologin
EOF
	fi
fi
exit 0
"#;
    let post = r#"#! /bin/sh
set -e
if [ -f /usr/share/debconf/confmodule ]; then
	# shellcheck disable=SC1091
	. /usr/share/debconf/confmodule
fi
changes=0
askyesno () {
	while : ; do
		printf '%s ' "$1"
		read -r a || true
		a=$(echo $a | tr '[:upper:]' '[:lower:]')
		if [ "$a" = "y" ] || [ "$a" = "n" ] ; then
			break
		fi
	done
}
if [ ! -e "$DPKG_ROOT/etc/passwd" ] ; then
	cp "$DPKG_ROOT/usr/share/base-passwd/passwd.master" "$DPKG_ROOT/etc/passwd"
fi
tmp=$(mktemp)
if [ -n "$2" ] && ! update-passwd --dry-run > "$tmp" ; then
	cat <<EOF

update-passwd has found some differences
EOF
	askyesno "May I update your system? [Y/n]"
	if [ "$a" = "y" ] ; then
		update-passwd --verbose
	fi
fi
rm -f "$tmp"
if [ "$changes" -gt 0 ] ; then
	nscd -i passwd -i group || true
fi
exit 0
"#;
    let f = classify(Some(pre), Some(post), false);
    assert!(f.is_empty(), "{f:#?}");
}

/// libc6 2.36-9+deb12u14 (shortened): a marker file the preinst makes and
/// the postinst removes, the merged-/usr link, running-system chores.
#[test]
fn libc6_is_quiet() {
    let pre = r#"#!/bin/sh
set -e
type=$1
preversion=$2
if [ "$type" != abort-upgrade ]
then
    if [ -f /usr/share/debconf/confmodule ] && \
       ( [ "$DEBCONF_USE_CDEBCONF" ] || perl -e "" 2>/dev/null ) ; then
        . /usr/share/debconf/confmodule
        USE_DEBCONF=1
    fi
    dirs=$(echo $LD_LIBRARY_PATH | sed 's/:/ /g')
    for dir in $dirs ; do
        dir=$(readlink -e $dir || true)
        case "$dir" in
        /lib)
            seen_traditional=1
            ;;
        /lib/x86_64-linux-gnu)
            seen_multiarch=1
            ;;
        esac
    done
    kernel_ver=`uname -r`
    if [ "$1" = "upgrade" ]; then
        if ! grep -q -E 'libnss_(compat|db|files)' /proc/$(systemctl show --property MainPID --value systemd-logind.service)/maps >/dev/null 2>&1; then
            busctl call --system org.freedesktop.login1 /org/freedesktop/login1 org.freedesktop.login1.Manager \
                SetUserLinger ubb 4294967294 false false >/dev/null 2>&1 || true
        fi
    fi
    touch "$DPKG_ROOT/etc/ld.so.nohwcap"
fi
if [ "$1" = "install" ] || [ "$1" = "upgrade" ]; then
    if [ -L "$DPKG_ROOT/lib" ]; then
        if [ ! -L "${DPKG_ROOT}/lib64" ] && [ ! -d "${DPKG_ROOT}/lib64" ]; then
            mkdir -p "$DPKG_ROOT/usr/lib64"
            ln -s usr/lib64 "${DPKG_ROOT}/lib64"
        fi
    fi
fi
exit 0
"#;
    let post = r#"#!/bin/sh
set -e
type=$1
if [ "$type" = "configure" ]
then
    all_upgraded=yes
    for pkg in libc6.1-alphaev67 ; do
        ver=$(dpkg-query -l $pkg 2>/dev/null | sed -e '/^[a-z][a-z]\s/!d;/^.[nc]/d;' -e "s/^..\s\+$pkg[0-9a-z:]*\s\+//;s/\s.*//g")
    done
    if [ "$all_upgraded" = yes ] ; then
        rm -f "$DPKG_ROOT/etc/ld.so.nohwcap"
    fi
    for service in $check; do
        invoke-rc.d ${service} status >/dev/null 2>/dev/null && status=0 || status=$?
    done
    frontend=`echo "$DEBIAN_FRONTEND" | tr '[:upper:]' '[:lower:]'`
    if ischroot 2>/dev/null; then
        TELINIT=no
    elif [ -d /run/systemd/system ]; then
        if systemd --help >/dev/null 2>/dev/null; then
            systemctl daemon-reexec
        fi
    fi
    if [ "$TELINIT" = "yes" ]; then
        telinit u 2>/dev/null || true ; sleep 1
    fi
fi
exit 0
"#;
    let f = classify(Some(pre), Some(post), false);
    assert!(f.is_empty(), "{f:#?}");
}

/// mawk 1.3.4.20200120-3.1 postinst, as dh_installalternatives writes it.
#[test]
fn alternatives_with_literal_arguments_are_honoured() {
    let script = r#"#!/bin/sh
set -e
# Automatically added by dh_installalternatives/13.11.4
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ]; then
        update-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 \
            --slave /usr/share/man/man1/awk.1.gz awk.1.gz /usr/share/man/man1/mawk.1.gz \
            --slave /usr/bin/nawk nawk /usr/bin/mawk
fi
# End automatically added section
"#;
    let f = post(script);
    assert_eq!(
        f,
        [Finding::Alternative(Alternative {
            name: "awk".into(),
            link: "/usr/bin/awk".into(),
            path: "/usr/bin/mawk".into(),
            priority: 5,
            slaves: vec![
                (
                    "/usr/share/man/man1/awk.1.gz".into(),
                    "awk.1.gz".into(),
                    "/usr/share/man/man1/mawk.1.gz".into()
                ),
                (
                    "/usr/bin/nawk".into(),
                    "nawk".into(),
                    "/usr/bin/mawk".into()
                ),
            ],
        })]
    );
    assert!(messages(&f, "mawk").is_empty());
}

/// procps 2:4.0.2-3 postinst (shortened): an alternative through shell
/// variables cannot be set up; it is named instead. Removing one is nothing.
#[test]
fn alternatives_through_variables_are_named() {
    let script = r#"
check_alternatives() {
  BINNAME="$1"
  BINPATH="$2"
  MANSEC="$3"
  if [ -e "$BINPATH"/"$BINNAME".procps ] ; then
	update-alternatives --install "$BINPATH"/"$BINNAME" "$BINNAME" \
	    "$BINPATH"/"$BINNAME".procps 50 \
		--slave /usr/share/man/man"$MANSEC"/"$BINNAME"."$MANSEC".gz "$BINNAME"."$MANSEC".gz \
		/usr/share/man/man"$MANSEC"/"$BINNAME".procps."$MANSEC".gz
  fi
}
case "$1" in
    configure|abort-remove|abort-deconfigure)
	   if dpkg --compare-versions "$2" le "2:3.3.17-4"; then
	       update-alternatives --remove w /usr/bin/w.procps
	   fi
		check_alternatives "uptime" "/usr/bin" "1"
    ;;
    abort-upgrade)
	    # Nothing to do
    ;;
    *)
        echo "postinst called with unknown argument \`$1'" >&2
        exit 1
    ;;
esac
"#;
    let m = messages(&post(script), "procps");
    assert_eq!(m.len(), 1, "{m:#?}");
    assert!(
        m[0].starts_with(
            "postinst of procps runs `update-alternatives --install \"$BINPATH\"/\"$BINNAME\""
        ),
        "{m:#?}"
    );
}

/// openssh-client 1:9.2p1-2+deb12u10 postinst (shortened).
#[test]
fn groups_and_file_modes_are_named() {
    let script = r#"
set_ssh_agent_permissions() {
	if ! getent group _ssh >/dev/null; then
		addgroup --system --quiet --force-badname _ssh
	fi
	if ! dpkg-statoverride --list /usr/bin/ssh-agent >/dev/null; then
		chgrp _ssh /usr/bin/ssh-agent
		chmod 2755 /usr/bin/ssh-agent
	fi
}
remove_obsolete_alternatives() {
	update-alternatives --remove rcp /usr/bin/scp
}
if [ "$action" = configure ]; then
	set_ssh_agent_permissions
	remove_obsolete_alternatives
fi
"#;
    let f = post(script);
    assert_eq!(
        f[0],
        Finding::User {
            script: Script::Postinst,
            name: Some("_ssh".into()),
            command: "addgroup --system --quiet --force-badname _ssh".into()
        }
    );
    let m = messages(&f, "openssh-client");
    assert_eq!(m.len(), 3, "{m:#?}");
    assert!(
        m[1].contains("runs `chgrp _ssh /usr/bin/ssh-agent`"),
        "{m:#?}"
    );
    assert!(
        m[2].contains("runs `chmod 2755 /usr/bin/ssh-agent`"),
        "{m:#?}"
    );
}

/// libpam0g 1.5.2-6+deb12u3 postinst (shortened): a program in a variable.
#[test]
fn programs_in_variables_are_judged_by_their_value() {
    let script = r#"
if test -d /run/systemd/system; then
    restart_service() {
        if systemctl try-restart $1; then
            :
        fi
    }
else
    is_service_configured() {
	idl="/etc/init.d/${service}"
	if [ -n "$idl" ] && [ -x $idl ]; then
	    return 0
	fi
    }
    restart_service() {
	idl="invoke-rc.d ${service}"
	$idl stop > /dev/null 2>&1 || true
	if $idl start > /dev/null 2>&1; then
	    echo "done." 2>&1
	fi
    }
fi
"#;
    assert!(post(script).is_empty(), "{:#?}", post(script));
    let script = "x=\"$x more\"\n$x run\n";
    assert_eq!(messages(&post(script), "p").len(), 1);
}

/// netbase 6.4 postinst and sudo 1.9.13p3 (shortened): files made in /etc
/// by redirection, known variables expanded.
#[test]
fn files_written_into_etc_are_config_files() {
    let script = r#"
create_hosts_file() {
  if [ -e "$DPKG_ROOT/etc/hosts" ]; then return 0; fi
  cat > "$DPKG_ROOT/etc/hosts" <<-EOF
	127.0.0.1	localhost
	EOF
}
create_hosts_file
SUDOERS="/etc/sudoers"
if [ -e "$SUDOERS" ]; then
  mv "$SUDOERS" "$SUDOERS.pre-conffile"
fi
touch /etc/security/opasswd
mkdir -p /run/chrony-dhcp
sed 's/.*/server &/' > /run/chrony-dhcp/x.sources
"#;
    let f = post(script);
    assert_eq!(
        f,
        [
            Finding::ConfigFile {
                script: Script::Postinst,
                target: "/etc/hosts".into(),
                template: None
            },
            Finding::ConfigFile {
                script: Script::Postinst,
                target: "/etc/security/opasswd".into(),
                template: None
            },
        ]
    );
}

#[test]
fn anything_else_is_named_once_per_program() {
    let script = "setcap cap_net_admin=ep /bin/ip || setcap cap_net_admin=ep /bin/ip\nsetcap x /bin/ss\nupdate-ca-certificates --fresh\n";
    let m = messages(&post(script), "iproute2");
    assert_eq!(
        m,
        [
            "postinst of iproute2 runs `setcap cap_net_admin=ep /bin/ip` and one more `setcap` command, which Tandem does not run: check whether iproute2 needs its effect",
            "postinst of iproute2 runs `update-ca-certificates --fresh`, which Tandem does not run: check whether iproute2 needs its effect",
        ]
    );
}

#[test]
fn the_lexer_keeps_quotes_substitutions_and_heredocs_apart() {
    let cmds = commands(
        "a=\"$(mktemp)\"; b=`date` && echo \"x; y\" 'z | w' >> /var/log/x 2>&1\ncat <<EOF\nrm -rf /\nEOF\nfoo() { bar \"$@\"; }\ncase \"$1\" in configure) baz ;; esac\n",
    );
    let words: Vec<Vec<String>> = cmds.iter().map(|c| c.words.clone()).collect();
    let w = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    assert_eq!(
        words,
        [
            // Command substitutions come first, as they run first.
            w(&["mktemp"]),
            w(&["date"]),
            w(&[]),
            w(&[]),
            w(&["echo", "x; y", "z | w"]),
            w(&["cat"]),
            w(&[]),
            w(&["bar", "$@"]),
            w(&["baz"]),
        ]
    );
    assert_eq!(cmds[4].writes, ["/var/log/x"]);
    assert_eq!(
        cmds[2].assignments,
        [("a".to_string(), "\"$(mktemp)\"".to_string())]
    );
    assert_eq!(cmds[6].defines.as_deref(), Some("foo"));
}

/// libgssapi-krb5-2 1.20.1-2+deb12u5 and init-system-helpers 1.65.2+deb12u1
/// postinst (shortened): what only an upgrade runs is nothing for an image,
/// which is always a first installation; what a first installation runs is.
#[test]
fn branches_only_an_upgrade_runs_are_skipped() {
    let script = r#"
if [ "configure" = "$1" -a "x$2" != "x" ]; then
    if dpkg --compare-versions $2  lt 1.12.1+dfsg-2\
        && test -f /usr/etc/gss/mech; then
	cp /usr/etc/gss/mech /etc/gss/mech
	fi
    fi
if [ "$1" = "configure" ] && [ -n "$2" ] && dpkg-divert --list /etc/os-release | grep -q os-release.debootstrap; then
    dpkg-divert --quiet --local --remove --no-rename /etc/os-release
    ln -s ../usr/lib/os-release /etc/x-release
fi
preversion=$2
if [ -n "$preversion" ]; then
    setcap cap_net_raw=ep /usr/bin/upgrade-only
elif [ -z "$preversion" ]; then
    setcap cap_net_raw=ep /usr/bin/first-install
else
    setcap cap_net_raw=ep /usr/bin/else-branch
fi
if dpkg --compare-versions "$2" lt-nl 1.0 && [ -f /etc/x ]; then chmod 600 /etc/x; fi
if dpkg --compare-versions "$2" lt 1.0; then chmod 600 /etc/first; fi
if [ -z "$2" ] || dpkg --compare-versions "$2" lt-nl 1.0; then chown root /etc/either; fi
"#;
    let m = messages(&post(script), "p").join("\n");
    for skipped in ["gss", "x-release", "upgrade-only", "/etc/x`"] {
        assert!(!m.contains(skipped), "{skipped}: {m}");
    }
    for kept in ["first-install", "/etc/first", "/etc/either"] {
        assert!(m.contains(kept), "{kept}: {m}");
    }
    // The else branch of an upgrade-only `if` is a first installation's.
    let m2 = messages(
        &post(
            "if [ -n \"$2\" ]; then\n  setcap a /usr/bin/up\nelse\n  setcap b /usr/bin/fresh\nfi\n",
        ),
        "p",
    );
    assert_eq!(m2.len(), 1, "{m2:?}");
    assert!(m2[0].contains("/usr/bin/fresh"), "{m2:?}");
}

#[test]
fn upgrade_only_conditions() {
    let w = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    let none: Vec<String> = Vec::new();
    for yes in [
        "[ -n $2 ]",
        "[ $2 ]",
        "[ x$2 != x ]",
        "dpkg --compare-versions $2 lt-nl 1.0",
        "dpkg --compare-versions $2 gt 1.0",
        "[ $1 = upgrade ]",
        "[ $1 = configure ] [ -n ${2} ]",
    ] {
        assert!(upgrade_only(&w(yes), &none, &none), "{yes}");
    }
    for no in [
        "dpkg --compare-versions $2 lt 1.0",
        "dpkg --compare-versions $2 ge-nl 1.0",
        "[ -z $2 ] || [ -n $2 ]",
        "! [ -n $2 ]",
        "[ $1 = configure ]",
        "[ -n $3 ]",
    ] {
        assert!(!upgrade_only(&w(no), &none, &none), "{no}");
    }
    assert!(upgrade_only(&w("[ -n $old ]"), &none, &["old".to_string()]));
}

#[test]
fn odd_input_does_not_panic() {
    let deep = format!("{}x{}", "$(".repeat(10_000), ")".repeat(10_000));
    for text in [
        deep.as_str(),
        "\"unclosed",
        "'unclosed",
        "$(",
        "${",
        "`",
        "cat <<EOF",
        "a \\",
        "case",
        "if then fi fi esac ;; ) (",
        "x=$((1 + (2)))",
        ">",
        "2>",
        "é ü $é ${é} `é`",
    ] {
        let _ = classify(Some(text), Some(text), false);
    }
}
