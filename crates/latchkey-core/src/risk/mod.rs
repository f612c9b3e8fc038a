//! Risk-based decisions (`[policy.risk]`, docs/adaptive.md): the signals Latchkey computes
//! itself at a password sign-in, a device sign-in and a step-up, and the decision the policy
//! maps them to. This file is pure — what was observed in, signals and a decision out — so the
//! same inputs always give the same decision; `flow::risk` gathers the observation from the
//! store, the request and the operator's sources, and records what was decided.
//!
//! Invariants:
//! - No secret is an input: addresses, user agents (hashed), counts and times only.
//! - A decision is never weaker than its strongest signal's rule.

use crate::model::Sighting;
use crate::settings::{RiskAction, RiskPolicy};
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;
use time::OffsetDateTime;

/// Where an address is, as the operator's GeoIP database says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Place {
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    /// The city's English name.
    pub city: Option<String>,
    /// Degrees.
    pub latitude: Option<f64>,
    /// Degrees.
    pub longitude: Option<f64>,
}

impl Place {
    /// Latitude and longitude, when both are known.
    pub fn position(&self) -> Option<(f64, f64)> {
        self.latitude.zip(self.longitude)
    }
}

/// A GeoIP database (the server implements it over a MaxMind DB file).
pub trait Locator: Send + Sync {
    /// Where `ip` is, if the database knows.
    fn locate(&self, ip: IpAddr) -> Option<Place>;
}

/// What the operator supplies besides the policy: networks to distrust and a GeoIP database.
#[derive(Clone, Default)]
pub struct RiskSources {
    /// `ip_reputation_file`, parsed.
    pub distrusted: Arc<Vec<IpNet>>,
    /// `geoip_file`, opened.
    pub locator: Option<Arc<dyn Locator>>,
}

/// An address as the client context carries it; an IPv4-mapped IPv6 address is its IPv4.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    let ip: IpAddr = s.trim().parse().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// The network an address belongs to for "new network": its IPv4 /24 or IPv6 /48 (what one
/// household, office or mobile carrier's pool usually keeps).
pub fn network_of(ip: IpAddr) -> String {
    let prefix = if ip.is_ipv4() { 24 } else { 48 };
    IpNet::new(ip, prefix).map(|n| n.trunc().to_string()).unwrap_or_else(|_| ip.to_string())
}

/// Great-circle distance in km (haversine, mean Earth radius).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

/// GeoIP is city-level at best: places closer than this are never "impossible travel".
const MIN_TRAVEL_KM: f64 = 300.0;

fn to_e6(deg: f64) -> i64 {
    // Degrees fit in i64 millionths with room to spare; `as` saturates on NaN or ±∞.
    (deg * 1e6).round() as i64
}

fn from_e6(v: i64) -> f64 {
    v as f64 / 1e6
}

/// Millionths of a degree, for storing a place.
pub(crate) fn position_e6(place: &Place) -> Option<(i64, i64)> {
    place.position().map(|(lat, lon)| (to_e6(lat), to_e6(lon)))
}

/// What was observed of one sign-in or step-up: the inputs of [`signals`].
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    /// The client's address.
    pub ip: Option<IpAddr>,
    /// Where it is (GeoIP).
    pub place: Option<&'a Place>,
    /// The hash of its user agent.
    pub agent: Option<&'a str>,
    /// Now.
    pub now: OffsetDateTime,
    /// What the account signed in from before (empty for an unknown username).
    pub sightings: &'a [Sighting],
    /// Failed password sign-ins of the account in the window.
    pub account_failures: u64,
    /// Failed password sign-ins from the address in the window.
    pub source_failures: u64,
    /// A recovery, or a phone or email change, within the policy's time.
    pub recent_change: bool,
    /// A "this wasn't me" within the policy's time.
    pub recent_report: bool,
    /// The client proves itself another way (a remembered client named, an enrolled device's
    /// key): its user agent says nothing new.
    pub known_client: bool,
}

/// The signals an observation raises, in the order of `settings::RISK_SIGNALS`.
pub fn signals(o: &Observation<'_>, policy: &RiskPolicy, distrusted: &[IpNet]) -> Vec<&'static str> {
    let mut out = vec![];
    if o.ip.is_some_and(|ip| distrusted.iter().any(|n| n.contains(&ip))) {
        out.push("ip_reputation");
    }
    let networks: Vec<&Sighting> = o.sightings.iter().filter(|s| s.kind == "network").collect();
    let network = o.ip.map(network_of);
    if let Some(net) = &network
        && !networks.is_empty()
        && !networks.iter().any(|s| &s.value == net)
    {
        out.push("new_network");
    }
    let agents: Vec<&Sighting> = o.sightings.iter().filter(|s| s.kind == "agent").collect();
    if !o.known_client
        && let Some(agent) = o.agent
        && !agents.is_empty()
        && !agents.iter().any(|s| s.value == agent)
    {
        out.push("new_device");
    }
    let country = o.place.and_then(|p| p.country.as_deref());
    let known_countries: Vec<&str> = networks.iter().filter_map(|s| s.country.as_deref()).collect();
    if let Some(c) = country
        && !known_countries.is_empty()
        && !known_countries.contains(&c)
    {
        out.push("new_country");
    }
    // The last place this account signed in from, on another network.
    let last = networks
        .iter()
        .filter(|s| Some(&s.value) != network.as_ref())
        .filter_map(|s| s.position_e6.map(|p| (s, p)))
        .max_by_key(|(s, _)| s.last_seen_at);
    if let (Some(here), Some((then, (lat, lon)))) = (o.place.and_then(Place::position), last) {
        let km = distance_km(here, (from_e6(lat), from_e6(lon)));
        let hours = ((o.now - then.last_seen_at).as_seconds_f64() / 3600.0).max(1.0 / 3600.0);
        if km > MIN_TRAVEL_KM && km / hours > f64::from(policy.max_travel_kmh) {
            out.push("impossible_travel");
        }
    }
    if policy.account_failures > 0 && o.account_failures >= u64::from(policy.account_failures) {
        out.push("account_failures");
    }
    if policy.source_failures > 0 && o.source_failures >= u64::from(policy.source_failures) {
        out.push("source_failures");
    }
    if o.recent_change {
        out.push("recent_change");
    }
    if o.recent_report {
        out.push("recent_report");
    }
    out
}

/// What the policy decided, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The strongest rule among the signals (`Allow` when none).
    pub action: RiskAction,
    /// Some signal's rule is `delay`: the answer waits `delay_secs` (whatever else applies).
    pub delay: bool,
    /// Some signal is in `notify`.
    pub notify: bool,
    /// Some signal is in `forget_remembered_client`.
    pub forget_remembered_client: bool,
    /// The signals (the timeline shows these names).
    pub reasons: Vec<&'static str>,
}

impl Decision {
    /// Nothing raised.
    pub fn allow() -> Self {
        Self {
            action: RiskAction::Allow,
            delay: false,
            notify: false,
            forget_remembered_client: false,
            reasons: vec![],
        }
    }

    /// The decision's name in the audit log, the timeline and the metric.
    pub fn name(&self) -> &'static str {
        match self.action {
            RiskAction::Deny => "deny",
            RiskAction::RequirePhishingResistant => "require_phishing_resistant",
            RiskAction::RequireSecondFactor => "require_second_factor",
            RiskAction::Delay => "delay",
            RiskAction::Allow if self.delay => "delay",
            RiskAction::Allow => "allow",
        }
    }

    /// A second factor must be asked whatever else would skip it.
    pub fn second_factor(&self) -> bool {
        self.action >= RiskAction::RequireSecondFactor
    }
}

/// The policy's decision for `signals`.
pub fn decide(signals: &[&'static str], policy: &RiskPolicy) -> Decision {
    let listed = |list: &[String], s: &str| list.iter().any(|l| l == s);
    Decision {
        action: signals.iter().map(|s| policy.rules.action(s)).max().unwrap_or(RiskAction::Allow),
        delay: signals.iter().any(|s| policy.rules.action(s) == RiskAction::Delay),
        notify: signals.iter().any(|s| listed(&policy.notify, s)),
        forget_remembered_client: signals.iter().any(|s| listed(&policy.forget_remembered_client, s)),
        reasons: signals.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;
    use time::Duration;

    const T: OffsetDateTime = time::macros::datetime!(2026-12-03 12:00 UTC);

    fn seen(value: &str, country: Option<&str>, pos: Option<(f64, f64)>, ago: Duration) -> Sighting {
        Sighting {
            user_id: UserId(uuid::Uuid::nil()),
            kind: "network".into(),
            value: value.into(),
            country: country.map(str::to_owned),
            position_e6: pos.map(|(a, b)| (to_e6(a), to_e6(b))),
            first_seen_at: T - ago,
            last_seen_at: T - ago,
        }
    }

    fn observe<'a>(ip: &str, place: Option<&'a Place>, sightings: &'a [Sighting]) -> Observation<'a> {
        Observation {
            ip: parse_ip(ip),
            place,
            agent: None,
            now: T,
            sightings,
            account_failures: 0,
            source_failures: 0,
            recent_change: false,
            recent_report: false,
            known_client: false,
        }
    }

    #[test]
    fn networks_are_the_ipv4_24_and_the_ipv6_48_and_mapped_addresses_are_ipv4() {
        assert_eq!(network_of(parse_ip("198.51.100.77").unwrap()), "198.51.100.0/24");
        assert_eq!(network_of(parse_ip("2001:db8:1:2::9").unwrap()), "2001:db8:1::/48");
        assert_eq!(network_of(parse_ip("::ffff:198.51.100.7").unwrap()), "198.51.100.0/24");
    }

    #[test]
    fn berlin_to_sydney_is_about_16000_km() {
        let d = distance_km((52.52, 13.405), (-33.869, 151.209));
        assert!((15_900.0..16_200.0).contains(&d), "{d}");
    }

    #[test]
    fn the_first_sign_in_raises_nothing_and_a_second_network_is_new() {
        let policy = RiskPolicy::default();
        assert!(signals(&observe("198.51.100.1", None, &[]), &policy, &[]).is_empty());
        let known = [seen("198.51.100.0/24", None, None, Duration::days(1))];
        assert!(signals(&observe("198.51.100.200", None, &known), &policy, &[]).is_empty());
        assert_eq!(signals(&observe("192.0.2.1", None, &known), &policy, &[]), ["new_network"]);
    }

    #[test]
    fn a_flight_is_possible_and_a_jump_is_not() {
        let policy = RiskPolicy::default();
        let sydney =
            Place { country: Some("AU".into()), latitude: Some(-33.869), longitude: Some(151.209), ..Place::default() };
        let berlin_hour_ago = [seen("198.51.100.0/24", Some("DE"), Some((52.52, 13.405)), Duration::hours(1))];
        assert_eq!(
            signals(&observe("203.0.113.9", Some(&sydney), &berlin_hour_ago), &policy, &[]),
            ["new_network", "new_country", "impossible_travel"]
        );
        let berlin_day_ago = [seen("198.51.100.0/24", Some("DE"), Some((52.52, 13.405)), Duration::days(1))];
        assert_eq!(
            signals(&observe("203.0.113.9", Some(&sydney), &berlin_day_ago), &policy, &[]),
            ["new_network", "new_country"]
        );
    }

    #[test]
    fn the_strongest_rule_wins_and_a_delay_stays() {
        let policy = RiskPolicy::default();
        let d = decide(&["new_network", "source_failures", "new_country"], &policy);
        assert_eq!(
            (d.action, d.delay, d.notify, d.name()),
            (RiskAction::RequireSecondFactor, true, true, "require_second_factor")
        );
        assert_eq!(decide(&["source_failures"], &policy).name(), "delay");
        assert_eq!(decide(&[], &policy), Decision::allow());
        assert!(decide(&["ip_reputation"], &policy).forget_remembered_client);
    }
}
