//! Static networking: `tandem.network` as [`NETWORK_FILE`], which PID 1
//! reads after this step and applies beside DHCP on the first Ethernet
//! interface. Written only when the config gives interfaces; the directory
//! is emptied at every boot, so removing them from the config leaves the
//! next boot with DHCP alone.

use std::path::Path;

use cloud_config::model::Network;
use tandem_contract::provision::{NETWORK_FILE, NetworkConfig, StaticInterface, StaticRoute};

use super::write::{Perm, under, write_atomic};
use super::{Out, Severity};

/// The file's content for `n`: the checked model, without positions.
pub fn config(n: &Network) -> NetworkConfig {
    NetworkConfig {
        interfaces: n
            .interfaces
            .iter()
            .map(|i| StaticInterface {
                name: i.name.clone(),
                mac: i.mac.clone(),
                addresses: i.addresses.clone(),
                gateway: i.gateway,
                routes: i
                    .routes
                    .iter()
                    .map(|r| StaticRoute {
                        to: r.to,
                        via: r.via,
                    })
                    .collect(),
                dns: i.dns.clone(),
            })
            .collect(),
    }
}

pub(crate) fn apply(root: &Path, n: &Network, out: &mut Out<'_>) {
    if n.interfaces.is_empty() {
        return;
    }
    let c = config(n);
    let text = match serde_json::to_vec_pretty(&c) {
        Ok(t) => t,
        Err(e) => {
            out.problem(
                Severity::Error,
                "tandem.network",
                format!("cannot render {NETWORK_FILE}: {e}"),
            );
            return;
        }
    };
    let path = under(root, NETWORK_FILE);
    match write_atomic(&path, &text, Perm::root(0o644)) {
        Ok(()) => {
            let names: Vec<String> = c.interfaces.iter().map(StaticInterface::label).collect();
            out.done(format!("static network for {}", names.join(", ")));
        }
        Err(e) => {
            let pos = n.interfaces.first().map(|i| i.pos).unwrap_or_default();
            out.problem_at(
                Severity::Error,
                pos,
                format!("static network not written to {NETWORK_FILE}: {e}: check that /run is a writable tmpfs"),
            );
        }
    }
}
