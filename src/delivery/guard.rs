//! Outbound address policy: no deliveries to loopback, private, link-local, CGNAT,
//! unique-local, multicast, unspecified or other non-public addresses unless
//! `--allow-private-targets`. IPv6 addresses that carry an IPv4 address (IPv4-mapped,
//! IPv4-compatible, 6to4, Teredo, NAT64) are judged by the IPv4 address they carry. The check runs on the addresses a name
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
    if ip.is_loopback() || ip.is_unspecified() {
        return false;
    }
    let s = ip.segments();
    let v4 = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    // Addresses that carry an IPv4 address reach that address through a tunnel or a
    // translator, so they are as public as the IPv4 address they carry.
    match s {
        // IPv4-compatible ::a.b.c.d (RFC 4291, deprecated but still routed by some stacks),
        // and SIIT's IPv4-translated ::ffff:0:a.b.c.d (RFC 2765).
        [0, 0, 0, 0, 0, 0, high, low] | [0, 0, 0, 0, 0xffff, 0, high, low] => {
            is_public_v4(v4(high, low))
        }
        // Discard-only 100::/64 (RFC 6666): a black hole, never a receiver.
        [0x100, 0, 0, 0, ..] => false,
        // 6to4 (RFC 3056): 2002:AABB:CCDD::/48 tunnels to AA.BB.CC.DD.
        [0x2002, high, low, ..] => is_public_v4(v4(high, low)),
        // Teredo (RFC 4380): 2001:0:server:flags:port:client, the client address inverted.
        // Either end may be where the packet goes, so both must be public.
        [0x2001, 0, server_high, server_low, _, _, client_high, client_low] => {
            is_public_v4(v4(server_high, server_low)) && is_public_v4(v4(!client_high, !client_low))
        }
        // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052), and the local-use 64:ff9b:1::/48
        // (RFC 8215) read with the IPv4 address in its last 32 bits, as DNS64 writes it.
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] | [0x64, 0xff9b, 1, _, _, _, high, low] => {
            is_public_v4(v4(high, low))
        }
        // The rest of 64:ff9b::/32 is unassigned: nothing tells where it leads.
        [0x64, 0xff9b, ..] => false,
        [first, second, ..] => {
            !(ip.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site local fec0::/10 (deprecated, still local)
                || first == 0x2001 && second == 0x0db8) // documentation
        }
    }
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
            "::ffff:0:127.0.0.1",
            "::ffff:0:10.0.0.1",
            "fec0::1",
            "100::1",
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
            "::ffff:0:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} should be allowed");
        }
    }

    fn refused(ips: &[&str]) {
        for ip in ips {
            assert!(!is_public(ip.parse().unwrap()), "{ip} should be refused");
        }
    }

    fn allowed(ips: &[&str]) {
        for ip in ips {
            assert!(is_public(ip.parse().unwrap()), "{ip} should be allowed");
        }
    }

    #[test]
    fn ipv4_compatible_addresses_are_judged_by_their_ipv4() {
        refused(&[
            "::127.0.0.1",
            "::7f00:1",
            "::10.0.0.1",
            "::169.254.169.254",
            "::0.0.0.2",
        ]);
        allowed(&["::8.8.8.8", "::93.184.216.34"]);
    }

    #[test]
    fn six_to_four_addresses_are_judged_by_their_ipv4() {
        // 2002:AABB:CCDD::/48 tunnels to AA.BB.CC.DD.
        refused(&[
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101:5::9",
        ]);
        allowed(&["2002:808:808::", "2002:5db8:d822:1::1"]);
    }

    #[test]
    fn teredo_addresses_are_judged_by_both_their_ipv4s() {
        // 2001:0:SSSS:SSSS:flags:port:CCCC:CCCC, the client's address inverted.
        let teredo = |server: [u8; 4], client: [u8; 4]| {
            let s = u32::from_be_bytes(server);
            let c = !u32::from_be_bytes(client);
            Ipv6Addr::new(
                0x2001,
                0,
                (s >> 16) as u16,
                s as u16,
                0x8000,
                0xf227,
                (c >> 16) as u16,
                c as u16,
            )
        };
        let (public, other) = ([8, 8, 8, 8], [93, 184, 216, 34]);
        assert!(is_public(IpAddr::V6(teredo(public, other))));
        for private in [
            [127, 0, 0, 1],
            [10, 0, 0, 1],
            [169, 254, 169, 254],
            [192, 168, 1, 1],
        ] {
            assert!(
                !is_public(IpAddr::V6(teredo(private, public))),
                "server {private:?}"
            );
            assert!(
                !is_public(IpAddr::V6(teredo(public, private))),
                "client {private:?}"
            );
        }
        refused(&["2001:0:7f00:1::f7f7:f7f7", "2001:0:808:808::f5ff:fffe"]);
        allowed(&["2001:0:808:808::f7f7:f7f7"]);
    }

    #[test]
    fn nat64_addresses_are_judged_by_their_ipv4() {
        refused(&[
            "64:ff9b::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::10.0.0.1",
            "64:ff9b:1:abcd::127.0.0.1",
            // Outside the two assigned prefixes: nothing tells where it leads.
            "64:ff9b:2::8.8.8.8",
        ]);
        allowed(&[
            "64:ff9b::8.8.8.8",
            "64:ff9b:1::8.8.8.8",
            "64:ff9b:1:abcd::1.1.1.1",
        ]);
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
