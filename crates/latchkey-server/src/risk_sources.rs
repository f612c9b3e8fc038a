//! The risk policy's operator-supplied sources, read at start-up: the distrusted networks
//! (`policy.risk.ip_reputation_file`) and the GeoIP database (`policy.risk.geoip_file`, a
//! MaxMind DB such as the free GeoLite2-City or -Country file).

use ipnet::IpNet;
use latchkey_core::risk::{Locator, Place, RiskSources};
use latchkey_core::settings::RiskPolicy;
use serde::Deserialize;
use std::net::IpAddr;
use std::sync::Arc;

/// A MaxMind DB, held in memory.
struct MaxMind(maxminddb::Reader<Vec<u8>>);

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Country<'a>>,
    #[serde(borrow, default)]
    city: Option<City<'a>>,
    #[serde(default)]
    location: Option<Location>,
}

#[derive(Deserialize)]
struct Country<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct City<'a> {
    #[serde(borrow, default)]
    names: Option<std::collections::BTreeMap<&'a str, &'a str>>,
}

#[derive(Deserialize)]
struct Location {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

impl Locator for MaxMind {
    fn locate(&self, ip: IpAddr) -> Option<Place> {
        let found = self.0.lookup(ip).ok()?;
        let r: Record<'_> = found.decode().ok()??;
        let place = Place {
            country: r.country.and_then(|c| c.iso_code).map(str::to_owned),
            city: r.city.and_then(|c| c.names).and_then(|n| n.get("en").map(|s| (*s).to_owned())),
            latitude: r.location.as_ref().and_then(|l| l.latitude),
            longitude: r.location.as_ref().and_then(|l| l.longitude),
        };
        (place != Place::default()).then_some(place)
    }
}

/// Networks, one per line: a CIDR or a single address; blank lines and `#` comments skipped.
pub fn parse_networks(text: &str) -> Result<Vec<IpNet>, String> {
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        let net = entry
            .parse::<IpNet>()
            .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| format!("line {}: `{entry}` is not a CIDR network or an address", n + 1))?;
        out.push(net.trunc());
    }
    Ok(out)
}

/// Read the sources the policy names; a file that cannot be read or parsed stops the start.
pub fn load(policy: &RiskPolicy) -> anyhow::Result<RiskSources> {
    let distrusted = match &policy.ip_reputation_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("policy.risk.ip_reputation_file: cannot read {path}: {e}"))?;
            parse_networks(&text).map_err(|e| anyhow::anyhow!("policy.risk.ip_reputation_file {path}: {e}"))?
        }
        None => vec![],
    };
    let locator = match &policy.geoip_file {
        Some(path) => {
            let reader = maxminddb::Reader::open_readfile(path)
                .map_err(|e| anyhow::anyhow!("policy.risk.geoip_file: cannot open {path} as a MaxMind DB: {e}"))?;
            Some(Arc::new(MaxMind(reader)) as Arc<dyn Locator>)
        }
        None => None,
    };
    Ok(RiskSources { distrusted: Arc::new(distrusted), locator })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_with_comments_and_bare_addresses() {
        let nets = parse_networks("# bad\n203.0.113.0/24\n\n198.51.100.7  # one host\n2001:db8::/32\n").unwrap();
        let shown: Vec<String> = nets.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["203.0.113.0/24", "198.51.100.7/32", "2001:db8::/32"]);
        assert!(parse_networks("203.0.113.0/33").unwrap_err().contains("line 1"));
    }

    #[test]
    fn the_test_database_places_documentation_networks() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../latchkey-testkit/fixtures/geoip-test.mmdb");
        let policy = RiskPolicy { geoip_file: Some(path.into()), ..RiskPolicy::default() };
        let geo = load(&policy).unwrap().locator.unwrap();
        let sydney = geo.locate("203.0.113.50".parse().unwrap()).unwrap();
        assert_eq!((sydney.country.as_deref(), sydney.city.as_deref()), (Some("AU"), Some("Sydney")));
        assert!((sydney.latitude.unwrap() + 33.869).abs() < 1e-6);
        assert_eq!(geo.locate("2001:db8::1".parse().unwrap()).unwrap().country.as_deref(), Some("FR"));
        assert_eq!(geo.locate("10.0.0.1".parse().unwrap()), None);
    }
}
