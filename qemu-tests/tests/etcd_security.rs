//! The etcd client's security options against a real etcd on loopback, no
//! QEMU: TLS with client certificates (`--client-cert-auth`) and etcd's
//! user/password authentication, each with the reboot lock taken and given
//! back through it, and the failures an operator meets (no client
//! certificate, wrong CA, a key that does not fit the certificate, wrong
//! password, no credentials) checked to say what is wrong.
//!
//! Needs `etcd` (Debian's etcd-server) and `openssl`; none of the TANDEM_*
//! variables.

use agent::etcd::{self, Auth, Etcd, Tls};
use agent::lock::{self, Lock, Locked, Unlocked};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use qemu_tests::etcd::{EtcdCluster, Options, TestPki};

/// The semaphore key of these tests.
const KEY: &str = "tandem-test/security/semaphore";

/// Takes the lock for `id` and gives it back, checking each answer.
fn lock_unlock(etcd: &Etcd, id: &str) -> Result<()> {
    let lock = Lock::at_key(etcd, KEY);
    let l = lock.lock(id).with_context(|| format!("{id}: lock"))?;
    ensure!(matches!(l, Locked::Acquired { .. }), "{id}: {l:?}");
    ensure!(lock.status()?.semaphore.holders == [id]);
    let u = lock.unlock(id).with_context(|| format!("{id}: unlock"))?;
    ensure!(matches!(u, Unlocked::Released { .. }), "{id}: {u:?}");
    Ok(())
}

/// The etcd error inside a lock error.
fn etcd_error(e: lock::Error) -> etcd::Error {
    match e {
        lock::Error::Etcd(e) => e,
        other => panic!("not an etcd error: {other}"),
    }
}

#[test]
fn tls_client_certificates() -> Result<()> {
    let dir = tempfile::Builder::new().prefix("tandem-pki-").tempdir()?;
    let pki = TestPki::generate(dir.path())?;
    let cluster = EtcdCluster::start_with(
        1,
        Options {
            tls: Some(pki.clone()),
            ..Options::default()
        },
    )?;
    let urls = cluster.client_urls();
    let url = &urls[0];
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // CA + client certificate + key: the lock works, and etcd's history
    // of the key shows both changes.
    let etcd = Etcd::new(&urls, Auth::None, &pki.client_tls())?;
    lock_unlock(&etcd, "node-tls")?;
    let history = cluster.history(KEY)?;
    assert_eq!(history.len(), 2, "{history:?}");
    println!(
        "TLS with a client certificate: lock + unlock through {url}, {} revisions in etcd",
        history.len()
    );

    // The CA only, no client certificate: etcd refuses the connection.
    let no_cert = Etcd::new(
        &urls,
        Auth::None,
        &Tls {
            ca_file: Some(pki.ca.clone()),
            ..Tls::default()
        },
    )?;
    let e = etcd_error(Lock::at_key(&no_cert, KEY).lock("node-x").unwrap_err());
    let text = e.to_string();
    println!("no client certificate: {text}");
    assert!(matches!(e, etcd::Error::TlsSession { .. }), "{e:?}");
    assert!(!e.is_transient(), "{e:?}");
    assert!(
        text.contains(url.as_str())
            && text.contains("BadCertificate")
            && text.contains("client certificate")
            && text.contains("cert-file and key-file"),
        "{text}"
    );

    // A client certificate of a CA etcd does not trust.
    let stranger = Etcd::new(
        &urls,
        Auth::None,
        &Tls {
            cert_file: Some(pki.stranger_cert.clone()),
            key_file: Some(pki.stranger_key.clone()),
            ..pki.client_tls()
        },
    )?;
    let e = etcd_error(Lock::at_key(&stranger, KEY).lock("node-x").unwrap_err());
    let text = e.to_string();
    println!("client certificate of another CA: {text}");
    assert!(matches!(e, etcd::Error::TlsSession { .. }), "{e:?}");
    assert!(
        text.contains(url.as_str()) && text.contains("--trusted-ca-file"),
        "{text}"
    );

    // A CA that did not sign the server's certificate.
    let wrong_ca = Etcd::new(
        &urls,
        Auth::None,
        &Tls {
            ca_file: Some(pki.other_ca.clone()),
            ..pki.client_tls()
        },
    )?;
    let e = etcd_error(Lock::at_key(&wrong_ca, KEY).lock("node-x").unwrap_err());
    let text = e.to_string();
    println!("wrong CA: {text}");
    assert!(matches!(e, etcd::Error::TlsSession { .. }), "{e:?}");
    assert!(
        text.contains(url.as_str()) && text.contains("UnknownIssuer") && text.contains("ca-file"),
        "{text}"
    );

    // A key that does not fit the client certificate: refused before
    // anything is sent.
    let e = Etcd::new(
        &urls,
        Auth::None,
        &Tls {
            key_file: Some(pki.other_key.clone()),
            ..pki.client_tls()
        },
    )
    .unwrap_err();
    let text = e.to_string();
    println!("key of another certificate: {text}");
    assert!(
        matches!(
            e,
            etcd::Error::TlsFile {
                what: "key-file",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        text.contains(&pki.other_key.display().to_string()),
        "{text}"
    );
    assert!(
        text.contains(&pki.client_cert.display().to_string()),
        "{text}"
    );

    // Plain HTTP to the https:// port.
    let plain = url.replace("https://", "http://");
    let e = Etcd::new(&[&plain], Auth::None, &Tls::default())?
        .range(KEY)
        .unwrap_err();
    println!("http:// to a TLS port: {e}");
    Ok(())
}

#[test]
fn user_and_password() -> Result<()> {
    const TTL: u32 = 1;
    // Unused tokens expire after TTL seconds, so renewal is quick to see.
    let mut cluster = EtcdCluster::start_with(
        1,
        Options {
            auth_token_ttl: Some(TTL),
            ..Options::default()
        },
    )?;
    let urls = cluster.client_urls();
    let url = &urls[0];
    cluster.add_user("nobody", "nobody-pw")?;
    cluster.enable_auth("root-pw")?;
    let root = Auth::Password {
        user: "root".into(),
        password: "root-pw".into(),
    };

    let etcd = Etcd::new(&urls, root, &Tls::default())?;
    lock_unlock(&etcd, "node-auth")?;
    println!("auth: lock + unlock as root through {url}");

    // Wrong password.
    let wrong = Etcd::new(
        &urls,
        Auth::Password {
            user: "root".into(),
            password: "not-it".into(),
        },
        &Tls::default(),
    )?;
    let e = etcd_error(Lock::at_key(&wrong, KEY).lock("node-x").unwrap_err());
    let text = e.to_string();
    println!("wrong password: {text}");
    assert!(matches!(e, etcd::Error::Auth { .. }), "{e:?}");
    assert!(!e.is_transient(), "{e:?}");
    assert!(
        text.contains(url.as_str())
            && text.contains("\"root\"")
            && text.contains("username and password-file"),
        "{text}"
    );
    assert!(!text.contains("not-it"), "{text}");

    // No credentials.
    let anonymous = Etcd::new(&urls, Auth::None, &Tls::default())?;
    let e = etcd_error(Lock::at_key(&anonymous, KEY).lock("node-x").unwrap_err());
    let text = e.to_string();
    println!("no credentials: {text}");
    assert!(!e.is_transient(), "{e:?}");
    assert!(
        text.contains(url.as_str()) && text.contains("username and password-file"),
        "{text}"
    );

    // A user without a role.
    let nobody = Etcd::new(
        &urls,
        Auth::Password {
            user: "nobody".into(),
            password: "nobody-pw".into(),
        },
        &Tls::default(),
    )?;
    let e = etcd_error(Lock::at_key(&nobody, KEY).lock("node-x").unwrap_err());
    let text = e.to_string();
    println!("user without permission: {text}");
    assert_eq!(e.code(), Some(etcd::code::PERMISSION_DENIED), "{e:?}");
    assert!(!e.is_transient(), "{e:?}");
    assert!(text.contains("grant-permission"), "{text}");

    // Token renewal 1: the token expires (unused for longer than the TTL);
    // etcd answers "invalid auth token", the client authenticates again.
    let token = cluster.authenticate("root", "root-pw")?;
    cluster.read_with_token(&token)?;
    std::thread::sleep(Duration::from_millis(u64::from(TTL) * 1000 + 1500));
    let stale = cluster
        .read_with_token(&token)
        .expect_err("an expired token");
    println!("token unused for more than {TTL} s: {stale:#}");
    assert!(
        format!("{stale:#}").contains("invalid auth token"),
        "{stale:#}"
    );
    lock_unlock(&etcd, "node-auth")?;
    println!("the same client, its token expired too: lock + unlock (authenticated again)");

    // The password changes: etcd drops root's tokens at once; the client
    // authenticates again with the password it has and is refused, saying
    // so; a client with the new password works.
    etcd.range(KEY)?;
    cluster.change_password("root", "new-root-pw")?;
    let e = etcd_error(Lock::at_key(&etcd, KEY).lock("node-x").unwrap_err());
    let text = e.to_string();
    println!("after a password change, the old password: {text}");
    assert!(matches!(e, etcd::Error::Auth { .. }), "{e:?}");
    let etcd = Etcd::new(
        &urls,
        Auth::Password {
            user: "root".into(),
            password: "new-root-pw".into(),
        },
        &Tls::default(),
    )?;
    lock_unlock(&etcd, "node-auth")?;

    // A restart: the same client carries on (etcd replays the token's
    // authentication from its log, so the token may well survive it).
    let token = cluster.authenticate("root", "new-root-pw")?;
    cluster.stop_all()?;
    cluster.start_all()?;
    let survived = cluster.read_with_token(&token).is_ok();
    lock_unlock(&etcd, "node-auth")?;
    println!(
        "after a restart: lock + unlock; a token from before the restart {}",
        if survived {
            "is still accepted"
        } else {
            "is refused"
        }
    );

    // Created by the first lock, then unlock, and lock + unlock three times.
    let history = cluster.history(KEY)?;
    assert_eq!(history.len(), 8, "{history:?}");
    Ok(())
}
