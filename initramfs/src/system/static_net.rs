//! Static networking from the config (`tandem.network`, handed over by the
//! provisioning step as [`NETWORK_FILE`]): each interface found by name or
//! MAC address, its addresses, the link up, its routes, the default route
//! via its gateway, and its name servers in resolv.conf before DHCP's. DHCP
//! keeps running on the first Ethernet interface; an interface named there
//! too gets the static addresses beside the lease's.
//!
//! The decisions (which interface, which operations in which order, the
//! address labels) are pure ([`find`], [`plan`]); the ioctls are
//! [`crate::net`]'s. Every failure is a warning naming the interface: the
//! node boots on with what worked.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use tandem_contract::ipv4::Ipv4Cidr;
use tandem_contract::provision::{NETWORK_FILE, NetworkConfig, StaticInterface};

use crate::net;

/// How long to wait for an interface the config names: its driver may
/// still be probing.
pub const INTERFACE_WAIT: Duration = Duration::from_secs(5);
/// The static gateway's metric: below DHCP's, so it wins.
pub const STATIC_ROUTE_METRIC: u16 = 0;
/// The longest interface name or address label (`IFNAMSIZ` - 1).
const IFNAME_MAX: usize = 15;

/// An interface as the system lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Present {
    /// Its name.
    pub name: String,
    /// Its MAC address, if it has one.
    pub mac: Option<[u8; 6]>,
}

/// The interface `want` names among `present` (in name order): by name, or
/// the first with its MAC address (a VLAN or bridge on top shares it; its
/// name sorts after the parent's in the usual schemes).
pub fn find<'p>(want: &StaticInterface, present: &'p [Present]) -> Option<&'p Present> {
    if let Some(name) = &want.name {
        return present.iter().find(|p| &p.name == name);
    }
    let mac = net::parse_mac(want.mac.as_deref()?)?;
    present.iter().find(|p| p.mac == Some(mac))
}

/// One operation on an interface, in [`plan`]'s order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// An address, on its own label (`eth1:0`) so that it is added beside
    /// the others (DHCP's among them) rather than replacing the primary.
    Address {
        /// The label.
        label: String,
        /// The address and prefix.
        cidr: Ipv4Cidr,
    },
    /// The link up (routes need it).
    LinkUp,
    /// A route.
    Route {
        /// The destination network.
        to: Ipv4Cidr,
        /// The gateway.
        via: Ipv4Addr,
    },
    /// The default route.
    DefaultRoute {
        /// The gateway.
        via: Ipv4Addr,
    },
}

impl Op {
    /// What it does, for a warning: `adding 10.99.0.11/24`.
    pub fn describe(&self) -> String {
        match self {
            Op::Address { cidr, .. } => format!("adding {cidr}"),
            Op::LinkUp => "bringing the link up".into(),
            Op::Route { to, via } => format!("adding the route to {to} via {via}"),
            Op::DefaultRoute { via } => format!("adding the default route via {via}"),
        }
    }
}

/// The address label for the `n`th static address of `ifname`
/// (`eth1:0`), if it fits the kernel's 15 characters.
pub fn label(ifname: &str, n: usize) -> Option<String> {
    let l = format!("{ifname}:{n}");
    (l.len() <= IFNAME_MAX).then_some(l)
}

/// The operations for `want` on the interface `ifname`: addresses, link
/// up, routes, default route. An address whose label does not fit is
/// left out and named in the second list.
pub fn plan(want: &StaticInterface, ifname: &str) -> (Vec<Op>, Vec<String>) {
    let mut ops = Vec::new();
    let mut problems = Vec::new();
    for (n, cidr) in want.addresses.iter().enumerate() {
        match label(ifname, n) {
            Some(label) => ops.push(Op::Address { label, cidr: *cidr }),
            None => problems.push(format!(
                "{cidr} not added: the name {ifname} is too long for an address label ({ifname}:{n}, at most {IFNAME_MAX} characters)"
            )),
        }
    }
    ops.push(Op::LinkUp);
    ops.extend(want.routes.iter().map(|r| Op::Route {
        to: r.to,
        via: r.via,
    }));
    ops.extend(want.gateway.map(|via| Op::DefaultRoute { via }));
    (ops, problems)
}

/// The name servers of all interfaces, in the config's order, without
/// repeats.
pub fn name_servers(c: &NetworkConfig) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = Vec::new();
    for ns in c.interfaces.iter().flat_map(|i| &i.dns) {
        if !out.contains(ns) {
            out.push(*ns);
        }
    }
    out
}

/// What applying did.
#[derive(Debug, Default)]
pub struct Report {
    /// Interfaces configured without a problem (`eth1`).
    pub configured: Vec<String>,
    /// Whether anything was applied (an address, a route, a name server).
    pub applied: bool,
    /// The problems, each naming the interface.
    pub warnings: Vec<String>,
}

/// Reads [`NETWORK_FILE`] and applies it; `None` when there is none (the
/// config gave no static interfaces, or there was no config).
pub fn apply_file() -> Option<Report> {
    let bytes = match std::fs::read(NETWORK_FILE) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            return Some(Report {
                warnings: vec![format!("static network: reading {NETWORK_FILE}: {e}")],
                ..Report::default()
            });
        }
    };
    match serde_json::from_slice::<NetworkConfig>(&bytes) {
        Ok(c) => Some(apply(&c)),
        Err(e) => Some(Report {
            warnings: vec![format!(
                "static network: {NETWORK_FILE} is not a network configuration: {e}"
            )],
            ..Report::default()
        }),
    }
}

/// Applies `c`: each interface waited for within [`INTERFACE_WAIT`] (one
/// deadline for all), then its operations; then the name servers.
pub fn apply(c: &NetworkConfig) -> Report {
    let mut report = Report::default();
    let deadline = Instant::now() + INTERFACE_WAIT;
    for want in &c.interfaces {
        let who = want.label();
        let Some(ifname) = wait_for(want, deadline) else {
            report.warnings.push(format!(
                "static network: {who}: no such interface after {} s; its addresses, routes and name servers are not applied",
                INTERFACE_WAIT.as_secs()
            ));
            continue;
        };
        let (ops, problems) = plan(want, &ifname);
        let mut ok = problems.is_empty();
        for p in problems {
            report.warnings.push(format!("static network: {who}: {p}"));
        }
        for op in &ops {
            match run(op, &ifname) {
                Ok(()) => report.applied |= !matches!(op, Op::LinkUp),
                Err(e) => {
                    ok = false;
                    report.warnings.push(format!(
                        "static network: {who} ({ifname}): {} failed: {e}",
                        op.describe()
                    ));
                }
            }
        }
        if ok {
            report.configured.push(ifname);
        }
    }
    let servers = name_servers(c);
    if !servers.is_empty() {
        match net::set_static_dns(servers) {
            Ok(()) => report.applied = true,
            Err(e) => report
                .warnings
                .push(format!("static network: name servers: {e}")),
        }
    }
    report
}

/// The interface's name once it is there, or `None` after `deadline`.
fn wait_for(want: &StaticInterface, deadline: Instant) -> Option<String> {
    loop {
        if let Some(p) = find(want, &list()) {
            return Some(p.name.clone());
        }
        if Instant::now() >= deadline {
            return None;
        }
        crate::sys::sleep(Duration::from_millis(50));
    }
}

/// The interfaces in name order, with their MAC addresses.
fn list() -> Vec<Present> {
    let Ok(dir) = std::fs::read_dir(Path::new(net::SYS_NET)) else {
        return Vec::new();
    };
    let mut out: Vec<Present> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "lo")
        .map(|name| Present {
            mac: net::mac_address(&name).ok(),
            name,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn run(op: &Op, ifname: &str) -> std::io::Result<()> {
    match op {
        Op::Address { label, cidr } => net::set_address(label, cidr.address, cidr.netmask()),
        Op::LinkUp => net::link_up(ifname),
        Op::Route { to, via } => net::add_route(
            ifname,
            to.network(),
            to.netmask(),
            *via,
            STATIC_ROUTE_METRIC,
        ),
        Op::DefaultRoute { via } => net::add_default_route(ifname, *via, STATIC_ROUTE_METRIC),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_contract::provision::StaticRoute;

    fn cidr(t: &str) -> Ipv4Cidr {
        t.parse().expect("cidr")
    }

    fn ip(t: &str) -> Ipv4Addr {
        t.parse().expect("ip")
    }

    fn present() -> Vec<Present> {
        vec![
            Present {
                name: "eth0".into(),
                mac: Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            },
            Present {
                name: "eth1".into(),
                mac: Some([0x52, 0x54, 0, 0, 1, 1]),
            },
            Present {
                name: "eth1.100".into(),
                mac: Some([0x52, 0x54, 0, 0, 1, 1]),
            },
        ]
    }

    #[test]
    fn found_by_name_or_mac() {
        let p = present();
        let by_name = StaticInterface {
            name: Some("eth1.100".into()),
            ..StaticInterface::default()
        };
        assert_eq!(
            find(&by_name, &p).map(|p| p.name.as_str()),
            Some("eth1.100")
        );
        let by_mac = StaticInterface {
            mac: Some("52:54:00:00:01:01".into()),
            ..StaticInterface::default()
        };
        assert_eq!(find(&by_mac, &p).map(|p| p.name.as_str()), Some("eth1"));
        let upper = StaticInterface {
            mac: Some("52:54:00:12:34:56".into()),
            ..StaticInterface::default()
        };
        assert_eq!(find(&upper, &p).map(|p| p.name.as_str()), Some("eth0"));
        let missing = StaticInterface {
            name: Some("eth7".into()),
            ..StaticInterface::default()
        };
        assert_eq!(find(&missing, &p), None);
        assert_eq!(find(&StaticInterface::default(), &p), None);
    }

    #[test]
    fn the_plan_adds_addresses_on_labels_then_routes() {
        let want = StaticInterface {
            name: Some("eth1".into()),
            addresses: vec![cidr("10.99.0.11/24"), cidr("10.98.0.11/16")],
            gateway: Some(ip("10.99.0.1")),
            routes: vec![StaticRoute {
                to: cidr("10.100.0.0/16"),
                via: ip("10.98.0.1"),
            }],
            ..StaticInterface::default()
        };
        let (ops, problems) = plan(&want, "eth1");
        assert!(problems.is_empty());
        assert_eq!(
            ops,
            vec![
                Op::Address {
                    label: "eth1:0".into(),
                    cidr: cidr("10.99.0.11/24")
                },
                Op::Address {
                    label: "eth1:1".into(),
                    cidr: cidr("10.98.0.11/16")
                },
                Op::LinkUp,
                Op::Route {
                    to: cidr("10.100.0.0/16"),
                    via: ip("10.98.0.1")
                },
                Op::DefaultRoute {
                    via: ip("10.99.0.1")
                },
            ]
        );
        assert_eq!(
            ops[3].describe(),
            "adding the route to 10.100.0.0/16 via 10.98.0.1"
        );
        // A netmask from the prefix, as the ioctl takes it.
        assert_eq!(cidr("10.98.0.11/16").netmask(), ip("255.255.0.0"));
    }

    #[test]
    fn a_label_too_long_is_a_problem_not_a_replacement() {
        assert_eq!(label("enp0s31f6", 0).as_deref(), Some("enp0s31f6:0"));
        assert_eq!(
            label("abcdefghijklm", 0).as_deref(),
            Some("abcdefghijklm:0")
        );
        assert_eq!(label("abcdefghijklmn", 0), None);
        let want = StaticInterface {
            addresses: vec![cidr("10.0.0.2/24")],
            ..StaticInterface::default()
        };
        let (ops, problems) = plan(&want, "abcdefghijklmn");
        assert_eq!(ops, vec![Op::LinkUp]);
        assert!(problems[0].contains("too long"), "{problems:?}");
    }

    #[test]
    fn name_servers_in_order_without_repeats() {
        let c = NetworkConfig {
            interfaces: vec![
                StaticInterface {
                    dns: vec![ip("10.99.0.1"), ip("10.99.0.2")],
                    ..StaticInterface::default()
                },
                StaticInterface {
                    dns: vec![ip("10.99.0.2"), ip("10.98.0.1")],
                    ..StaticInterface::default()
                },
            ],
        };
        assert_eq!(
            name_servers(&c),
            vec![ip("10.99.0.1"), ip("10.99.0.2"), ip("10.98.0.1")]
        );
    }
}
