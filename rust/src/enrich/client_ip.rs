//! Which address a request came from (the `ip` column, before the body's
//! `ip` override).
//!
//! - The socket peer, unless it is one of the configured trusted proxies
//!   (`--trusted-proxies`: addresses and CIDRs, IPv4 and IPv6).
//! - When the peer is trusted and the request has `X-Forwarded-For`, the
//!   list is read from the right (the hop nearest to us) leftwards, skipping
//!   trusted proxies: the first address that is not a trusted proxy is the
//!   client. Entries to its left were written by the client or by proxies
//!   we cannot vouch for, so they are never believed.
//! - If every entry is a trusted proxy, the left-most one is the client. An
//!   entry that is not an address (`unknown`, garbage) ends the walk: the
//!   chain cannot be followed further, and the last address read (a trusted
//!   hop, or the peer) is the client.
//! - Entries may carry a port (`1.2.3.4:5678`, `[2001:db8::1]:443`) or
//!   brackets; IPv4-mapped IPv6 counts as IPv4.
//!
//! Several `X-Forwarded-For` header lines are one list, joined with commas
//! in order (RFC 9110), which the HTTP layer does before calling us.

use std::net::{IpAddr, SocketAddr};

use crate::ingest::ip;

/// One network: an address with its prefix length, host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Net {
    V4 { addr: u32, mask: u32, len: u8 },
    V6 { addr: u128, mask: u128, len: u8 },
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip) {
            (Net::V4 { addr, mask, .. }, IpAddr::V4(v4)) => u32::from(v4) & mask == addr,
            (Net::V6 { addr, mask, .. }, IpAddr::V6(v6)) => u128::from(v6) & mask == addr,
            _ => false,
        }
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Net::V4 { addr, len, .. } => write!(f, "{}/{len}", std::net::Ipv4Addr::from(addr)),
            Net::V6 { addr, len, .. } => write!(f, "{}/{len}", std::net::Ipv6Addr::from(addr)),
        }
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<Net>,
}

impl TrustedProxies {
    /// No trusted proxy: the peer is always the client.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parse addresses (`10.0.0.1`, `::1`) and CIDRs (`10.0.0.0/8`,
    /// `fd00::/8`); host bits set in a CIDR are ignored (`10.1.2.3/8` is
    /// `10.0.0.0/8`). Each item may itself hold several, separated by commas
    /// or whitespace; empty items are skipped. An IPv4-mapped IPv6 network
    /// (`::ffff:10.0.0.0/104`) is the IPv4 one.
    pub fn parse<I, S>(items: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets = Vec::new();
        for item in items {
            for part in item
                .as_ref()
                .split(|c: char| c == ',' || c.is_ascii_whitespace())
                .filter(|p| !p.is_empty())
            {
                let net = parse_net(part).map_err(|why| {
                    format!("trusted proxy {part:?} is not an IP address or CIDR: {why}")
                })?;
                if !nets.contains(&net) {
                    nets.push(net);
                }
            }
        }
        Ok(TrustedProxies { nets })
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The networks, as CIDR text (`127.0.0.1/32`).
    pub fn cidrs(&self) -> Vec<String> {
        self.nets.iter().map(Net::to_string).collect()
    }

    /// The client address of a request from `peer` that carried
    /// `forwarded_for` (the `X-Forwarded-For` value, if any): see the
    /// module docs. `None` when there is no peer address.
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer?.to_canonical();
        let Some(list) = forwarded_for else {
            return Some(peer);
        };
        if !self.contains(peer) {
            return Some(peer);
        }
        let mut client = peer;
        for entry in list.rsplit(',') {
            let entry = entry.trim_ascii();
            if entry.is_empty() {
                continue;
            }
            let Some(addr) = forwarded_addr(entry) else {
                break;
            };
            client = addr;
            if !self.contains(addr) {
                break;
            }
        }
        Some(client)
    }
}

fn parse_net(s: &str) -> Result<Net, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => {
            let len = l
                .parse::<u8>()
                .map_err(|_| format!("bad prefix length {l:?}"))?;
            (a, Some(len))
        }
        None => (s, None),
    };
    let parsed: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an address"))?;
    match parsed {
        IpAddr::V4(v4) => {
            let len = len.unwrap_or(32);
            if len > 32 {
                return Err(format!("prefix length {len} is longer than 32"));
            }
            Ok(Net::V4 {
                addr: u32::from(v4) & mask32(len),
                mask: mask32(len),
                len,
            })
        }
        IpAddr::V6(v6) => {
            let len = len.unwrap_or(128);
            if len > 128 {
                return Err(format!("prefix length {len} is longer than 128"));
            }
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), len >= 96) {
                let len = len - 96;
                return Ok(Net::V4 {
                    addr: u32::from(v4) & mask32(len),
                    mask: mask32(len),
                    len,
                });
            }
            Ok(Net::V6 {
                addr: u128::from(v6) & mask128(len),
                mask: mask128(len),
                len,
            })
        }
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port or in
/// brackets.
fn forwarded_addr(entry: &str) -> Option<IpAddr> {
    if let Some(ip) = ip::parse(entry) {
        return Some(ip);
    }
    if let Ok(sa) = entry.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .and_then(ip::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(items: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(items).unwrap()
    }

    #[test]
    fn parses_addresses_and_cidrs() {
        let t = trusted(&[
            "127.0.0.1",
            "10.1.2.3/8, fd00::/8",
            " ::1  192.168.0.0/16",
            "",
        ]);
        assert_eq!(
            t.cidrs(),
            [
                "127.0.0.1/32",
                "10.0.0.0/8",
                "fd00::/8",
                "::1/128",
                "192.168.0.0/16"
            ]
        );
        for yes in [
            "127.0.0.1",
            "10.200.0.1",
            "fd12::5",
            "::1",
            "192.168.4.4",
            "::ffff:10.0.0.9",
        ] {
            assert!(t.contains(ip(yes)), "{yes}");
        }
        for no in ["127.0.0.2", "11.0.0.1", "fe80::1", "::2", "8.8.8.8"] {
            assert!(!t.contains(ip(no)), "{no}");
        }
        let mapped = trusted(&["::ffff:10.0.0.0/104"]);
        assert_eq!(mapped.cidrs(), ["10.0.0.0/8"]);
        assert!(trusted(&["0.0.0.0/0"]).contains(ip("203.0.113.1")));
        assert!(!trusted(&["0.0.0.0/0"]).contains(ip("2001:db8::1")));
        assert!(trusted(&["::/0"]).contains(ip("2001:db8::1")));
        assert!(trusted(&[]).is_empty());
    }

    #[test]
    fn bad_entries_are_errors_that_name_them() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "localhost",
            "10.0.0.0/x",
            "1.2.3",
            "10.0.0.0/",
        ] {
            let e = TrustedProxies::parse([bad]).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn the_peer_is_the_client_unless_trusted() {
        let t = trusted(&["127.0.0.1", "10.0.0.0/8"]);
        let none = TrustedProxies::none();
        let xff = Some("1.1.1.1, 2.2.2.2");
        assert_eq!(
            none.client_ip(Some(ip("127.0.0.1")), xff),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(t.client_ip(Some(ip("8.8.8.8")), xff), Some(ip("8.8.8.8")));
        assert_eq!(
            t.client_ip(Some(ip("127.0.0.1")), None),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(t.client_ip(None, xff), None);
        assert_eq!(
            t.client_ip(Some(ip("::ffff:8.8.8.8")), None),
            Some(ip("8.8.8.8"))
        );
    }

    #[test]
    fn the_right_most_untrusted_forwarded_address_is_the_client() {
        let t = trusted(&["127.0.0.1", "10.0.0.0/8", "2001:db8:ffff::/48"]);
        let peer = Some(ip("127.0.0.1"));
        for (xff, want) in [
            ("81.2.69.142", "81.2.69.142"),
            ("6.6.6.6, 81.2.69.142", "81.2.69.142"),
            ("6.6.6.6, 81.2.69.142, 10.0.0.5", "81.2.69.142"),
            ("81.2.69.142,10.0.0.5,10.0.0.6", "81.2.69.142"),
            ("2001:480:10::1, 2001:db8:ffff::9", "2001:480:10::1"),
            ("[2001:480:10::1]:443", "2001:480:10::1"),
            ("[2001:480:10::1]", "2001:480:10::1"),
            ("81.2.69.142:5678", "81.2.69.142"),
            ("::ffff:81.2.69.142", "81.2.69.142"),
            // All trusted: the left-most.
            ("10.0.0.1, 10.0.0.2", "10.0.0.1"),
            // Garbage ends the walk at the last address read.
            ("81.2.69.142, unknown, 10.0.0.7", "10.0.0.7"),
            ("unknown", "127.0.0.1"),
            ("", "127.0.0.1"),
            (" , ,81.2.69.142 , ", "81.2.69.142"),
            ("010.0.0.1", "127.0.0.1"),
        ] {
            assert_eq!(t.client_ip(peer, Some(xff)), Some(ip(want)), "{xff:?}");
        }
    }
}
