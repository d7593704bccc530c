//! `probe` and `probe_interval` of an `[[instances]]` entry: the nodes whose
//! server certificate is checked against the `international` file on disk
//! (see [`crate::probe`]). Pure, like the rest of validation.
//!
//! An address is `host:port`: a DNS name or an IPv4 address, or an IPv6
//! address in brackets (`[fd00::10]:8635`), and a port from 1 to 65535.
//! Only `international` is probed (no Rust TLS stack verifies SM2 chains),
//! so an instance with `probe` must write an `international` file.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use rustls_pki_types::ServerName;

use super::types::{Category, Output, Probe, ProbeAddr};
use super::{ConfigError, Dur, RawInstance, err};

/// The shortest `probe_interval`: probes stay cheap whatever is configured.
pub(super) const MIN_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// The most addresses one instance may list (a sharded cluster's nodes fit).
const MAX_ADDRESSES: usize = 64;

const EXAMPLE: &str =
    "such as \"192.168.0.10:8635\", \"node1.example:8635\" or \"[fd00::10]:8635\"";

/// Parses one `probe` address; the error says what is wrong with it.
pub fn parse_probe_addr(s: &str) -> Result<ProbeAddr, String> {
    let bad = |why: &str| format!("{s:?} is not host:port ({why}); write an address {EXAMPLE}");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("a '[' without its ']'"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| bad("no ':port' after the bracketed address"))?;
        inside
            .parse::<Ipv6Addr>()
            .map_err(|_| bad("what is in brackets is not an IPv6 address"))?;
        (inside, port)
    } else {
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no ':port'"))?;
        if host.contains(':') {
            return Err(bad("an IPv6 address goes in brackets"));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) || port.is_empty() || port.len() > 5 {
        return Err(bad("the port is not a number"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("the port is not from 1 to 65535"))?;
    let is_ip = host.parse::<Ipv4Addr>().is_ok() || host.parse::<Ipv6Addr>().is_ok();
    if !is_ip && ServerName::try_from(host).is_err() {
        return Err(bad("the host is neither an IP address nor a DNS name"));
    }
    Ok(ProbeAddr {
        host: host.to_string(),
        port,
    })
}

/// `probe` and `probe_interval` of the instance at `key`. `None` without
/// `probe`; `sync_interval` is `sync.probe_interval`.
pub(super) fn validate_probe(
    key: &str,
    raw: &RawInstance,
    outputs: &[Output],
    sync_interval: Duration,
) -> Result<Option<Probe>, ConfigError> {
    let Some(list) = &raw.probe else {
        if raw.probe_interval.is_some() {
            return Err(err(
                format!("{key}.probe_interval"),
                "only applies with probe, the addresses of the instance's nodes",
            ));
        }
        return Ok(None);
    };
    if list.is_empty() {
        return Err(err(
            format!("{key}.probe"),
            format!("an empty list probes nothing; remove the key, or list the nodes {EXAMPLE}"),
        ));
    }
    if list.len() > MAX_ADDRESSES {
        return Err(err(
            format!("{key}.probe"),
            format!("{} addresses; at most {MAX_ADDRESSES}", list.len()),
        ));
    }
    if !outputs
        .iter()
        .any(|o| o.category == Category::International && o.truststore.is_none())
    {
        return Err(err(
            format!("{key}.probe"),
            "probe checks the server's chain against the international file, and this instance writes none; set international (the national SM2 chain cannot be verified: no Rust TLS stack implements SM2)",
        ));
    }
    let mut seen = HashSet::new();
    let mut addresses = Vec::with_capacity(list.len());
    for (n, s) in list.iter().enumerate() {
        let k = format!("{key}.probe[{n}]");
        let addr = parse_probe_addr(s).map_err(|m| err(&k, m))?;
        if !seen.insert(addr.clone()) {
            return Err(err(k, format!("{addr} is listed twice")));
        }
        addresses.push(addr);
    }
    let interval = match raw.probe_interval {
        None => sync_interval,
        Some(Dur(d)) => check_interval(&format!("{key}.probe_interval"), d)?,
    };
    Ok(Some(Probe {
        addresses,
        interval,
    }))
}

/// A `probe_interval` of at least [`MIN_PROBE_INTERVAL`].
pub(super) fn check_interval(key: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d < MIN_PROBE_INTERVAL {
        return Err(err(
            key,
            format!(
                "{} is too short; probes run at most once a second per instance",
                humantime::format_duration(d)
            ),
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(host: &str, port: u16) -> ProbeAddr {
        ProbeAddr {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn addresses_parse_and_display_as_written() {
        for (text, want) in [
            ("192.168.0.10:8635", addr("192.168.0.10", 8635)),
            ("node-1.dds.example:8635", addr("node-1.dds.example", 8635)),
            ("localhost:1", addr("localhost", 1)),
            ("[fd00::10]:8635", addr("fd00::10", 8635)),
            ("[::1]:65535", addr("::1", 65535)),
        ] {
            let got = parse_probe_addr(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got, want);
            assert_eq!(got.to_string(), text);
        }
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (text, why) in [
            ("", "no ':port'"),
            ("192.168.0.10", "no ':port'"),
            (":8635", "no host"),
            ("host:", "not a number"),
            ("host:0", "1 to 65535"),
            ("host:65536", "1 to 65535"),
            ("host:+80", "not a number"),
            ("host:80 ", "not a number"),
            ("fd00::10:8635", "IPv6 address goes in brackets"),
            ("[fd00::10:8635", "without its ']'"),
            ("[fd00::10]8635", "no ':port'"),
            ("[not-v6]:8635", "not an IPv6 address"),
            ("bad host:8635", "neither an IP address nor a DNS name"),
            ("under_score!:8635", "neither an IP address nor a DNS name"),
            ("host:8635/x", "not a number"),
        ] {
            let e = parse_probe_addr(text).expect_err(text);
            assert!(e.contains(why), "{text:?}: {e}");
            assert!(e.contains("192.168.0.10:8635"), "an example is given: {e}");
        }
    }

    const BASE: &str = r#"
[cloud]
region = "cn-north-4"
project_id = "p1"
[auth]
method = "token"
token = "t"
[[instances]]
id = "i1"
international = "/tmp/x/a.crt"
"#;

    fn check(text: &str) -> Result<crate::config::Config, ConfigError> {
        crate::config::validate(crate::config::parse(text)?, std::path::Path::new("/base"))
    }

    fn key_of(text: &str) -> (Option<String>, String) {
        let e = check(text).expect_err("refused");
        (e.key, e.message)
    }

    #[test]
    fn probe_is_off_by_default_and_takes_sync_probe_interval() {
        let c = check(BASE).expect("valid");
        assert_eq!(c.sync.probe_interval, Duration::from_secs(300));
        assert_eq!(c.instances[0].probe, None);

        let c = check(&format!(
            "{BASE}probe = [\"10.0.0.1:8635\", \"[fd00::1]:8635\"]\n"
        ))
        .expect("valid");
        let p = c.instances[0].probe.clone().expect("probe");
        assert_eq!(p.interval, Duration::from_secs(300));
        assert_eq!(
            p.addresses,
            vec![addr("10.0.0.1", 8635), addr("fd00::1", 8635)]
        );

        let text = BASE.replace(
            "[[instances]]",
            "[sync]\nprobe_interval = \"1m\"\n[[instances]]",
        );
        let c = check(&format!("{text}probe = [\"h:1\"]\n")).expect("valid");
        assert_eq!(
            c.instances[0].probe.clone().expect("probe").interval,
            Duration::from_secs(60)
        );
        let c = check(&format!(
            "{text}probe = [\"h:1\"]\nprobe_interval = \"10s\"\n"
        ))
        .expect("valid");
        assert_eq!(
            c.instances[0].probe.clone().expect("probe").interval,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn bad_probe_settings_name_their_key() {
        for (extra, key, says) in [
            (
                "probe = [\"10.0.0.1\"]",
                "instances[0].probe[0]",
                "no ':port'",
            ),
            (
                "probe = [\"h:1\", \"h:99999\"]",
                "instances[0].probe[1]",
                "65535",
            ),
            (
                "probe = [\"h:1\", \"h:1\"]",
                "instances[0].probe[1]",
                "listed twice",
            ),
            ("probe = []", "instances[0].probe", "empty list"),
            (
                "probe_interval = \"1m\"",
                "instances[0].probe_interval",
                "only applies with probe",
            ),
            (
                "probe = [\"h:1\"]\nprobe_interval = \"10ms\"",
                "instances[0].probe_interval",
                "too short",
            ),
            (
                "probe = [\"h:1\"]\nprobe_interval = \"soon\"",
                "instances[0].probe_interval",
                "invalid duration",
            ),
            ("probe = \"h:1\"", "instances[0].probe", "sequence"),
        ] {
            let (k, m) = key_of(&format!("{BASE}{extra}\n"));
            assert_eq!(k.as_deref(), Some(key), "{extra}: {m}");
            assert!(m.contains(says), "{extra}: {m}");
        }
        let text = BASE.replace(
            "[[instances]]",
            "[sync]\nprobe_interval = \"0s\"\n[[instances]]",
        );
        assert_eq!(key_of(&text).0.as_deref(), Some("sync.probe_interval"));
        let many: Vec<String> = (1..=65).map(|p| format!("\"h:{p}\"")).collect();
        let (k, m) = key_of(&format!("{BASE}probe = [{}]\n", many.join(",")));
        assert_eq!(k.as_deref(), Some("instances[0].probe"), "{m}");
    }

    #[test]
    fn probe_needs_an_international_file() {
        let text = BASE.replace("international = ", "national = ");
        let (k, m) = key_of(&format!("{text}probe = [\"h:1\"]\n"));
        assert_eq!(k.as_deref(), Some("instances[0].probe"));
        assert!(m.contains("SM2") && m.contains("international"), "{m}");
        // A truststore of the international certificates is not a PEM file.
        let text = BASE.replace("international = ", "truststore = ");
        let (k, _) = key_of(&format!("{text}probe = [\"h:1\"]\n"));
        assert_eq!(k.as_deref(), Some("instances[0].probe"));
    }

    #[test]
    fn intervals_under_a_second_are_refused() {
        assert!(check_interval("k", Duration::from_millis(999)).is_err());
        assert_eq!(
            check_interval("k", Duration::from_secs(1)).ok(),
            Some(Duration::from_secs(1))
        );
    }
}
