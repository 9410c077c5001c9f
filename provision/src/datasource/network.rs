//! Waiting for the network before asking a network datasource: DHCP runs
//! beside the provisioning step, so the first request may come before any
//! address.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// How often to look.
const POLL: Duration = Duration::from_millis(100);

/// Whether an interface other than loopback has an IPv4 address.
pub fn has_ipv4() -> bool {
    first_ipv4().is_some()
}

/// The first IPv4 address of an interface other than loopback (the address
/// DHCP gave, on a node with one network card).
pub fn first_ipv4() -> Option<Ipv4Addr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        let loopback = ifa.ifa_flags & libc::IFF_LOOPBACK as libc::c_uint != 0;
        // SAFETY: ifa_addr, when not null, points to a sockaddr of the list.
        let ipv4 = !ifa.ifa_addr.is_null()
            && unsafe { (*ifa.ifa_addr).sa_family } == libc::AF_INET as libc::sa_family_t;
        if ipv4 && !loopback {
            // SAFETY: an AF_INET address is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            break;
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// Waits up to `max` for [`has_ipv4`]; whether it came.
pub fn wait_ipv4(max: Duration) -> bool {
    let start = Instant::now();
    loop {
        if has_ipv4() {
            return true;
        }
        if start.elapsed() >= max {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_zero_looks_once() {
        let start = Instant::now();
        let _ = wait_ipv4(Duration::ZERO);
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
