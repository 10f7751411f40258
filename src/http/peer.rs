//! Who a request really comes from: the TCP peer, or, when that peer is a
//! trusted reverse proxy, the client its forwarding header names.
//!
//! [`TrustedProxies`] is `server.trusted_proxies` parsed once. For a
//! request whose peer it trusts, [`TrustedProxies::client_address`] reads
//! `X-Forwarded-For` (or, when the request has none, RFC 7239 `Forwarded`)
//! as the chain of addresses the request passed through and walks it from
//! the right, past every trusted hop, to the first address it does not
//! trust: the client. (A proxy appends the address it saw; what a client
//! wrote itself stands further left and is never reached while a trusted
//! proxy is in between.) An entry that is not an address (`unknown`, an
//! obfuscated name) stops the walk at the hop that reported it. The
//! result travels with the request as [`ClientAddr`]; every per-address
//! limit reads it. Nothing here refuses anything.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// The real client address of a request (an extension set by the
/// connection gate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The peers whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parse `server.trusted_proxies` (validated at config load; an entry
    /// that does not parse is skipped).
    pub fn new(list: &[String]) -> Self {
        Self(
            list.iter()
                .filter_map(|p| crate::config::parse_network(p))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client a request from `peer` with `headers` comes from.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let chain = forwarded_chain(headers);
        let mut client = peer;
        for hop in chain.iter().rev() {
            match hop {
                Some(ip) if self.trusts(client) => client = ip.to_canonical(),
                _ => break,
            }
        }
        client
    }
}

/// Whether a request carries a forwarding header at all (for the hint
/// that a proxy in front is not trusted).
pub fn is_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key("x-forwarded-for") || headers.contains_key("forwarded")
}

/// The addresses a forwarding header lists, left (the client's side) to
/// right (the nearest proxy's); `None` for an entry that is no address.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let xff = values("x-forwarded-for");
    if !xff.is_empty() {
        return xff.iter().map(|n| node_address(n)).collect();
    }
    values("forwarded")
        .iter()
        .map(|element| {
            element
                .split(';')
                .find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
                })
                .and_then(node_address)
        })
        .collect()
}

/// An address as forwarding headers write it: `192.0.2.1`,
/// `192.0.2.1:4711`, `2001:db8::1`, `"[2001:db8::1]:4711"`.
fn node_address(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_peer_is_believed_and_the_walk_stops_at_the_first_stranger() {
        let trusted = TrustedProxies::new(&["10.0.0.0/8".into(), "127.0.0.1".into()]);
        let spoof = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.7")]);
        // From the proxy: past 10.0.0.7 (trusted) to 203.0.113.9; the
        // client's own 1.1.1.1 is never reached.
        assert_eq!(
            trusted.client_address(ip("10.1.1.1"), &spoof),
            ip("203.0.113.9")
        );
        // From a stranger: its own address, whatever it claims.
        assert_eq!(
            trusted.client_address(ip("198.51.100.1"), &spoof),
            ip("198.51.100.1")
        );
        assert_eq!(
            TrustedProxies::default().client_address(ip("127.0.0.1"), &spoof),
            ip("127.0.0.1")
        );
        // No header: the proxy itself.
        assert_eq!(
            trusted.client_address(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        // An unknown hop stops the walk at the proxy that reported it.
        let unknown = headers(&[("x-forwarded-for", "unknown, 10.0.0.9")]);
        assert_eq!(
            trusted.client_address(ip("127.0.0.1"), &unknown),
            ip("10.0.0.9")
        );
    }

    #[test]
    fn reads_forwarded_and_the_forms_of_an_address() {
        let trusted = TrustedProxies::new(&["127.0.0.1".into()]);
        let f = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=http;by=203.0.113.43, for=\"[2001:db8:cafe::17]:4711\"",
        )]);
        assert_eq!(
            trusted.client_address(ip("127.0.0.1"), &f),
            ip("2001:db8:cafe::17")
        );
        let x = headers(&[("x-forwarded-for", "192.0.2.1:5555")]);
        assert_eq!(trusted.client_address(ip("127.0.0.1"), &x), ip("192.0.2.1"));
        // X-Forwarded-For wins when both are there.
        let both = headers(&[
            ("forwarded", "for=192.0.2.60"),
            ("x-forwarded-for", "192.0.2.1"),
        ]);
        assert_eq!(
            trusted.client_address(ip("127.0.0.1"), &both),
            ip("192.0.2.1")
        );
        // An IPv4-mapped peer is its IPv4 address.
        assert!(trusted.trusts(ip("::ffff:127.0.0.1").to_canonical()));
        assert_eq!(
            trusted.client_address(ip("::ffff:127.0.0.1"), &x),
            ip("192.0.2.1")
        );
    }
}
