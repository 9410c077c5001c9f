//! `$private_ipv4`, `$public_ipv4`, `$private_ipv6`, `$public_ipv6`: replaced
//! in the raw text before it is parsed, as coreos-cloudinit did (a plain
//! text replacement, in every key and value alike).
//!
//! CoreOS's pitfall: a value the datasource did not know was replaced by
//! the empty string, so `http://$private_ipv4:2379` became `http://:2379`
//! and etcd failed far from the cause. Here an unknown value is left in the
//! text as written and reported, and the caller decides (the node refuses
//! to apply a config that still names one; a validator can only warn).

/// The four variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variable {
    /// `$private_ipv4`.
    PrivateIpv4,
    /// `$public_ipv4`.
    PublicIpv4,
    /// `$private_ipv6`.
    PrivateIpv6,
    /// `$public_ipv6`.
    PublicIpv6,
}

impl Variable {
    /// All four.
    pub const ALL: [Variable; 4] = [
        Variable::PrivateIpv4,
        Variable::PublicIpv4,
        Variable::PrivateIpv6,
        Variable::PublicIpv6,
    ];

    /// As written in a config, with the `$`.
    pub fn as_str(self) -> &'static str {
        match self {
            Variable::PrivateIpv4 => "$private_ipv4",
            Variable::PublicIpv4 => "$public_ipv4",
            Variable::PrivateIpv6 => "$private_ipv6",
            Variable::PublicIpv6 => "$public_ipv6",
        }
    }
}

/// The values known for this node; `None` is unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Values {
    /// The private IPv4 address (metadata, else the address DHCP gave).
    pub private_ipv4: Option<String>,
    /// The public IPv4 address.
    pub public_ipv4: Option<String>,
    /// The private IPv6 address.
    pub private_ipv6: Option<String>,
    /// The public IPv6 address.
    pub public_ipv6: Option<String>,
}

impl Values {
    fn get(&self, v: Variable) -> Option<&str> {
        match v {
            Variable::PrivateIpv4 => self.private_ipv4.as_deref(),
            Variable::PublicIpv4 => self.public_ipv4.as_deref(),
            Variable::PrivateIpv6 => self.private_ipv6.as_deref(),
            Variable::PublicIpv6 => self.public_ipv6.as_deref(),
        }
    }
}

/// The text with the known variables replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Substituted {
    /// The new text.
    pub text: String,
    /// Variables the text uses whose value is unknown (left as written).
    pub unknown: Vec<Variable>,
}

/// The variables `text` uses, in the order of [`Variable::ALL`].
pub fn used(text: &str) -> Vec<Variable> {
    Variable::ALL
        .into_iter()
        .filter(|v| text.contains(v.as_str()))
        .collect()
}

/// Replaces every known variable in `text`; unknown ones stay and are listed.
pub fn substitute(text: &str, values: &Values) -> Substituted {
    let mut out = text.to_string();
    let mut unknown = Vec::new();
    for v in used(text) {
        match values.get(v) {
            Some(value) => out = out.replace(v.as_str(), value),
            None => unknown.push(v),
        }
    }
    Substituted { text: out, unknown }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_replaced_unknown_kept() {
        let text = "a: http://$private_ipv4:2380\nb: $public_ipv4\nc: [$private_ipv6]\n";
        let values = Values {
            private_ipv4: Some("10.0.0.5".into()),
            ..Values::default()
        };
        let s = substitute(text, &values);
        assert_eq!(
            s.text,
            "a: http://10.0.0.5:2380\nb: $public_ipv4\nc: [$private_ipv6]\n"
        );
        assert_eq!(s.unknown, vec![Variable::PublicIpv4, Variable::PrivateIpv6]);
    }

    #[test]
    fn every_occurrence_and_all_four() {
        let values = Values {
            private_ipv4: Some("10.0.0.5".into()),
            public_ipv4: Some("203.0.113.9".into()),
            private_ipv6: Some("fd00::5".into()),
            public_ipv6: Some("2001:db8::9".into()),
        };
        let s = substitute(
            "$private_ipv4 $private_ipv4 $public_ipv4 $private_ipv6 $public_ipv6",
            &values,
        );
        assert_eq!(s.text, "10.0.0.5 10.0.0.5 203.0.113.9 fd00::5 2001:db8::9");
        assert!(s.unknown.is_empty());
    }

    #[test]
    fn nothing_used() {
        let s = substitute("hostname: a\n", &Values::default());
        assert_eq!(s.text, "hostname: a\n");
        assert!(s.unknown.is_empty());
        assert!(used("$private_ipv").is_empty());
    }
}
