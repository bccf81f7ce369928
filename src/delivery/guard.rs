//! Outbound address policy: no deliveries to loopback, private, link-local, CGNAT,
//! unique-local, multicast, unspecified or other non-public addresses (nor their IPv4-mapped
//! IPv6 forms) unless `--allow-private-targets`. The check runs on the addresses a name
//! resolves to, inside the HTTP client's own resolver, so the address that is checked is the
//! address that is connected to; IP-literal URLs never reach a resolver and are checked
//! before sending.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a target was refused; shown as the attempt's error.
#[derive(Debug, thiserror::Error)]
#[error("refused: {host} resolves to non-public address {ip}")]
pub struct Refused {
    pub host: String,
    pub ip: IpAddr,
}

pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0                              // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link local fe80::/10
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64: may reach private IPv4
}

/// Names reserved for documentation and testing (RFC 2606, RFC 6761) never receive webhooks:
/// a delivery there is a configuration mistake, so it is refused before any lookup, even with
/// `--allow-private-targets`.
pub fn check_reserved_name(url: &url::Url) -> Result<(), String> {
    let Some(url::Host::Domain(host)) = url.host() else {
        return Ok(());
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let reserved_domain = ["example.com", "example.net", "example.org"]
        .iter()
        .any(|d| host == *d || host.ends_with(&format!(".{d}")));
    let reserved_tld = ["example", "invalid", "test"]
        .iter()
        .any(|tld| host == *tld || host.ends_with(&format!(".{tld}")));
    if reserved_domain || reserved_tld {
        Err(format!(
            "refused: {host} is reserved for documentation and testing"
        ))
    } else {
        Ok(())
    }
}

/// A literal IP host is checked here, since no resolver sees it.
pub fn check_literal(url: &url::Url) -> Result<(), Refused> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if is_public(ip) {
        Ok(())
    } else {
        Err(Refused {
            host: url.host_str().unwrap_or_default().to_owned(),
            ip,
        })
    }
}

/// The HTTP client's resolver: the system's answers, less the non-public ones.
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| is_public(a.ip()))
                .collect();
            match (public.is_empty(), addrs.first()) {
                (false, _) => Ok(Box::new(public.into_iter()) as Addrs),
                (true, Some(first)) => Err(Box::new(Refused {
                    host,
                    ip: first.ip(),
                }) as _),
                (true, None) => Err(format!("no address found for {host}").into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_ranges_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} should be refused");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} should be allowed");
        }
    }

    #[test]
    fn documentation_names_are_refused() {
        for url in [
            "https://example.com/x",
            "http://hooks.example.org/",
            "http://a.invalid/",
            "http://x.test:80/",
        ] {
            assert!(
                check_reserved_name(&url::Url::parse(url).unwrap()).is_err(),
                "{url}"
            );
        }
        assert!(
            check_reserved_name(&url::Url::parse("https://example.community/").unwrap()).is_ok()
        );
        assert!(check_reserved_name(&url::Url::parse("http://127.0.0.1:9/").unwrap()).is_ok());
    }

    #[test]
    fn literal_hosts_are_checked() {
        let url = url::Url::parse("http://[::ffff:127.0.0.1]:8080/x").unwrap();
        assert!(check_literal(&url).is_err());
        assert!(check_literal(&url::Url::parse("https://example.com/").unwrap()).is_ok());
    }
}
