//! The client's address: the peer of the TCP connection, or, only when that peer is a
//! trusted proxy, the rightmost address of `X-Forwarded-For` that is not itself a trusted
//! proxy. Every per-address decision (the public rate limit, the tips limit, the access
//! log) goes through [`client_ip`].

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::http::header::{HeaderMap, HeaderValue};
use actix_web::{web, HttpRequest};

use crate::feeds::webhooks::Network;

/// `RELAI_TRUSTED_PROXIES`: the reverse proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<Network>,
}

const X_FORWARDED_FOR: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static("x-forwarded-for");

/// Set once a request came with `X-Forwarded-For` from a peer that is not trusted, so
/// that the operator is told once, not on every request.
static UNTRUSTED_FORWARD_WARNED: AtomicBool = AtomicBool::new(false);

impl TrustedProxies {
    /// Trusts the proxies in these networks.
    pub fn new(networks: Vec<Network>) -> TrustedProxies {
        TrustedProxies { networks }
    }

    /// Whether no proxy is trusted (the default): the peer address is the client.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(canonical(ip)))
    }

    /// The client address of a request that came from `peer` with these headers.
    ///
    /// A proxy appends the address it received the request from to `X-Forwarded-For`;
    /// everything to the left of what a trusted proxy appended was written by the client
    /// and proves nothing. So the list is read from the right, skipping trusted proxies;
    /// the first other address is the client. If every entry is a trusted proxy, the
    /// leftmost is taken; an entry that is not an address stops the walk at the hop that
    /// wrote it.
    pub fn resolve(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer.map(canonical);
        if self.networks.is_empty() {
            if !UNTRUSTED_FORWARD_WARNED.load(Ordering::Relaxed)
                && headers.contains_key(X_FORWARDED_FOR)
            {
                warn_untrusted_forward(peer);
            }
            return peer;
        }
        let peer_ip = peer?;
        if !self.trusts(peer_ip) {
            return Some(peer_ip);
        }
        let mut client = peer_ip;
        // Several X-Forwarded-For headers are one list, in order. One is the usual case
        // and is read without collecting.
        let mut all = headers.get_all(X_FORWARDED_FOR);
        let (first, second) = (all.next(), all.next());
        let rest: Vec<&HeaderValue> = match (first, second) {
            (None, _) => return Some(client),
            (Some(only), None) => {
                return Some(match self.walk(only, &mut client) {
                    Some(found) => found,
                    None => client,
                })
            }
            (Some(a), Some(b)) => [a, b].into_iter().chain(all).collect(),
        };
        for value in rest.iter().rev() {
            if let Some(found) = self.walk(value, &mut client) {
                return Some(found);
            }
        }
        Some(client)
    }

    /// Reads one header value from the right. `Some` when the client is found (or the
    /// walk must stop); `None` to go on to the header on the left, `client` being the
    /// leftmost trusted hop so far.
    fn walk(&self, value: &HeaderValue, client: &mut IpAddr) -> Option<IpAddr> {
        let Ok(text) = std::str::from_utf8(value.as_bytes()) else {
            return Some(*client);
        };
        for hop in text.rsplit(',') {
            let hop = hop.trim();
            if hop.is_empty() {
                continue;
            }
            let Some(ip) = parse_hop(hop) else {
                return Some(*client);
            };
            if !self.trusts(ip) {
                return Some(ip);
            }
            *client = ip;
        }
        None
    }
}

fn warn_untrusted_forward(peer: Option<IpAddr>) {
    if !UNTRUSTED_FORWARD_WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            peer = ?peer,
            "a request came with X-Forwarded-For from a proxy that is not trusted: the header \
             is ignored and every client behind that proxy shares its address (and its rate \
             limit); name the proxy in RELAI_TRUSTED_PROXIES"
        );
    }
}

/// An `X-Forwarded-For` entry: `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]`,
/// `192.0.2.1:4711` or `[2001:db8::1]:4711` (some proxies add the port).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
        .map(canonical)
}

/// An IPv4 address seen through an IPv6 socket (`::ffff:192.0.2.1`) is that IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The client address of a request (see [`TrustedProxies::resolve`]); the peer address
/// when the app has no trusted proxies configured.
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    match req.app_data::<web::Data<TrustedProxies>>() {
        Some(proxies) => proxies.resolve(peer, req.headers()),
        None => peer.map(canonical),
    }
}

/// Parses `RELAI_TRUSTED_PROXIES`: comma-separated CIDR networks (a bare address is a /32
/// or /128).
pub fn parse_trusted_proxies(s: &str) -> Result<TrustedProxies, String> {
    crate::feeds::webhooks::parse_networks(s).map(TrustedProxies::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderName;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in xff {
            map.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.resolve(Some(ip("10.0.0.1")), &headers(&["203.0.113.9"])),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(
            none.resolve(Some(ip("::ffff:192.0.2.7")), &headers(&[])),
            Some(ip("192.0.2.7"))
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let proxies = parse_trusted_proxies("10.0.0.0/8, 2001:db8:cafe::/48").unwrap();
        // A forged entry on the left is ignored: the proxy appended the real client.
        assert_eq!(
            proxies.resolve(
                Some(ip("10.0.0.1")),
                &headers(&["198.51.100.66, 203.0.113.9"])
            ),
            Some(ip("203.0.113.9"))
        );
        // Trusted hops on the right are skipped, also across several headers.
        assert_eq!(
            proxies.resolve(
                Some(ip("10.0.0.1")),
                &headers(&["198.51.100.66, 203.0.113.9", "10.1.1.1", "2001:db8:cafe::2"])
            ),
            Some(ip("203.0.113.9"))
        );
        // Ports and brackets are tolerated.
        assert_eq!(
            proxies.resolve(Some(ip("10.0.0.1")), &headers(&["[2001:db8::5]:443"])),
            Some(ip("2001:db8::5"))
        );
        assert_eq!(
            proxies.resolve(Some(ip("10.0.0.1")), &headers(&["203.0.113.9:5000"])),
            Some(ip("203.0.113.9"))
        );
        // An untrusted peer's header is not believed.
        assert_eq!(
            proxies.resolve(Some(ip("192.0.2.1")), &headers(&["203.0.113.9"])),
            Some(ip("192.0.2.1"))
        );
        // No header: the proxy itself.
        assert_eq!(
            proxies.resolve(Some(ip("10.0.0.1")), &headers(&[])),
            Some(ip("10.0.0.1"))
        );
        // Only trusted hops: the leftmost.
        assert_eq!(
            proxies.resolve(Some(ip("10.0.0.1")), &headers(&["10.2.2.2, 10.3.3.3"])),
            Some(ip("10.2.2.2"))
        );
        // Garbage stops the walk at the hop that wrote it.
        assert_eq!(
            proxies.resolve(Some(ip("10.0.0.1")), &headers(&["unknown, 10.3.3.3"])),
            Some(ip("10.3.3.3"))
        );
        assert_eq!(
            proxies.resolve(Some(ip("10.0.0.1")), &headers(&["not an address"])),
            Some(ip("10.0.0.1"))
        );
        assert!(parse_trusted_proxies("10.0.0.0/8,nonsense").is_err());
        assert!(parse_trusted_proxies("").unwrap().is_empty());
    }
}
