//! Which address a request comes from when reverse proxies stand in front:
//! the socket peer, unless the peer is a trusted proxy, in which case the
//! nearest address in `X-Forwarded-For` (or RFC 7239 `Forwarded`) that is
//! not one. Anything further left the client could have written itself.
//! The edge and control both answer behind proxies, so both use this.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// The proxies whose forwarding headers are believed: addresses or CIDR
/// ranges (`10.0.0.0/8`, `2001:db8::/32`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither an IP address nor a CIDR range")]
pub struct BadProxy(pub String);

impl TrustedProxies {
    pub fn new(ranges: Vec<IpNet>) -> Self {
        Self(ranges)
    }

    /// Each address its own range.
    pub fn from_addrs(addrs: &[IpAddr]) -> Self {
        Self(addrs.iter().copied().map(IpNet::from).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|range| range.contains(&ip))
    }

    /// The client behind the proxies. `forwarded_for` are the values of
    /// every `X-Forwarded-For` header, `forwarded` those of `Forwarded`, in
    /// the order received; `Forwarded` is read only when there is no
    /// `X-Forwarded-For` (a proxy writes one or the other).
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a str>,
        forwarded: impl Iterator<Item = &'a str>,
    ) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let mut hops: Vec<IpAddr> = forwarded_for
            .flat_map(|value| value.split(','))
            .filter_map(|hop| hop.trim().parse().ok())
            .collect();
        if hops.is_empty() {
            hops = forwarded
                .flat_map(|value| value.split(','))
                .filter_map(forwarded_for_element)
                .collect();
        }
        // Walk back from the nearest hop: the first untrusted one is the
        // client as our own proxies saw it.
        hops.into_iter()
            .rev()
            .map(canonical)
            .find(|ip| !self.contains(*ip))
            .unwrap_or(peer)
    }
}

impl FromStr for TrustedProxies {
    type Err = BadProxy;

    /// A comma- or space-separated list; a bare address is its own range.
    fn from_str(text: &str) -> Result<Self, BadProxy> {
        text.split([',', ' '])
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<IpNet>()
                    .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| BadProxy(part.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// The `for=` address of one `Forwarded` element: `for=192.0.2.1`,
/// `for="[2001:db8::1]:4711"`; obfuscated names (`for=_hidden`) give none.
fn forwarded_for_element(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    })?;
    let value = value.trim_matches('"');
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    // An IPv4 address may carry a port; a bare IPv6 one cannot (it is quoted and bracketed).
    value
        .parse()
        .ok()
        .or_else(|| value.rsplit_once(':')?.0.parse().ok())
}

/// IPv4 seen through an IPv6 socket (`::ffff:192.0.2.1`) is IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: TrustedProxies = "10.0.0.1".parse().unwrap();
        let forged = ["1.1.1.1, 203.0.113.9"];
        let none: [&str; 0] = [];
        assert_eq!(
            trusted.client_ip(ip("198.51.100.7"), forged.into_iter(), none.into_iter()),
            ip("198.51.100.7")
        );
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), forged.into_iter(), none.into_iter()),
            ip("203.0.113.9")
        );
        assert_eq!(
            trusted.client_ip(
                ip("10.0.0.1"),
                ["203.0.113.9, 10.0.0.1"].into_iter(),
                none.into_iter()
            ),
            ip("203.0.113.9")
        );
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), none.into_iter(), none.into_iter()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ranges_and_the_forwarded_header() {
        let trusted: TrustedProxies = "10.0.0.0/8, 2001:db8::/32".parse().unwrap();
        assert!(trusted.contains(ip("10.9.8.7")));
        assert!(trusted.contains(ip("::ffff:10.1.1.1")), "mapped IPv4");
        assert!(!trusted.contains(ip("11.0.0.1")));
        let none: [&str; 0] = [];
        let forwarded = [r#"for=198.51.100.17:8080;proto=https, for="[2001:db8::9]:443""#];
        assert_eq!(
            trusted.client_ip(ip("10.0.0.2"), none.into_iter(), forwarded.into_iter()),
            ip("198.51.100.17")
        );
        let v6_client = [r#"for="[2001:db9::1]""#, "for=_hidden"];
        assert_eq!(
            trusted.client_ip(ip("2001:db8::1"), none.into_iter(), v6_client.into_iter()),
            ip("2001:db9::1")
        );
        assert_eq!(
            "".parse::<TrustedProxies>().unwrap(),
            TrustedProxies::default()
        );
        assert_eq!(
            "10.0.0.1, nonsense".parse::<TrustedProxies>(),
            Err(BadProxy("nonsense".into()))
        );
    }
}
