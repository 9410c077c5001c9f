//! DHCPv4 client packets (RFC 2131/2132), pure: building DISCOVER and
//! REQUEST as complete IPv4/UDP datagrams (sent on a packet socket before the
//! interface has an address) and parsing OFFER/ACK/NAK from received IPv4
//! packets. The socket side is in [`crate::net`].

use std::net::Ipv4Addr;

/// UDP port of the client.
pub const CLIENT_PORT: u16 = 68;
/// UDP port of the server.
pub const SERVER_PORT: u16 = 67;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
const BOOTP_FIXED: usize = 236;
/// Some servers ignore BOOTP messages shorter than this.
const BOOTP_MIN: usize = 300;

/// DHCP message types (option 53).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    /// Client looks for servers.
    Discover = 1,
    /// Server offers an address.
    Offer = 2,
    /// Client requests the offered address.
    Request = 3,
    /// Client declines an address in use.
    Decline = 4,
    /// Server confirms.
    Ack = 5,
    /// Server refuses.
    Nak = 6,
    /// Client gives the address back.
    Release = 7,
}

impl MessageType {
    fn from_u8(v: u8) -> Option<MessageType> {
        Some(match v {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            _ => return None,
        })
    }
}

/// What the client puts in its messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientId {
    /// Transaction id.
    pub xid: u32,
    /// Hardware (MAC) address.
    pub mac: [u8; 6],
    /// Host name to announce (option 12), if any.
    pub hostname: Option<String>,
}

/// A parsed server reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// OFFER, ACK or NAK.
    pub kind: Option<MessageType>,
    /// The address offered or assigned (`yiaddr`).
    pub your_addr: Ipv4Addr,
    /// Server identifier (option 54), else the IP source address.
    pub server: Ipv4Addr,
    /// Subnet mask (option 1).
    pub netmask: Option<Ipv4Addr>,
    /// Routers (option 3).
    pub routers: Vec<Ipv4Addr>,
    /// DNS servers (option 6).
    pub dns: Vec<Ipv4Addr>,
    /// Domain name (option 15).
    pub domain: Option<String>,
    /// Lease time in seconds (option 51).
    pub lease_secs: Option<u32>,
    /// Renewal time T1 (option 58).
    pub renew_secs: Option<u32>,
}

impl Default for Reply {
    fn default() -> Reply {
        Reply {
            kind: None,
            your_addr: Ipv4Addr::UNSPECIFIED,
            server: Ipv4Addr::UNSPECIFIED,
            netmask: None,
            routers: Vec::new(),
            dns: Vec::new(),
            domain: None,
            lease_secs: None,
            renew_secs: None,
        }
    }
}

/// A lease as configured on the interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Our address.
    pub address: Ipv4Addr,
    /// Netmask.
    pub netmask: Ipv4Addr,
    /// Default gateway.
    pub router: Option<Ipv4Addr>,
    /// DNS servers.
    pub dns: Vec<Ipv4Addr>,
    /// Search domain.
    pub domain: Option<String>,
    /// The server that granted it.
    pub server: Ipv4Addr,
    /// Lease length, seconds.
    pub lease_secs: u32,
    /// When to renew (T1), seconds.
    pub renew_secs: u32,
}

impl Lease {
    /// The lease an ACK grants. Missing netmask: the classful default;
    /// missing lease time: one hour; missing T1: half the lease (RFC 2131 4.4.5).
    pub fn from_ack(ack: &Reply) -> Lease {
        let lease_secs = ack.lease_secs.unwrap_or(3600).max(60);
        let netmask = ack.netmask.unwrap_or_else(|| classful_mask(ack.your_addr));
        Lease {
            address: ack.your_addr,
            netmask,
            router: ack.routers.first().copied(),
            dns: ack.dns.clone(),
            domain: ack.domain.clone(),
            server: ack.server,
            lease_secs,
            renew_secs: ack
                .renew_secs
                .filter(|&t| t > 0 && t < lease_secs)
                .unwrap_or(lease_secs / 2),
        }
    }

    /// Prefix length of the netmask.
    pub fn prefix_len(&self) -> u32 {
        u32::from(self.netmask).leading_ones()
    }
}

fn classful_mask(a: Ipv4Addr) -> Ipv4Addr {
    match a.octets()[0] {
        0..=127 => Ipv4Addr::new(255, 0, 0, 0),
        128..=191 => Ipv4Addr::new(255, 255, 0, 0),
        _ => Ipv4Addr::new(255, 255, 255, 0),
    }
}

/// The Internet checksum (RFC 1071) of `data`, continuing from `sum`.
fn checksum(mut sum: u32, data: &[u8]) -> u16 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Wraps a UDP payload into an IPv4 datagram with valid IP and UDP checksums.
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0x10]); // IPv4, 20-byte header; low delay
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0]); // id 0, don't fragment
    p.extend_from_slice(&[64, 17, 0, 0]); // TTL, UDP, checksum placeholder
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let ip_sum = checksum(0, &p[..20]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());

    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    // Pseudo header: src, dst, zero, protocol, UDP length.
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    let mut sum = 0u32;
    for c in pseudo.chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    let udp_sum = match checksum(sum, &p[20..]) {
        0 => 0xffff, // 0 means "no checksum" in UDP over IPv4
        s => s,
    };
    p[26..28].copy_from_slice(&udp_sum.to_be_bytes());
    p
}

fn bootp_request(id: &ClientId, kind: MessageType, options: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![0u8; BOOTP_FIXED];
    b[0] = 1; // BOOTREQUEST
    b[1] = 1; // Ethernet
    b[2] = 6; // MAC length
    b[4..8].copy_from_slice(&id.xid.to_be_bytes());
    b[10] = 0x80; // broadcast flag: we cannot receive unicast before configuring
    b[28..34].copy_from_slice(&id.mac);
    b.extend_from_slice(&MAGIC_COOKIE);
    b.extend_from_slice(&[53, 1, kind as u8]);
    let mut client_id = vec![1];
    client_id.extend_from_slice(&id.mac);
    let mut push = |code: u8, value: &[u8]| {
        if value.len() <= 255 {
            b.push(code);
            b.push(value.len() as u8);
            b.extend_from_slice(value);
        }
    };
    push(61, &client_id);
    for (code, value) in options {
        push(*code, value);
    }
    // Subnet mask, router, DNS, host name, domain, broadcast, lease, server id, T1, T2.
    push(55, &[1, 3, 6, 12, 15, 28, 51, 54, 58, 59]);
    push(57, &1500u16.to_be_bytes()); // max message size
    if let Some(h) = &id.hostname {
        push(12, h.as_bytes());
    }
    b.push(255);
    if b.len() < BOOTP_MIN {
        b.resize(BOOTP_MIN, 0);
    }
    b
}

/// A DHCPDISCOVER datagram (0.0.0.0 → 255.255.255.255), optionally asking
/// for the address held before.
pub fn discover(id: &ClientId, previous: Option<Ipv4Addr>) -> Vec<u8> {
    let opts: Vec<(u8, Vec<u8>)> = previous
        .map(|a| (50, a.octets().to_vec()))
        .into_iter()
        .collect();
    let bootp = bootp_request(id, MessageType::Discover, &opts);
    ipv4_udp(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        CLIENT_PORT,
        SERVER_PORT,
        &bootp,
    )
}

/// A DHCPREQUEST datagram for `address` from `server` (SELECTING state).
pub fn request(id: &ClientId, address: Ipv4Addr, server: Ipv4Addr) -> Vec<u8> {
    let opts = vec![
        (50, address.octets().to_vec()),
        (54, server.octets().to_vec()),
    ];
    let bootp = bootp_request(id, MessageType::Request, &opts);
    ipv4_udp(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        CLIENT_PORT,
        SERVER_PORT,
        &bootp,
    )
}

fn addr(b: &[u8]) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::new(
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ))
}

fn addrs(b: &[u8]) -> Vec<Ipv4Addr> {
    b.chunks_exact(4).filter_map(addr).collect()
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// Parses a received IPv4 packet; `Some` only for a well-formed DHCP reply
/// to our transaction (`xid` and `mac`).
pub fn parse_reply(packet: &[u8], xid: u32, mac: &[u8; 6]) -> Option<Reply> {
    // IPv4 header.
    let first = *packet.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    let frag = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]);
    if ihl < 20
        || total < ihl + 8
        || total > packet.len()
        || *packet.get(9)? != 17
        || frag & 0x3fff != 0
    {
        return None;
    }
    let src = addr(packet.get(12..16)?)?;
    let udp = &packet[ihl..total];
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if dport != CLIENT_PORT || udp_len < 8 || udp_len > udp.len() {
        return None;
    }
    let b = &udp[8..udp_len];

    // BOOTP.
    if b.len() < BOOTP_FIXED + 4 || b[0] != 2 || be32(&b[4..8])? != xid || b[28..34] != mac[..] {
        return None;
    }
    if b[BOOTP_FIXED..BOOTP_FIXED + 4] != MAGIC_COOKIE {
        return None;
    }
    let mut r = Reply {
        your_addr: addr(&b[16..20])?,
        server: src,
        ..Reply::default()
    };
    let mut opts = &b[BOOTP_FIXED + 4..];
    while let Some((&code, rest)) = opts.split_first() {
        match code {
            0 => {
                opts = rest;
                continue;
            }
            255 => break,
            _ => {}
        }
        let (&len, rest) = rest.split_first()?;
        let value = rest.get(..usize::from(len))?;
        opts = &rest[usize::from(len)..];
        match code {
            53 => r.kind = value.first().copied().and_then(MessageType::from_u8),
            54 => r.server = addr(value).unwrap_or(r.server),
            1 => r.netmask = addr(value),
            3 => r.routers = addrs(value),
            6 => r.dns = addrs(value),
            15 => {
                r.domain = std::str::from_utf8(value)
                    .ok()
                    .map(|s| s.trim_end_matches('\0').to_string())
            }
            51 => r.lease_secs = be32(value),
            58 => r.renew_secs = be32(value),
            _ => {}
        }
    }
    r.kind?;
    Some(r)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    fn id() -> ClientId {
        ClientId {
            xid: 0xdead_beef,
            mac: MAC,
            hostname: Some("tandem-1234abcd".into()),
        }
    }

    /// What QEMU's slirp answers, built independently of the client code.
    pub(crate) fn server_reply(kind: u8, xid: u32, mac: [u8; 6]) -> Vec<u8> {
        let mut b = vec![0u8; BOOTP_FIXED];
        b[0] = 2;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&xid.to_be_bytes());
        b[16..20].copy_from_slice(&[10, 0, 2, 15]);
        b[20..24].copy_from_slice(&[10, 0, 2, 2]);
        b[28..34].copy_from_slice(&mac);
        b.extend_from_slice(&MAGIC_COOKIE);
        b.extend_from_slice(&[53, 1, kind]);
        b.extend_from_slice(&[0, 0]); // pad
        b.extend_from_slice(&[54, 4, 10, 0, 2, 2]);
        b.extend_from_slice(&[1, 4, 255, 255, 255, 0]);
        b.extend_from_slice(&[3, 4, 10, 0, 2, 2]);
        b.extend_from_slice(&[6, 8, 10, 0, 2, 3, 1, 1, 1, 1]);
        b.extend_from_slice(&[51, 4, 0, 1, 0x51, 0x80]); // 86400
        b.push(255);
        ipv4_udp(
            Ipv4Addr::new(10, 0, 2, 2),
            Ipv4Addr::BROADCAST,
            SERVER_PORT,
            CLIENT_PORT,
            &b,
        )
    }

    fn options(pkt: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let b = &pkt[28..];
        let mut o = &b[BOOTP_FIXED + 4..];
        let mut out = Vec::new();
        while let [code, len, rest @ ..] = o {
            if *code == 255 {
                break;
            }
            out.push((*code, rest[..usize::from(*len)].to_vec()));
            o = &rest[usize::from(*len)..];
        }
        out
    }

    #[test]
    fn discover_is_a_valid_broadcast() {
        let p = discover(&id(), None);
        assert_eq!(p[0], 0x45);
        assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
        assert_eq!(checksum(0, &p[..20]), 0, "IP header checksum verifies");
        assert_eq!(&p[12..16], &[0, 0, 0, 0]);
        assert_eq!(&p[16..20], &[255, 255, 255, 255]);
        assert_eq!(u16::from_be_bytes([p[20], p[21]]), 68);
        assert_eq!(u16::from_be_bytes([p[22], p[23]]), 67);
        assert!(p.len() - 28 >= BOOTP_MIN);
        let b = &p[28..];
        assert_eq!((b[0], b[1], b[2]), (1, 1, 6));
        assert_eq!(be32(&b[4..8]), Some(0xdead_beef));
        assert_eq!(b[10], 0x80, "broadcast flag");
        assert_eq!(&b[28..34], &MAC);
        let o = options(&p);
        assert_eq!(o[0], (53, vec![1]));
        assert!(o.contains(&(12, b"tandem-1234abcd".to_vec())));
        assert!(!o.iter().any(|(c, _)| *c == 50));
    }

    #[test]
    fn udp_checksum_verifies() {
        let p = request(
            &id(),
            Ipv4Addr::new(10, 0, 2, 15),
            Ipv4Addr::new(10, 0, 2, 2),
        );
        let udp = &p[20..];
        let mut sum = 0u32;
        for c in [
            &p[12..14],
            &p[14..16],
            &p[16..18],
            &p[18..20],
            &[0u8, 17][..],
            &udp[4..6],
        ] {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        assert_eq!(checksum(sum, udp), 0);
    }

    #[test]
    fn request_names_address_and_server() {
        let p = request(
            &id(),
            Ipv4Addr::new(10, 0, 2, 15),
            Ipv4Addr::new(10, 0, 2, 2),
        );
        let o = options(&p);
        assert_eq!(o[0], (53, vec![3]));
        assert!(o.contains(&(50, vec![10, 0, 2, 15])));
        assert!(o.contains(&(54, vec![10, 0, 2, 2])));
    }

    #[test]
    fn parses_an_ack() {
        let r =
            parse_reply(&server_reply(5, 0xdead_beef, MAC), 0xdead_beef, &MAC).expect("our ACK");
        assert_eq!(r.kind, Some(MessageType::Ack));
        assert_eq!(r.your_addr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(r.server, Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(r.routers, vec![Ipv4Addr::new(10, 0, 2, 2)]);
        assert_eq!(
            r.dns,
            vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)]
        );
        let lease = Lease::from_ack(&r);
        assert_eq!(lease.prefix_len(), 24);
        assert_eq!(lease.lease_secs, 86400);
        assert_eq!(lease.renew_secs, 43200);
    }

    #[test]
    fn ignores_other_transactions_and_garbage() {
        let ack = server_reply(5, 0xdead_beef, MAC);
        assert!(parse_reply(&ack, 1, &MAC).is_none(), "other xid");
        assert!(
            parse_reply(&ack, 0xdead_beef, &[0; 6]).is_none(),
            "other MAC"
        );
        for cut in [0, 1, 10, 20, 27, 28, 100, 270, ack.len() - 1] {
            // Truncated packets never panic; most are refused.
            let _ = parse_reply(&ack[..cut], 0xdead_beef, &MAC);
        }
        let mut bad = ack.clone();
        bad[9] = 6; // TCP
        assert!(parse_reply(&bad, 0xdead_beef, &MAC).is_none());
        let mut long_opt = ack.clone();
        let n = long_opt.len();
        long_opt[n - 1] = 42; // the END option becomes a code with no length
        assert!(parse_reply(&long_opt, 0xdead_beef, &MAC).is_none());
    }

    #[test]
    fn lease_defaults() {
        let r = Reply {
            your_addr: Ipv4Addr::new(172, 16, 0, 9),
            kind: Some(MessageType::Ack),
            ..Reply::default()
        };
        let l = Lease::from_ack(&r);
        assert_eq!(l.netmask, Ipv4Addr::new(255, 255, 0, 0));
        assert_eq!((l.lease_secs, l.renew_secs), (3600, 1800));
        assert_eq!(l.router, None);
    }
}
