//! `tandem.network`: static IPv4 addresses, routes and name servers per
//! interface. Everything the node could not apply is an error here, so
//! that PID 1 only meets what the hardware decides (an interface that is
//! not there).

use std::net::Ipv4Addr;

use tandem_contract::ipv4::{self, Ipv4Cidr};

use super::{Reader, join};
use crate::keys::Part;
use crate::model::{Interface, Network, Route};
use crate::yaml::{Node, Pos};

impl Reader<'_> {
    pub(super) fn network(&mut self, node: &Node, path: &str) -> Network {
        let mut n = Network::default();
        // Where the first gateway was given, for the second's message.
        let mut gateway_at: Option<(usize, String)> = None;
        for (_, written, _, v) in self.entries(node, path, Part::Network) {
            let p = join(path, &written);
            for (i, item) in self.list(v, &p).to_vec().iter().enumerate() {
                let ip = format!("{p}[{i}]");
                let Some(iface) = self.interface(item, &ip) else {
                    continue;
                };
                if let Some(other) = n.interfaces.iter().find(|o| same_interface(o, &iface)) {
                    self.error(
                        item.pos,
                        &ip,
                        format!(
                            "the interface {} is given twice (first on line {})",
                            label(&iface),
                            other.pos.line
                        ),
                    );
                    continue;
                }
                for a in &iface.addresses {
                    if let Some(o) = n
                        .interfaces
                        .iter()
                        .find(|o| o.addresses.iter().any(|b| b.address == a.address))
                    {
                        self.error(
                            item.pos,
                            &ip,
                            format!("the address {} is also on {}", a.address, label(o)),
                        );
                    }
                }
                if let Some(gw) = iface.gateway {
                    match &gateway_at {
                        Some((line, first)) => self.error(
                            iface.pos,
                            join(&ip, "gateway"),
                            format!("only one interface may have a gateway (the default route): {first} has one (line {line}); give this one's networks as `routes`"),
                        ),
                        None => gateway_at = Some((iface.pos.line, format!("{} ({gw})", label(&iface)))),
                    }
                }
                n.interfaces.push(iface);
            }
        }
        n
    }

    fn interface(&mut self, node: &Node, path: &str) -> Option<Interface> {
        let mut iface = Interface {
            pos: node.pos,
            ..Interface::default()
        };
        let errors = self.error_count();
        let mut gateway: Option<(Ipv4Addr, Pos, String)> = None;
        let mut addresses_given = false;
        for (canon, written, _, v) in self.entries(node, path, Part::Interface) {
            let p = join(path, &written);
            let p = p.as_str();
            match canon.as_str() {
                "name" => {
                    if let Some(name) = self.string(v, p) {
                        match check_ifname(&name) {
                            Ok(()) => iface.name = Some(name),
                            Err(m) => self.error(v.pos, p, m),
                        }
                    }
                }
                "mac" => {
                    if let Some(mac) = self.string(v, p) {
                        match normal_mac(&mac) {
                            Some(m) => iface.mac = Some(m),
                            None => self.error(
                                v.pos,
                                p,
                                format!("{mac:?} is not a MAC address (six hexadecimal pairs separated by colons: \"52:54:00:12:34:57\")"),
                            ),
                        }
                    }
                }
                "addresses" => {
                    addresses_given = true;
                    for (i, item) in self.list(v, p).to_vec().iter().enumerate() {
                        let q = format!("{p}[{i}]");
                        if let Some(c) = self.cidr(item, &q) {
                            if iface.addresses.iter().any(|o| o.address == c.address) {
                                self.error(item.pos, q, format!("{c} is given twice"));
                            } else {
                                iface.addresses.push(c);
                            }
                        }
                    }
                    if iface.addresses.is_empty() && self.error_count() == errors {
                        self.error(v.pos, p, "needs at least one address (10.0.0.5/24)");
                    }
                }
                "gateway" => {
                    if let Some(gw) = self.address(v, p) {
                        gateway = Some((gw, v.pos, p.to_string()));
                    }
                }
                "routes" => {
                    for (i, item) in self.list(v, p).to_vec().iter().enumerate() {
                        if let Some(r) = self.route(item, &format!("{p}[{i}]")) {
                            iface.routes.push(r);
                        }
                    }
                }
                "dns" => {
                    for (i, item) in self.list(v, p).to_vec().iter().enumerate() {
                        if let Some(a) = self.address(item, &format!("{p}[{i}]")) {
                            iface.dns.push(a);
                        }
                    }
                }
                _ => {}
            }
        }
        match (&iface.name, &iface.mac) {
            (Some(_), Some(_)) => self.error(
                node.pos,
                path,
                "give either `name` or `mac`, not both: one says which interface",
            ),
            (None, None) if self.error_count() == errors => self.error(
                node.pos,
                path,
                "an interface needs `name` (eth1) or `mac` (\"52:54:00:12:34:57\")",
            ),
            _ => {}
        }
        if !addresses_given {
            self.error(
                node.pos,
                path,
                "an interface needs `addresses` (a list such as [10.0.0.5/24]); DHCP runs on the first Ethernet interface by itself",
            );
        }
        // Both need the interface's subnets, which the file may list after
        // them.
        if let Some((gw, pos, p)) = gateway {
            match on_subnet(&iface.addresses, gw) {
                Ok(()) => iface.gateway = Some(gw),
                Err(m) => self.error(pos, p, format!("the gateway {gw} {m}")),
            }
        }
        let (reachable, unreachable): (Vec<Route>, Vec<Route>) = iface
            .routes
            .iter()
            .partition(|r| on_subnet(&iface.addresses, r.via).is_ok());
        for r in &unreachable {
            let m = on_subnet(&iface.addresses, r.via).err().unwrap_or_default();
            self.error(
                r.pos,
                path,
                format!("the route to {}: via {} {m}", r.to, r.via),
            );
        }
        iface.routes = reachable;
        (self.error_count() == errors).then_some(iface)
    }

    fn route(&mut self, node: &Node, path: &str) -> Option<Route> {
        let mut to = None;
        let mut via = None;
        let errors = self.error_count();
        for (canon, written, _, v) in self.entries(node, path, Part::Route) {
            let p = join(path, &written);
            match canon.as_str() {
                "to" => {
                    let Some(c) = self.cidr(v, &p) else { continue };
                    if c.prefix == 0 {
                        self.error(v.pos, &p, "a route to 0.0.0.0/0 is the default route: give it as the interface's `gateway`");
                    } else if !c.is_network() {
                        self.error(
                            v.pos,
                            &p,
                            format!(
                                "{c} is not a network (its host bits are set): did you mean {}/{}?",
                                c.network(),
                                c.prefix
                            ),
                        );
                    } else {
                        to = Some(c);
                    }
                }
                "via" => via = self.address(v, &p),
                _ => {}
            }
        }
        match (to, via) {
            (Some(to), Some(via)) => Some(Route {
                pos: node.pos,
                to,
                via,
            }),
            _ => {
                if self.error_count() == errors {
                    self.error(
                        node.pos,
                        path,
                        "a route needs `to` (a network, 10.100.0.0/16) and `via` (a gateway)",
                    );
                }
                None
            }
        }
    }

    fn cidr(&mut self, v: &Node, path: &str) -> Option<Ipv4Cidr> {
        let text = self.string(v, path)?;
        match text.trim().parse::<Ipv4Cidr>() {
            Ok(c) => Some(c),
            Err(e) => {
                self.error(v.pos, path, e.to_string());
                None
            }
        }
    }

    fn address(&mut self, v: &Node, path: &str) -> Option<Ipv4Addr> {
        let text = self.string(v, path)?;
        match ipv4::parse_address(text.trim()) {
            Ok(a) => Some(a),
            Err(e) => {
                self.error(v.pos, path, e.to_string());
                None
            }
        }
    }

    fn error_count(&self) -> usize {
        self.diags
            .iter()
            .filter(|d| d.severity == crate::Severity::Error)
            .count()
    }
}

/// `Ok` if `ip` is in one of `addresses`' subnets (the kernel has no route
/// to a gateway elsewhere), else why not.
fn on_subnet(addresses: &[Ipv4Cidr], ip: Ipv4Addr) -> Result<(), String> {
    if addresses.iter().any(|a| a.contains(ip)) {
        return Ok(());
    }
    let nets: Vec<String> = addresses
        .iter()
        .map(|a| format!("{}/{}", a.network(), a.prefix))
        .collect();
    Err(if nets.is_empty() {
        "needs an address of the interface on its subnet".to_string()
    } else {
        format!(
            "is not in the interface's subnets ({}): the node could not reach it",
            nets.join(", ")
        )
    })
}

fn same_interface(a: &Interface, b: &Interface) -> bool {
    (a.name.is_some() && a.name == b.name) || (a.mac.is_some() && a.mac == b.mac)
}

fn label(i: &Interface) -> String {
    match (&i.name, &i.mac) {
        (Some(n), _) => format!("`{n}`"),
        (None, Some(m)) => format!("with mac {m}"),
        (None, None) => "(unnamed)".into(),
    }
}

/// The kernel's rule for interface names (`dev_valid_name`).
fn check_ifname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an interface name (1 to 15 characters, no `/`, `:` or spaces)"
        ))
    }
}

/// `52:54:00:12:34:57` in lower case, or `None`.
fn normal_mac(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| parts.join(":").to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_and_macs() {
        assert!(check_ifname("eth1").is_ok());
        assert!(check_ifname("enp0s3.100").is_ok());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a-very-long-name0").is_err());
        assert!(check_ifname("eth0:1").is_err());
        assert_eq!(
            normal_mac("52:54:00:AB:cd:57").as_deref(),
            Some("52:54:00:ab:cd:57")
        );
        assert_eq!(normal_mac("52:54:00:ab:cd"), None);
        assert_eq!(normal_mac("52-54-00-ab-cd-57"), None);
        assert_eq!(normal_mac("5:54:00:ab:cd:57"), None);
    }
}
