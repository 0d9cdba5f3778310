//! The `ip` column: addresses parsed and stored in one canonical text form,
//! optionally anonymised.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Parse an IPv4 or IPv6 address strictly: no ports, brackets, zone ids or
/// IPv4 leading zeros (`010.0.0.1` is ambiguous). An IPv4-mapped IPv6
/// address (`::ffff:1.2.3.4`, what a dual-stack socket reports for an IPv4
/// peer) becomes plain IPv4, so that one client has one address.
pub fn parse(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The canonical text of `ip`, parsed from `given`: borrowed when `given`
/// is already that text (always so for IPv4: the parser accepts only the
/// canonical dotted-quad).
pub fn text(given: &str, ip: IpAddr) -> Cow<'_, str> {
    match (given.parse::<Ipv4Addr>(), ip) {
        (Ok(v4), IpAddr::V4(ip4)) if v4 == ip4 => Cow::Borrowed(given),
        _ => Cow::Owned(ip.to_string()),
    }
}

/// `ip` with its host part zeroed, as Google Analytics does: the last
/// octet of an IPv4 address (a /24 remains), the last 80 bits of an IPv6
/// address (a /48 remains).
pub fn anonymize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & !0xff)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 80) - 1))),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::{anonymize, parse, text};

    /// The canonical text of an address, as the `ip` column stores it.
    fn normalize(s: &str) -> Option<Cow<'_, str>> {
        parse(s).map(|ip| text(s, ip))
    }

    #[test]
    fn anonymized_addresses() {
        for (given, want) in [
            ("81.2.69.142", "81.2.69.0"),
            ("10.0.0.255", "10.0.0.0"),
            ("2001:db8:1234:5678:9abc:def0:1:2", "2001:db8:1234::"),
            ("2001:480:10::1", "2001:480:10::"),
            ("::1", "::"),
        ] {
            assert_eq!(
                anonymize(parse(given).unwrap()).to_string(),
                want,
                "{given}"
            );
        }
    }

    #[test]
    fn valid_addresses() {
        for (given, want) in [
            ("1.2.3.4", "1.2.3.4"),
            ("255.255.255.255", "255.255.255.255"),
            ("::1", "::1"),
            ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
            ("2001:0db8::0001", "2001:db8::1"),
            ("::ffff:1.2.3.4", "1.2.3.4"),
            ("::ffff:0102:0304", "1.2.3.4"),
            ("::", "::"),
            ("fe80::1", "fe80::1"),
        ] {
            assert_eq!(normalize(given).as_deref(), Some(want), "{given}");
        }
    }

    #[test]
    fn invalid_addresses() {
        for s in [
            "",
            " 1.2.3.4",
            "1.2.3.4 ",
            "1.2.3",
            "1.2.3.256",
            "010.0.0.1",
            "1.2.3.4:80",
            "[::1]",
            "fe80::1%eth0",
            "localhost",
            "::g",
            "1:2:3:4:5:6:7:8:9",
        ] {
            assert_eq!(normalize(s), None, "{s:?}");
        }
    }
}
