//! Networking from userspace (the kernel has no IP autoconfiguration):
//! loopback, and DHCP on the first Ethernet interface over an AF_PACKET
//! socket, configured with the classic ioctls (SIOCSIFADDR, SIOCSIFNETMASK,
//! SIOCSIFFLAGS, SIOCADDRT). The packet codec is [`crate::dhcp`].

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::dhcp::{self, ClientId, Lease, MessageType};
use crate::error::Error;

/// Where the network interfaces are listed.
pub const SYS_NET: &str = "/sys/class/net";
/// The resolver configuration the DHCP client writes.
pub const RESOLV_RUN: &str = "/run/tandem/resolv.conf";
/// The resolver configuration programs read; a symlink to [`RESOLV_RUN`]
/// unless the administrator put a regular file there.
pub const RESOLV_ETC: &str = "/etc/resolv.conf";

const ARPHRD_ETHER: &str = "1";

/// The first Ethernet interface in name order (`eth0`), if any.
pub fn first_ethernet() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(SYS_NET)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "lo")
        .filter(|n| {
            std::fs::read_to_string(Path::new(SYS_NET).join(n).join("type"))
                .is_ok_and(|t| t.trim() == ARPHRD_ETHER)
        })
        .collect();
    names.sort();
    names.into_iter().next()
}

/// Waits up to `timeout` for an Ethernet interface to appear.
pub fn wait_for_ethernet(timeout: Duration) -> Option<String> {
    let start = Instant::now();
    loop {
        if let Some(n) = first_ethernet() {
            return Some(n);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        crate::sys::sleep(Duration::from_millis(20));
    }
}

/// Parses `52:54:00:12:34:56`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Formats a MAC address.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn sys_attr(ifname: &str, attr: &str) -> io::Result<String> {
    std::fs::read_to_string(Path::new(SYS_NET).join(ifname).join(attr))
}

/// The interface's MAC address.
pub fn mac_address(ifname: &str) -> io::Result<[u8; 6]> {
    parse_mac(&sys_attr(ifname, "address")?)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a MAC address"))
}

fn ifindex(ifname: &str) -> io::Result<i32> {
    sys_attr(ifname, "ifindex")?
        .trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad ifindex"))
}

/// `struct ifreq`: the name and a 24-byte union.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    data: [u8; 24],
}

impl IfReq {
    fn new(ifname: &str) -> io::Result<IfReq> {
        if ifname.len() >= 16 || ifname.contains('\0') {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let mut r = IfReq {
            name: [0; 16],
            data: [0; 24],
        };
        r.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
        Ok(r)
    }

    fn with_addr(ifname: &str, a: Ipv4Addr) -> io::Result<IfReq> {
        let mut r = IfReq::new(ifname)?;
        r.data[..16].copy_from_slice(&sockaddr_in(a));
        Ok(r)
    }
}

/// `struct sockaddr_in` bytes.
fn sockaddr_in(a: Ipv4Addr) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    s[4..8].copy_from_slice(&a.octets());
    s
}

/// `struct rtentry` of <linux/route.h>.
#[repr(C)]
struct RtEntry {
    pad1: libc::c_ulong,
    dst: [u8; 16],
    gateway: [u8; 16],
    genmask: [u8; 16],
    flags: libc::c_ushort,
    pad2: libc::c_short,
    pad3: libc::c_ulong,
    pad4: *mut libc::c_void,
    metric: libc::c_short,
    dev: *mut libc::c_char,
    mtu: libc::c_ulong,
    window: libc::c_ulong,
    irtt: libc::c_ushort,
}

const RTF_UP: libc::c_ushort = 0x0001;
const RTF_GATEWAY: libc::c_ushort = 0x0002;

fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned from here on.
    let fd = crate::sys::check(unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: fd was just returned by socket and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq_ioctl(sock: RawFd, request: u64, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: the SIOC*IF* requests used here read or write one struct ifreq.
    unsafe { crate::sys::ioctl_ptr(sock, request, req) }?;
    Ok(())
}

/// Brings `ifname` up (IFF_UP).
pub fn link_up(ifname: &str) -> io::Result<()> {
    let sock = inet_socket()?;
    let mut req = IfReq::new(ifname)?;
    ifreq_ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req)?;
    let flags = i16::from_ne_bytes([req.data[0], req.data[1]]) | libc::IFF_UP as i16;
    req.data[..2].copy_from_slice(&flags.to_ne_bytes());
    ifreq_ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req)
}

/// Sets the IPv4 address and netmask of `ifname`.
pub fn set_address(ifname: &str, address: Ipv4Addr, netmask: Ipv4Addr) -> io::Result<()> {
    let sock = inet_socket()?;
    ifreq_ioctl(
        sock.as_raw_fd(),
        libc::SIOCSIFADDR,
        &mut IfReq::with_addr(ifname, address)?,
    )?;
    ifreq_ioctl(
        sock.as_raw_fd(),
        libc::SIOCSIFNETMASK,
        &mut IfReq::with_addr(ifname, netmask)?,
    )
}

/// The metric of DHCP's default route: above a static gateway's (0), so
/// that the config's gateway wins when both exist (systemd-networkd's DHCP
/// routes have the same).
pub const DHCP_ROUTE_METRIC: u16 = 1024;

/// Adds the default route via `gateway` on `ifname` with `metric` (as `ip
/// route` shows it); an existing one is fine.
pub fn add_default_route(ifname: &str, gateway: Ipv4Addr, metric: u16) -> io::Result<()> {
    add_route(
        ifname,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        gateway,
        metric,
    )
}

/// Adds a route to `dest`/`netmask` via `gateway` on `ifname` with
/// `metric` (as `ip route` shows it); an existing one is fine.
pub fn add_route(
    ifname: &str,
    dest: Ipv4Addr,
    netmask: Ipv4Addr,
    gateway: Ipv4Addr,
    metric: u16,
) -> io::Result<()> {
    let sock = inet_socket()?;
    let dev = CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // The kernel stores rt_metric - 1 (ifconfig's convention): 0 is 0.
    let metric = libc::c_short::try_from(u32::from(metric) + 1)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut rt = RtEntry {
        pad1: 0,
        dst: sockaddr_in(dest),
        gateway: sockaddr_in(gateway),
        genmask: sockaddr_in(netmask),
        flags: RTF_UP | RTF_GATEWAY,
        pad2: 0,
        pad3: 0,
        pad4: std::ptr::null_mut(),
        metric,
        dev: dev.as_ptr().cast_mut(),
        mtu: 0,
        window: 0,
        irtt: 0,
    };
    // SAFETY: SIOCADDRT reads one struct rtentry; dev outlives the call.
    match unsafe { crate::sys::ioctl_ptr(sock.as_raw_fd(), libc::SIOCADDRT, &mut rt) } {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Loopback: 127.0.0.1/8, up.
pub fn loopback_up() -> Result<(), Error> {
    let fail = |what| {
        move |err| Error::Net {
            what,
            interface: "lo".into(),
            err,
        }
    };
    set_address("lo", Ipv4Addr::LOCALHOST, Ipv4Addr::new(255, 0, 0, 0))
        .map_err(fail("setting 127.0.0.1/8"))?;
    link_up("lo").map_err(fail("bringing the link up"))
}

/// A packet socket on one interface for IPv4 frames, with the link layer
/// handled by the kernel (SOCK_DGRAM).
struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl PacketSocket {
    fn open(ifname: &str) -> io::Result<PacketSocket> {
        let proto = (libc::ETH_P_IP as u16).to_be();
        // SAFETY: plain socket(2).
        let fd = crate::sys::check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::c_int::from(proto),
            )
        })?;
        // SAFETY: fd was just returned by socket and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let ifindex = ifindex(ifname)?;
        let sll = Self::sockaddr(ifindex, [0; 8], 0);
        // SAFETY: sll is a valid sockaddr_ll of the given length.
        crate::sys::check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(PacketSocket { fd, ifindex })
    }

    fn sockaddr(ifindex: i32, addr: [u8; 8], halen: u8) -> libc::sockaddr_ll {
        // SAFETY: sockaddr_ll is plain old data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        sll.sll_ifindex = ifindex;
        sll.sll_halen = halen;
        sll.sll_addr = addr;
        sll
    }

    fn send_broadcast(&self, datagram: &[u8]) -> io::Result<()> {
        let sll = Self::sockaddr(self.ifindex, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0], 6);
        // SAFETY: buffer and address are valid for the given lengths.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                datagram.as_ptr().cast(),
                datagram.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Receives one packet, waiting at most until `deadline`.
    fn recv(&self, buf: &mut [u8], deadline: Instant) -> io::Result<Option<usize>> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(Some(0))
            } else {
                Err(e)
            };
        }
        if r == 0 {
            return Ok(None);
        }
        // SAFETY: buf is valid for writing buf.len() bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(Some(n as usize))
        }
    }
}

/// Waits for a reply of one of `kinds` to our transaction.
fn wait_reply(
    sock: &PacketSocket,
    id: &ClientId,
    kinds: &[MessageType],
    deadline: Instant,
) -> io::Result<Option<dhcp::Reply>> {
    let mut buf = vec![0u8; 2048];
    while let Some(n) = sock.recv(&mut buf, deadline)? {
        if let Some(reply) = dhcp::parse_reply(&buf[..n], id.xid, &id.mac)
            && reply.kind.is_some_and(|k| kinds.contains(&k))
        {
            return Ok(Some(reply));
        }
    }
    Ok(None)
}

/// Retransmission delays (short first: a VM's DHCP server answers at once,
/// and boot time matters), then RFC-style backoff.
const RETRANSMIT: [u64; 7] = [250, 500, 1000, 2000, 4000, 8000, 16000];

/// One DISCOVER → OFFER → REQUEST → ACK exchange, with retransmissions.
/// `None` if no server answered in time.
pub fn exchange(
    ifname: &str,
    id: &ClientId,
    previous: Option<Ipv4Addr>,
) -> Result<Option<Lease>, Error> {
    let fail = |what| {
        move |err| Error::Net {
            what,
            interface: ifname.to_string(),
            err,
        }
    };
    let sock = PacketSocket::open(ifname).map_err(fail("opening a packet socket"))?;
    for wait in RETRANSMIT {
        sock.send_broadcast(&dhcp::discover(id, previous))
            .map_err(fail("sending DHCPDISCOVER"))?;
        let deadline = Instant::now() + Duration::from_millis(wait);
        let Some(offer) =
            wait_reply(&sock, id, &[MessageType::Offer], deadline).map_err(fail("receiving"))?
        else {
            continue;
        };
        for wait in RETRANSMIT.iter().take(4) {
            sock.send_broadcast(&dhcp::request(id, offer.your_addr, offer.server))
                .map_err(fail("sending DHCPREQUEST"))?;
            let deadline = Instant::now() + Duration::from_millis(*wait);
            let kinds = [MessageType::Ack, MessageType::Nak];
            match wait_reply(&sock, id, &kinds, deadline).map_err(fail("receiving"))? {
                Some(r) if r.kind == Some(MessageType::Ack) => {
                    return Ok(Some(Lease::from_ack(&r)));
                }
                Some(_) => break, // NAK: start over with a new DISCOVER
                None => continue,
            }
        }
    }
    Ok(None)
}

/// Puts a lease on the interface: address, netmask, up, default route.
pub fn configure(ifname: &str, lease: &Lease) -> Result<(), Error> {
    let fail = |what| {
        move |err| Error::Net {
            what,
            interface: ifname.to_string(),
            err,
        }
    };
    set_address(ifname, lease.address, lease.netmask).map_err(fail("setting the address"))?;
    link_up(ifname).map_err(fail("bringing the link up"))?;
    if let Some(gw) = lease.router {
        add_default_route(ifname, gw, DHCP_ROUTE_METRIC)
            .map_err(fail("adding the default route"))?;
    }
    Ok(())
}

/// Where the name servers come from: the config's static ones (set once by
/// PID 1 after provisioning) and the DHCP lease's (at every lease, by the
/// DHCP thread). Either writer renders both, under the lock.
#[derive(Debug, Default)]
struct Resolver {
    static_dns: Vec<Ipv4Addr>,
    lease: Option<Lease>,
}

static RESOLVER: std::sync::Mutex<Resolver> = std::sync::Mutex::new(Resolver {
    static_dns: Vec::new(),
    lease: None,
});

/// At most this many `nameserver` lines: glibc reads three (MAXNS).
const MAX_NAMESERVERS: usize = 3;

/// resolv.conf text: the config's static name servers first (the
/// administrator chose them), then the lease's, without repeats, three at
/// most; the lease's search domain.
pub fn resolv_conf(static_dns: &[Ipv4Addr], lease: Option<&Lease>) -> String {
    let mut s = String::from(
        "# written by tandem-init from the config's static name servers and the DHCP lease; replace /etc/resolv.conf with a file to override\n",
    );
    if let Some(d) = lease.and_then(|l| l.domain.as_ref())
        && !d.is_empty()
        && !d.contains(char::is_whitespace)
    {
        s.push_str(&format!("search {d}\n"));
    }
    let mut servers: Vec<Ipv4Addr> = Vec::new();
    for ns in static_dns.iter().chain(lease.map_or(&[][..], |l| &l.dns)) {
        if !servers.contains(ns) {
            servers.push(*ns);
        }
    }
    for ns in servers.iter().take(MAX_NAMESERVERS) {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    s
}

/// Writes [`RESOLV_RUN`] with the lease's name servers after the static
/// ones, and points /etc/resolv.conf at it (unless the administrator has a
/// regular file there).
pub fn write_resolv_conf(lease: &Lease) -> Result<(), Error> {
    let mut r = RESOLVER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    r.lease = Some(lease.clone());
    write_resolver(&r)
}

/// Sets the config's static name servers and writes [`RESOLV_RUN`] (with
/// the lease's, if one came already).
pub fn set_static_dns(servers: Vec<Ipv4Addr>) -> Result<(), Error> {
    let mut r = RESOLVER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    r.static_dns = servers;
    write_resolver(&r)
}

fn write_resolver(r: &Resolver) -> Result<(), Error> {
    let run = Path::new(RESOLV_RUN);
    let tmp = run.with_extension("conf.tmp");
    let write_fail = |err| Error::Write {
        path: run.to_path_buf(),
        err,
    };
    std::fs::write(&tmp, resolv_conf(&r.static_dns, r.lease.as_ref())).map_err(write_fail)?;
    std::fs::rename(&tmp, run).map_err(write_fail)?;
    let etc = Path::new(RESOLV_ETC);
    match std::fs::symlink_metadata(etc) {
        Ok(m) if !m.file_type().is_symlink() => Ok(()), // administrator's file
        Ok(_)
            if std::fs::read_link(etc)
                .is_ok_and(|t| t == Path::new("../run/tandem/resolv.conf")) =>
        {
            Ok(())
        }
        _ => {
            let _ = std::fs::remove_file(etc);
            std::os::unix::fs::symlink("../run/tandem/resolv.conf", etc).map_err(|err| {
                Error::Write {
                    path: etc.to_path_buf(),
                    err,
                }
            })
        }
    }
}

/// What the DHCP client thread reports.
#[derive(Clone, Debug)]
pub enum NetEvent {
    /// No Ethernet interface appeared.
    NoInterface,
    /// A lease was configured.
    Configured {
        /// Interface.
        interface: String,
        /// MAC address.
        mac: [u8; 6],
        /// The lease.
        lease: Lease,
    },
    /// An attempt failed; the client keeps trying.
    Failed {
        /// Interface.
        interface: String,
        /// MAC address.
        mac: [u8; 6],
        /// Why.
        reason: String,
    },
}

fn new_xid() -> u32 {
    let mut b = [0u8; 4];
    if crate::sys::getrandom(&mut b).is_err() {
        return crate::sys::monotonic_us() as u32;
    }
    u32::from_ne_bytes(b)
}

/// The DHCP client: finds the interface, gets a lease, configures it,
/// renews at T1, and retries with backoff when no server answers. Runs
/// forever on its own thread; `report` is called on every change.
pub fn dhcp_client(hostname: Option<String>, interface_wait: Duration, report: impl Fn(NetEvent)) {
    let Some(ifname) = wait_for_ethernet(interface_wait) else {
        report(NetEvent::NoInterface);
        return;
    };
    let mac = match mac_address(&ifname) {
        Ok(m) => m,
        Err(e) => {
            report(NetEvent::Failed {
                interface: ifname,
                mac: [0; 6],
                reason: format!("reading the MAC address: {e}"),
            });
            return;
        }
    };
    if let Err(e) = link_up(&ifname) {
        report(NetEvent::Failed {
            interface: ifname.clone(),
            mac,
            reason: format!("bringing the link up: {e}"),
        });
    }
    let mut previous: Option<Ipv4Addr> = None;
    let mut backoff = Duration::from_secs(1);
    loop {
        let id = ClientId {
            xid: new_xid(),
            mac,
            hostname: hostname.clone(),
        };
        let outcome = exchange(&ifname, &id, previous).and_then(|lease| match lease {
            Some(l) => configure(&ifname, &l).map(|()| Some(l)),
            None => Ok(None),
        });
        match outcome {
            Ok(Some(lease)) => {
                let _ = write_resolv_conf(&lease);
                previous = Some(lease.address);
                backoff = Duration::from_secs(1);
                let renew = Duration::from_secs(u64::from(lease.renew_secs));
                report(NetEvent::Configured {
                    interface: ifname.clone(),
                    mac,
                    lease,
                });
                crate::sys::sleep(renew);
            }
            Ok(None) => {
                report(NetEvent::Failed {
                    interface: ifname.clone(),
                    mac,
                    reason: "no DHCP server answered".into(),
                });
                crate::sys::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
            Err(e) => {
                report(NetEvent::Failed {
                    interface: ifname.clone(),
                    mac,
                    reason: e.to_string(),
                });
                crate::sys::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        let m = parse_mac("52:54:00:12:34:56\n").expect("valid");
        assert_eq!(m, [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(format_mac(&m), "52:54:00:12:34:56");
        assert_eq!(parse_mac("52:54:00:12:34"), None);
        assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
        assert_eq!(parse_mac("zz:54:00:12:34:56"), None);
    }

    #[test]
    fn struct_layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
        assert_eq!(std::mem::offset_of!(RtEntry, flags), 56);
        assert_eq!(std::mem::offset_of!(RtEntry, dev), 88);
    }

    #[test]
    fn resolv_conf_text() {
        let lease = Lease {
            address: Ipv4Addr::new(10, 0, 2, 15),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            router: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
            domain: Some("example.net".into()),
            server: Ipv4Addr::new(10, 0, 2, 2),
            lease_secs: 86400,
            renew_secs: 43200,
        };
        let t = resolv_conf(&[], Some(&lease));
        assert!(
            t.contains("search example.net\nnameserver 10.0.2.3\n"),
            "{t}"
        );
        // The config's first, the lease's after, no repeats, three at most.
        let ip = |t: &str| t.parse::<Ipv4Addr>().expect("ip");
        let lease = Lease {
            dns: vec![ip("10.0.2.3"), ip("10.99.0.1"), ip("10.0.2.4")],
            ..lease
        };
        let t = resolv_conf(&[ip("10.99.0.1"), ip("10.99.0.2")], Some(&lease));
        assert!(
            t.ends_with("nameserver 10.99.0.1\nnameserver 10.99.0.2\nnameserver 10.0.2.3\n"),
            "{t}"
        );
        let t = resolv_conf(&[ip("10.99.0.1")], None);
        assert!(t.ends_with("override\nnameserver 10.99.0.1\n"), "{t}");
    }
}
