//! Who receives event webhooks (issue 15, item 1): the event names, the endpoints (configured
//! and made through the admin API) and the rules for them. Fanning events out is
//! `crate::events`'.

use crate::crypto::Keys;
use crate::model::WebhookEndpoint;
use crate::secret::Random;
use crate::store::{Store, StoreError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Every event an endpoint may subscribe to (names relied on by app backends: a contract).
pub const EVENT_TYPES: [&str; 16] = [
    "user.created",
    "user.confirmed",
    "user.deleted",
    "sign_in.succeeded",
    "sign_in.failed",
    "step_up.succeeded",
    "device.enrolled",
    "device.revoked",
    "factor.added",
    "factor.removed",
    "password.changed",
    "recovery.started",
    "recovery.cancelled",
    "recovery.completed",
    "push.reported",
    "risk.decision",
];

/// The outbox channel of event messages.
pub const CHANNEL: &str = "event";
/// The prefix of an endpoint's outbox provider: `event:<endpoint id>`.
pub const PROVIDER_PREFIX: &str = "event:";
/// How long a replica trusts its list of endpoints before reading it again: an endpoint made on
/// another replica receives events from at most this long after its creation.
pub const REFRESH: Duration = Duration::from_secs(2);

/// The event an audit event (kind, outcome) is, if any.
pub fn event_type(kind: &str, outcome: &str) -> Option<&'static str> {
    Some(match (kind, outcome) {
        ("sign_up" | "admin_invite" | "user_migrated", "success") => "user.created",
        ("confirm_sign_up", "success") => "user.confirmed",
        ("account_deleted", _) => "user.deleted",
        ("sign_in", "success") => "sign_in.succeeded",
        ("sign_in", "failure" | "locked" | "denied") => "sign_in.failed",
        ("step_up", "success") => "step_up.succeeded",
        ("device_enrolled", "success") => "device.enrolled",
        ("device_revoked", "success") => "device.revoked",
        ("factor_added", "success") => "factor.added",
        ("factor_removed", "success") => "factor.removed",
        ("password_change" | "new_password", "success") => "password.changed",
        ("recovery", "code_sent") => "recovery.started",
        ("recovery", "cancelled") => "recovery.cancelled",
        ("recovery", "completed") => "recovery.completed",
        ("push_answer", "reported") => "push.reported",
        ("risk", _) => "risk.decision",
        _ => return None,
    })
}

/// An endpoint events are delivered to: from the configuration (`[[webhooks]]`) or made through
/// the admin API.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its id: the configuration's `id`, or `ep_…` for one made through the API.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The events it subscribes to.
    pub events: Vec<String>,
    /// The signing secret as Standard Webhooks writes it: `whsec_<base64 of the key>`.
    pub secret: String,
    /// Made through the admin API: when. `None` for a configured endpoint.
    pub created_at: Option<time::OffsetDateTime>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("id", &self.id).field("url", &self.url).field("events", &self.events).finish()
    }
}

impl Endpoint {
    /// Its outbox provider.
    pub fn provider(&self) -> String {
        format!("{PROVIDER_PREFIX}{}", self.id)
    }
}

/// Why an endpoint's URL, events or id are refused (for the configuration and the admin API).
pub fn endpoint_problem(url: &str, events: &[String]) -> Option<String> {
    if events.is_empty() {
        return Some("events: name at least one event".into());
    }
    if let Some(e) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
        return Some(format!("events: {e:?} is not an event; they are {}", EVENT_TYPES.join(", ")));
    }
    url_problem(url)
}

/// An endpoint (or a hook) must be `https://`, or `http://` to this machine (a local relay,
/// tests).
pub fn url_problem(url: &str) -> Option<String> {
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("url: at most 2048 characters, no spaces".into());
    }
    let rest = if let Some(r) = url.strip_prefix("https://") {
        r
    } else if let Some(r) = url.strip_prefix("http://") {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        if host.contains('@') {
            return Some("url: no user name or password in the URL".into());
        }
        let name = if host.starts_with('[') {
            host.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
        } else {
            host.split(':').next().unwrap_or("").to_owned()
        };
        if !["localhost", "127.0.0.1", "[::1]"].contains(&name.as_str()) {
            return Some("url: https:// (http:// only to localhost)".into());
        }
        r
    } else {
        return Some("url: https:// (http:// only to localhost)".into());
    };
    if rest.split(['/', '?', '#']).next().is_none_or(str::is_empty) {
        return Some("url: no host".into());
    }
    None
}

/// The endpoints, read from the store at most every [`REFRESH`] (and at once after a change on
/// this replica), with the configured ones.
pub struct Subscriptions {
    configured: Vec<Endpoint>,
    cached: RwLock<Option<(Instant, Arc<Vec<Endpoint>>)>>,
}

impl Subscriptions {
    /// With the configured endpoints.
    pub fn new(configured: Vec<Endpoint>) -> Self {
        Self { configured, cached: RwLock::new(None) }
    }

    /// Read the store again on the next use.
    pub fn invalidate(&self) {
        if let Ok(mut c) = self.cached.write() {
            *c = None;
        }
    }

    /// Every endpoint: the configured ones, then those made through the API, oldest first.
    pub async fn current(&self, store: &dyn Store, keys: &Keys) -> Result<Arc<Vec<Endpoint>>, StoreError> {
        if let Ok(c) = self.cached.read()
            && let Some((at, list)) = c.as_ref()
            && at.elapsed() < REFRESH
        {
            return Ok(list.clone());
        }
        let mut list = self.configured.clone();
        for e in store.webhook_endpoints().await? {
            let secret =
                keys.open(&e.id, &e.secret_sealed).ok().and_then(|s| String::from_utf8(s).ok()).ok_or_else(|| {
                    StoreError::Corrupt(format!("webhook endpoint {}: its secret does not open", e.id))
                })?;
            list.push(Endpoint { id: e.id, url: e.url, events: e.events, secret, created_at: Some(e.created_at) });
        }
        let list = Arc::new(list);
        if let Ok(mut c) = self.cached.write() {
            *c = Some((Instant::now(), list.clone()));
        }
        Ok(list)
    }
}

/// A new signing secret: 32 random bytes, as Standard Webhooks writes them.
pub fn new_secret(rng: &dyn Random) -> String {
    use base64::Engine as _;
    let key = crate::secret::random_bytes(rng, 32);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
}

/// A sealed endpoint as the store keeps it.
pub fn sealed(keys: &Keys, rng: &dyn Random, e: &Endpoint, now: time::OffsetDateTime) -> Option<WebhookEndpoint> {
    let secret_sealed = keys.seal(rng, &e.id, e.secret.as_bytes()).ok()?;
    Some(WebhookEndpoint {
        id: e.id.clone(),
        url: e.url.clone(),
        events: e.events.clone(),
        secret_sealed,
        created_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_is_reached_by_some_audit_event() {
        let pairs = [
            ("sign_up", "success"),
            ("confirm_sign_up", "success"),
            ("account_deleted", "success"),
            ("sign_in", "success"),
            ("sign_in", "failure"),
            ("step_up", "success"),
            ("device_enrolled", "success"),
            ("device_revoked", "success"),
            ("factor_added", "success"),
            ("factor_removed", "success"),
            ("password_change", "success"),
            ("recovery", "code_sent"),
            ("recovery", "cancelled"),
            ("recovery", "completed"),
            ("push_answer", "reported"),
            ("risk", "require_step_up"),
        ];
        let got: Vec<_> = pairs.iter().map(|(k, o)| event_type(k, o).unwrap()).collect();
        assert_eq!(got, EVENT_TYPES.to_vec());
        assert_eq!(event_type("sign_in", "needs_second_factor"), None);
        assert_eq!(event_type("refresh", "success"), None);
    }

    #[test]
    fn endpoint_urls_are_https_or_local_http() {
        let ev = vec!["user.created".to_owned()];
        assert_eq!(endpoint_problem("https://hooks.example.com/latchkey", &ev), None);
        assert_eq!(endpoint_problem("http://127.0.0.1:9000/x", &ev), None);
        assert_eq!(endpoint_problem("http://localhost/x", &ev), None);
        assert_eq!(endpoint_problem("http://[::1]:80/", &ev), None);
        assert!(endpoint_problem("http://hooks.example.com/", &ev).is_some());
        assert!(endpoint_problem("http://127.0.0.1.evil.example/", &ev).is_some());
        assert!(endpoint_problem("http://user@127.0.0.1/", &ev).is_some());
        assert!(endpoint_problem("ftp://x", &ev).is_some());
        assert!(endpoint_problem("https://", &ev).is_some());
        assert!(endpoint_problem("https://x", &[]).is_some());
        assert!(endpoint_problem("https://x", &["user.made".to_owned()]).is_some());
    }
}
