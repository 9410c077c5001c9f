//! IPv4 addresses with a prefix length (`10.99.0.11/24`): what the
//! cloud-config's `tandem.network` gives, the provisioning step hands on
//! and PID 1 puts on an interface. One parser, so that the validator
//! refuses exactly what the node could not apply.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IPv4 address and its prefix length, as written (`10.99.0.11/24`):
/// the host bits are kept (an interface address has them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Cidr {
    /// The address.
    pub address: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub prefix: u8,
}

/// Why a text is not `a.b.c.d/n`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No `/n`.
    #[error("{0:?} has no prefix length: write it as address/prefix (10.0.0.5/24)")]
    NoPrefix(String),
    /// The part before `/` is an IPv6 address.
    #[error("{0:?}: IPv6 static addresses are not supported yet")]
    Ipv6(String),
    /// The part before `/` is not an IPv4 address.
    #[error("{0:?} is not an IPv4 address with a prefix length (10.0.0.5/24)")]
    Address(String),
    /// The prefix is not 0 to 32.
    #[error("{0:?}: the prefix length must be a number from 0 to 32")]
    Prefix(String),
}

impl Ipv4Cidr {
    /// The address and prefix.
    pub fn new(address: Ipv4Addr, prefix: u8) -> Option<Ipv4Cidr> {
        (prefix <= 32).then_some(Ipv4Cidr { address, prefix })
    }

    /// The netmask of the prefix (`/24` → 255.255.255.0).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask_bits(self.prefix))
    }

    /// The network: the address with the host bits cleared.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) & mask_bits(self.prefix))
    }

    /// Whether `ip` is in this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask_bits(self.prefix) == u32::from(self.network())
    }

    /// Whether the host bits are all zero (a route's destination must be a
    /// network, not an address inside one).
    pub fn is_network(&self) -> bool {
        self.address == self.network()
    }
}

fn mask_bits(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Ipv4Cidr, CidrError> {
        let owned = || text.to_string();
        let Some((addr, prefix)) = text.split_once('/') else {
            if text.contains(':') {
                return Err(CidrError::Ipv6(owned()));
            }
            return Err(CidrError::NoPrefix(owned()));
        };
        if addr.contains(':') {
            return Err(CidrError::Ipv6(owned()));
        }
        let address: Ipv4Addr = addr.parse().map_err(|_| CidrError::Address(owned()))?;
        // Digits only: `u8::from_str` would take `+24`.
        let prefix = Some(prefix)
            .filter(|p| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u8>().ok())
            .ok_or_else(|| CidrError::Prefix(owned()))?;
        Ipv4Cidr::new(address, prefix).ok_or_else(|| CidrError::Prefix(owned()))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl TryFrom<String> for Ipv4Cidr {
    type Error = CidrError;

    fn try_from(text: String) -> Result<Ipv4Cidr, CidrError> {
        text.parse()
    }
}

impl From<Ipv4Cidr> for String {
    fn from(c: Ipv4Cidr) -> String {
        c.to_string()
    }
}

/// Parses an IPv4 address, saying so when it is an IPv6 one.
pub fn parse_address(text: &str) -> Result<Ipv4Addr, CidrError> {
    if text.contains(':') {
        return Err(CidrError::Ipv6(text.to_string()));
    }
    text.parse()
        .map_err(|_| CidrError::Address(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(t: &str) -> Ipv4Cidr {
        t.parse().expect("a CIDR")
    }

    #[test]
    fn parses_and_prints() {
        let c = cidr("10.99.0.11/24");
        assert_eq!(c.address, Ipv4Addr::new(10, 99, 0, 11));
        assert_eq!(c.prefix, 24);
        assert_eq!(c.to_string(), "10.99.0.11/24");
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.network(), Ipv4Addr::new(10, 99, 0, 0));
        assert!(!c.is_network());
        assert!(cidr("10.100.0.0/16").is_network());
        assert_eq!(cidr("0.0.0.0/0").netmask(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(cidr("1.2.3.4/32").netmask(), Ipv4Addr::BROADCAST);
        assert_eq!(
            cidr("1.2.3.4/20").netmask(),
            Ipv4Addr::new(255, 255, 240, 0)
        );
    }

    #[test]
    fn contains() {
        let c = cidr("10.99.0.11/24");
        assert!(c.contains(Ipv4Addr::new(10, 99, 0, 1)));
        assert!(!c.contains(Ipv4Addr::new(10, 99, 1, 1)));
        assert!(cidr("0.0.0.0/0").contains(Ipv4Addr::new(8, 8, 8, 8)));
    }

    #[test]
    fn refuses_what_is_not_one() {
        assert!(matches!(
            "10.0.0.1".parse::<Ipv4Cidr>(),
            Err(CidrError::NoPrefix(_))
        ));
        assert!(matches!(
            "10.0.0.1/33".parse::<Ipv4Cidr>(),
            Err(CidrError::Prefix(_))
        ));
        assert!(matches!(
            "10.0.0.1/+2".parse::<Ipv4Cidr>(),
            Err(CidrError::Prefix(_))
        ));
        assert!(matches!(
            "10.0.0.1/".parse::<Ipv4Cidr>(),
            Err(CidrError::Prefix(_))
        ));
        assert!(matches!(
            "10.0.0/24".parse::<Ipv4Cidr>(),
            Err(CidrError::Address(_))
        ));
        assert!(matches!(
            "fd00::1/64".parse::<Ipv4Cidr>(),
            Err(CidrError::Ipv6(_))
        ));
        assert!("fd00::1/64".parse::<Ipv4Cidr>().err().is_some_and(|e| {
            e.to_string()
                .contains("IPv6 static addresses are not supported yet")
        }));
        assert!(matches!(parse_address("fd00::1"), Err(CidrError::Ipv6(_))));
        assert!(matches!(
            parse_address("10.0.0"),
            Err(CidrError::Address(_))
        ));
        assert_eq!(parse_address("10.0.0.1"), Ok(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn serde_is_the_text() {
        let c = cidr("10.99.0.11/24");
        let json = serde_json::to_string(&c).expect("json");
        assert_eq!(json, "\"10.99.0.11/24\"");
        assert_eq!(serde_json::from_str::<Ipv4Cidr>(&json).expect("back"), c);
        assert!(serde_json::from_str::<Ipv4Cidr>("\"10.0.0.1\"").is_err());
    }
}
