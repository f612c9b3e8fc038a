//! The one configuration: defaults, then a TOML file, then `LATCHKEY_*` variables (nested keys
//! with `__`, e.g. `LATCHKEY_POLICY__TOKENS__ACCESS_TTL_SECS`), then `LATCHKEY_<KEY>_FILE` to read
//! a value (a secret) from a file, then command-line flags. Parsed once into [`Config`].

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use latchkey_core::factors::password::HashParams;
use latchkey_core::settings::Settings;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything `latchkey serve` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address to listen on (default `127.0.0.1:8080`).
    pub listen: String,
    /// Where the SQLite database and the key files live (default `./latchkey-data`).
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: `sqlite://<data_dir>/latchkey.db`.
    pub database_url: Option<String>,
    /// The externally visible base URL; the token issuer. Default `http://<listen>`.
    pub public_url: Option<String>,
    /// Bearer token for `/admin/v1/…`; the admin API is off without it.
    pub admin_token: Option<String>,
    /// The app's backends that may introspect tokens (`POST /v1/introspect`) and revoke them as
    /// a backend: `[[backends]] client_id = "orders", client_secret = "…"` (at least 32
    /// characters).
    pub backends: Vec<BackendClient>,
    /// Event webhook endpoints besides those made through the admin API: `[[webhooks]] id =
    /// "billing", url = "https://…", events = ["user.created"], secret = "whsec_…"`.
    pub webhooks: Vec<WebhookConfig>,
    /// The app's backend asked during requests: `[hooks.before_sign_up]`,
    /// `[hooks.custom_access_token]`, `[hooks.custom_challenge]`, `[hooks.user_migration]`, each
    /// with `url`, `secret` (`whsec_…`), `timeout_ms` and `on_failure`.
    pub hooks: crate::hooks::HooksConfig,
    /// Serve HTTPS with this PEM certificate chain (with `tls_key`); reloaded when it changes.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key.
    pub tls_key: Option<PathBuf>,
    /// How often the TLS files are looked at for a change (default 10 s).
    pub tls_reload_secs: u64,
    /// Serve `/metrics` (and the health checks) on this address instead of `listen`.
    pub metrics_listen: Option<String>,
    /// Serve `/admin/v1/…` (and the health checks) on this address instead of `listen`.
    pub admin_listen: Option<String>,
    /// Trust the left-most `X-Forwarded-For` address (only behind a proxy that sets it).
    pub trust_forwarded_for: bool,
    /// `json` (default) or `pretty`.
    pub log_format: String,
    /// A `tracing` filter, e.g. `info` or `latchkey=debug` (default `info`).
    pub log_level: String,
    /// SMTP server as a lettre URL (`smtps://user:pass@host`, `smtp://host:25`).
    pub smtp_url: Option<String>,
    /// Sender of email.
    pub email_from: String,
    /// SMS provider webhook: receives `{"to","body"}` with an HMAC signature header.
    pub sms_webhook_url: Option<String>,
    /// The HMAC key for `X-Latchkey-Signature`.
    pub sms_webhook_secret: Option<String>,
    /// SMS through Twilio's Messages API instead (`[twilio]`: `account_sid`, `auth_token`,
    /// `from` or `messaging_service_sid`).
    pub twilio: Option<crate::twilio::TwilioConfig>,
    /// Device notifications through the app's own backend: receives
    /// `{"device_token","title","body","data"}` signed like the SMS webhook.
    pub push_webhook_url: Option<String>,
    /// The HMAC key for the push webhook's `X-Latchkey-Signature`.
    pub push_webhook_secret: Option<String>,
    /// Firebase Cloud Messaging (HTTP v1): the service account's JSON key, as a path or the JSON
    /// itself (`client_email`, `private_key`, `token_uri`, `project_id`).
    pub fcm_service_account: Option<String>,
    /// The FCM API's base URL (tests point it at a local receiver).
    pub fcm_base_url: String,
    /// APNs token authentication: the `.p8` signing key, as a path or the PEM itself.
    pub apns_key: Option<String>,
    /// Its key id (10 characters, from Apple's developer portal).
    pub apns_key_id: Option<String>,
    /// The team id.
    pub apns_team_id: Option<String>,
    /// The app's bundle id (`apns-topic`).
    pub apns_topic: Option<String>,
    /// `https://api.push.apple.com` (default) or `https://api.sandbox.push.apple.com`.
    pub apns_base_url: String,
    /// In development (no provider for a channel), also log message bodies (codes). Off in tests.
    pub dev_log_message_bodies: bool,
    /// Outbox worker.
    pub outbox: OutboxConfig,
    /// Connection and request bounds.
    pub http: HttpConfig,
    /// Argon2id parameters.
    pub argon2: HashParams,
    /// Password hashes computed at once (each holds `argon2.m_kib` of memory); default: CPUs.
    pub hash_concurrency: Option<usize>,
    /// Database pool size.
    pub database_max_connections: Option<u32>,
    /// Policy: tokens, flows, sign-up, limits.
    pub policy: Settings,
}

/// What a client may hold (`[http]`; issue 11, item 4): slow or idle clients cannot hold the
/// server's connections, and a hung request ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Request headers must arrive within this; an idle keep-alive connection is closed after
    /// it too (default 10 s).
    pub header_read_timeout_secs: u64,
    /// A request body must keep arriving: at most this between its chunks (default 10 s).
    pub body_timeout_secs: u64,
    /// A request is answered `408` if it has not been within this (default 60 s; above the 30 s
    /// a `GET /v1/flows/{id}?wait=` may hold).
    pub request_timeout_secs: u64,
    /// Connections open at once; more are closed at once (default 512: keep it below the
    /// process's open-file limit, less the database pool and providers).
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { header_read_timeout_secs: 10, body_timeout_secs: 10, request_timeout_secs: 60, max_connections: 512 }
    }
}

/// The outbox worker's timing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboxConfig {
    /// How often to look for due messages when not woken (default 1000 ms).
    pub poll_interval_ms: u64,
    /// Delivery attempts before a message is marked dead (default 10).
    pub max_attempts: u32,
    /// First retry delay, doubled per attempt (default 5 s).
    pub backoff_base_secs: u64,
    /// Longest retry delay (default 3600 s).
    pub backoff_max_secs: u64,
    /// A claimed message is held this long and renewed while its send is in flight; a message
    /// claimed by a worker that died is sent again by another after it (default 10 s).
    pub lease_secs: u64,
    /// The deadline of one delivery, the whole conversation with the provider (default 15 s).
    pub send_timeout_secs: u64,
    /// Messages sent at once per provider, per replica (default 8).
    pub concurrency: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1000,
            max_attempts: 10,
            backoff_base_secs: 5,
            backoff_max_secs: 3600,
            lease_secs: 10,
            send_timeout_secs: 15,
            concurrency: 8,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./latchkey-data"),
            database_url: None,
            public_url: None,
            admin_token: None,
            backends: vec![],
            webhooks: vec![],
            hooks: crate::hooks::HooksConfig::default(),
            tls_cert: None,
            tls_key: None,
            tls_reload_secs: 10,
            metrics_listen: None,
            admin_listen: None,
            trust_forwarded_for: false,
            log_format: "json".into(),
            log_level: "info".into(),
            smtp_url: None,
            email_from: "Latchkey <no-reply@localhost>".into(),
            sms_webhook_url: None,
            sms_webhook_secret: None,
            twilio: None,
            push_webhook_url: None,
            push_webhook_secret: None,
            fcm_service_account: None,
            fcm_base_url: "https://fcm.googleapis.com".into(),
            apns_key: None,
            apns_key_id: None,
            apns_team_id: None,
            apns_topic: None,
            apns_base_url: "https://api.push.apple.com".into(),
            dev_log_message_bodies: true,
            outbox: OutboxConfig::default(),
            http: HttpConfig::default(),
            argon2: HashParams::default(),
            hash_concurrency: None,
            database_max_connections: None,
            policy: Settings::default(),
        }
    }
}

/// Command-line values that override everything else.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--database-url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// `--tls-cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

/// A loaded configuration and the warnings met loading it.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Unknown keys and the like.
    pub warnings: Vec<String>,
}

/// Keys whose values are secrets: redacted when printed.
const SECRET_KEYS: &[&str] = &[
    "admin_token",
    "smtp_url",
    "sms_webhook_secret",
    "push_webhook_secret",
    "fcm_service_account",
    "apns_key",
    "database_url",
];

impl Config {
    /// Load from the layers described in the module docs.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Loaded> {
        Self::load_from(file, overrides, std::env::vars())
    }

    /// As [`Config::load`], with the environment given (for tests).
    pub fn load_from(
        file: Option<&Path>,
        overrides: &Overrides,
        env: impl Iterator<Item = (String, String)>,
    ) -> anyhow::Result<Loaded> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                anyhow::bail!("configuration file {} does not exist", f.display());
            }
            figment = figment.merge(Toml::file(f));
        }
        // `LATCHKEY_TEST_*` belongs to the test suite (the PostgreSQL URL), not to the server.
        for (k, v) in env.filter(|(k, _)| k.starts_with("LATCHKEY_") && !k.starts_with("LATCHKEY_TEST_")) {
            let name = k.trim_start_matches("LATCHKEY_");
            let (name, from_file) = match name.strip_suffix("_FILE") {
                Some(n) => (n, true),
                None => (name, false),
            };
            let key = name.to_lowercase().replace("__", ".");
            figment = if from_file {
                let value = std::fs::read_to_string(&v).map_err(|e| anyhow::anyhow!("{k}: cannot read {v}: {e}"))?;
                figment.merge(Serialized::global(&key, value.trim_end_matches(['\r', '\n']).to_owned()))
            } else {
                // Parsed as figment's own `Env` provider does: `3` is a number, `true` a boolean.
                let value: figment::value::Value = v.parse().unwrap_or_else(|_| v.clone().into());
                figment.merge(Serialized::global(&key, value))
            };
        }
        figment = figment.merge(Serialized::globals(overrides));

        let mut warnings = vec![];
        let raw: serde_json::Value = figment.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        let known = serde_json::to_value(Config::default())?;
        unknown_keys("", &raw, &known, &mut warnings);
        let mut config: Config = figment.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        // Entries that are not PEM text are paths to PEM files.
        for entry in &mut config.policy.devices.android_attestation_roots {
            if !entry.trim_start().starts_with("-----BEGIN") {
                *entry = std::fs::read_to_string(&*entry).map_err(|e| {
                    anyhow::anyhow!("policy.devices.android_attestation_roots: cannot read {entry}: {e}")
                })?;
            }
        }
        config.validate()?;
        Ok(Loaded { config, warnings })
    }

    /// Reject values that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| anyhow::anyhow!("listen: `{}` is not an address like 127.0.0.1:8080", self.listen))?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            anyhow::bail!("tls_cert and tls_key go together (--tls-cert and --tls-key)");
        }
        for (key, addr) in [("metrics_listen", &self.metrics_listen), ("admin_listen", &self.admin_listen)] {
            if let Some(a) = addr {
                a.parse::<std::net::SocketAddr>()
                    .map_err(|_| anyhow::anyhow!("{key}: `{a}` is not an address like 127.0.0.1:9090"))?;
            }
        }
        let url = self.database_url();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            anyhow::bail!("database_url must start with sqlite: or postgres://");
        }
        if self.sms_webhook_url.is_some() && self.sms_webhook_secret.as_deref().is_none_or(str::is_empty) {
            anyhow::bail!("sms_webhook_url needs sms_webhook_secret (LATCHKEY_SMS_WEBHOOK_SECRET or …_FILE)");
        }
        if let Some(t) = &self.twilio {
            if let Some(problem) = t.problem() {
                anyhow::bail!("{problem}");
            }
            if self.sms_webhook_url.is_some() {
                anyhow::bail!("configure one SMS provider: twilio or sms_webhook_url");
            }
        }
        if self.push_webhook_url.is_some() && self.push_webhook_secret.as_deref().is_none_or(str::is_empty) {
            anyhow::bail!("push_webhook_url needs push_webhook_secret (LATCHKEY_PUSH_WEBHOOK_SECRET or …_FILE)");
        }
        if self.apns_key.is_some()
            && (self.apns_key_id.is_none() || self.apns_team_id.is_none() || self.apns_topic.is_none())
        {
            anyhow::bail!("apns_key needs apns_key_id, apns_team_id and apns_topic");
        }
        if let Some(t) = &self.admin_token
            && t.len() < 32
        {
            anyhow::bail!("admin_token must be at least 32 characters");
        }
        if !matches!(self.log_format.as_str(), "json" | "pretty") {
            anyhow::bail!("log_format must be json or pretty");
        }
        let o = &self.outbox;
        if o.lease_secs == 0 || o.send_timeout_secs == 0 || o.concurrency == 0 || o.concurrency > 1024 {
            anyhow::bail!("outbox: lease_secs and send_timeout_secs must be at least 1, concurrency 1 to 1024");
        }
        let p = &self.policy;
        if p.flows.code_ttl_secs > 600 {
            anyhow::bail!("policy.flows.code_ttl_secs: codes may live at most 600 s (NIST SP 800-63B-4 §3.1.3.2)");
        }
        if p.limits.password.hard_cap > 100 || p.limits.code.hard_cap > 100 {
            anyhow::bail!("policy.limits.*.hard_cap: at most 100 consecutive failures (NIST SP 800-63B-4 §3.2.2)");
        }
        if p.flows.max_attempts == 0 || p.flows.max_sends == 0 {
            anyhow::bail!("policy.flows.max_attempts and max_sends must be at least 1");
        }
        if p.mfa.methods.contains(&latchkey_core::MfaMethod::Unknown) {
            anyhow::bail!("policy.mfa.methods: each must be one of totp, sms, email, recovery_code");
        }
        if p.push.approval_ttl_secs == 0 || p.push.approval_ttl_secs > 600 {
            anyhow::bail!("policy.push.approval_ttl_secs: 1 to 600 (checklist PUSH-3)");
        }
        if p.limits.sms_allowed_prefixes.iter().any(|x| {
            let digits = x.trim().strip_prefix('+').unwrap_or("");
            digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit())
        }) {
            anyhow::bail!("policy.limits.sms_allowed_prefixes: each must be `+` and 1 to 15 digits, like \"+44\"");
        }
        if p.push.report_lock_secs > 86_400 {
            anyhow::bail!("policy.push.report_lock_secs: at most a day (approvals are kept that long)");
        }
        latchkey_core::factors::attestation::root_keys(&p.devices.android_attestation_roots)
            .map_err(|e| anyhow::anyhow!("policy.devices.android_attestation_roots: {e}"))?;
        let r = &p.risk;
        for (name, list) in [("notify", &r.notify), ("forget_remembered_client", &r.forget_remembered_client)] {
            if let Some(bad) = list.iter().find(|s| !latchkey_core::settings::RISK_SIGNALS.contains(&s.as_str())) {
                anyhow::bail!(
                    "policy.risk.{name}: `{bad}` is not a signal (one of {})",
                    latchkey_core::settings::RISK_SIGNALS.join(", ")
                );
            }
        }
        if r.delay_secs > latchkey_core::settings::MAX_RISK_DELAY_SECS
            || r.failure_window_secs == 0
            || r.max_travel_kmh == 0
        {
            anyhow::bail!("policy.risk: delay_secs at most 10; failure_window_secs and max_travel_kmh at least 1");
        }
        let mut ids = std::collections::HashSet::new();
        for b in &self.backends {
            if b.client_id.trim().is_empty() || b.client_secret.len() < 32 || !ids.insert(b.client_id.as_str()) {
                anyhow::bail!("backends: each needs its own client_id and a client_secret of at least 32 characters");
            }
        }
        let mut ids = std::collections::HashSet::new();
        for w in &self.webhooks {
            let id_ok = !w.id.is_empty()
                && w.id.len() <= 40
                && !w.id.starts_with("ep_")
                && w.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
            if !id_ok || !ids.insert(w.id.as_str()) {
                anyhow::bail!(
                    "webhooks: each needs its own id of 1–40 characters a-z, 0-9, _ or -, not starting with ep_"
                );
            }
            if let Some(problem) = latchkey_core::events::endpoint_problem(&w.url, &w.events) {
                anyhow::bail!("webhooks.{}: {problem}", w.id);
            }
            if !crate::hooks::signing_secret_ok(&w.secret) {
                anyhow::bail!(
                    "webhooks.{}: secret must be whsec_ and the base64 of at least 24 random bytes (whsec_$(openssl rand -base64 32) is one)",
                    w.id
                );
            }
        }
        if let Some(problem) = self.hooks.problem() {
            anyhow::bail!("{problem}");
        }
        if let Some(problem) = self.policy.passkeys.problem() {
            anyhow::bail!("{problem}");
        }
        if let Some(problem) = self.policy.app_integrity.problem() {
            anyhow::bail!("{problem}");
        }
        if self.policy.devices.second_proofs.contains(&latchkey_core::MfaMethod::CustomChallenge) {
            anyhow::bail!("policy.devices.second_proofs: custom_challenge is no proof for a new device");
        }
        let custom = self.policy.mfa.methods.contains(&latchkey_core::MfaMethod::CustomChallenge);
        if custom != self.hooks.custom_challenge.is_some() {
            anyhow::bail!(
                "policy.mfa.methods lists custom_challenge if and only if [hooks.custom_challenge] is configured"
            );
        }
        let mut names = std::collections::HashSet::new();
        for a in &self.policy.attributes {
            if let Some(problem) = a.problem() {
                anyhow::bail!("policy.attributes: {problem}");
            }
            if !names.insert(a.name.as_str()) {
                anyhow::bail!("policy.attributes: {:?} is declared twice", a.name);
            }
        }
        if let Some(problem) = latchkey_core::messages::problem(&self.policy.messages) {
            anyhow::bail!("{problem}");
        }
        let default = &self.policy.default_locale;
        if !(2..=35).contains(&default.len()) || !default.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            anyhow::bail!("policy.default_locale: a language tag, like en or de");
        }
        if self.policy.admin.session_max_age_secs == 0 || self.policy.sign_up.invite_ttl_secs == 0 {
            anyhow::bail!("policy.admin.session_max_age_secs and policy.sign_up.invite_ttl_secs must be at least 1");
        }
        Ok(())
    }

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("latchkey.db").display()))
    }

    /// A warning when tokens and DPoP would be bound to a plain-HTTP URL that is not this
    /// machine's own (`public_url`, or `http://<listen>` without one): codes, passwords and
    /// tokens would cross the network in clear unless a proxy in front terminates TLS and
    /// `public_url` names its `https://` address.
    pub fn plain_http_warning(&self) -> Option<String> {
        let url = self.public_url.clone().unwrap_or_else(|| format!("{}://{}", self.scheme(), self.listen));
        let rest = url.strip_prefix("http://")?;
        let host = rest.split('/').next().unwrap_or_default();
        let host = host
            .rsplit_once(':')
            .map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host });
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost"
            || host.ends_with(".localhost")
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        (!loopback).then(|| {
            format!(
                "public_url is {url}: plain HTTP on an address other machines reach. Serve TLS (--tls-cert, --tls-key) \
                 or put a TLS proxy in front and set public_url to its https:// address (docs/operations.md)"
            )
        })
    }

    /// `https` when TLS is configured, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() { "https" } else { "http" }
    }

    /// The issuer: `public_url`, else `http://<listen>`.
    pub fn issuer(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("{}://{}", self.scheme(), self.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The effective configuration as TOML, secrets replaced by `<redacted>`.
    pub fn redacted_toml(&self) -> anyhow::Result<String> {
        let mut v = serde_json::to_value(self)?;
        if let Some(backends) = v.get_mut("backends").and_then(|b| b.as_array_mut()) {
            for b in backends {
                b["client_secret"] = serde_json::Value::String("<redacted>".into());
            }
        }
        if let Some(t) = v.get_mut("twilio").and_then(|t| t.as_object_mut()) {
            t.insert("auth_token".into(), serde_json::Value::String("<redacted>".into()));
        }
        if let Some(hooks) = v.get_mut("hooks") {
            crate::hooks::HooksConfig::redact(hooks);
        }
        if let Some(play) = v.pointer_mut("/policy/app_integrity/play").and_then(|p| p.as_object_mut()) {
            play.insert("decryption_key".into(), serde_json::Value::String("<redacted>".into()));
        }
        if let Some(hooks) = v.get_mut("webhooks").and_then(|b| b.as_array_mut()) {
            for h in hooks {
                h["secret"] = serde_json::Value::String("<redacted>".into());
            }
        }
        if let Some(obj) = v.as_object_mut() {
            for k in SECRET_KEYS {
                if let Some(val) = obj.get_mut(*k)
                    && !val.is_null()
                {
                    *val = serde_json::Value::String("<redacted>".into());
                }
            }
            obj.retain(|_, v| !v.is_null());
        }
        let toml: toml_value::Table = serde_json::from_value(v)?;
        Ok(toml_value::to_string(&toml))
    }
}

/// One of the app's backends, for token introspection and revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendClient {
    /// Its id (HTTP Basic user name, or `client_id`).
    pub client_id: String,
    /// Its secret (HTTP Basic password, or `client_secret`).
    pub client_secret: String,
}

/// An event webhook endpoint in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Its id (a-z, 0-9, `_`, `-`): the `to` of its outbox messages.
    pub id: String,
    /// Where events are POSTed: `https://`, or `http://` to localhost.
    pub url: String,
    /// The events it receives.
    pub events: Vec<String>,
    /// The Standard Webhooks signing secret, `whsec_<base64>`.
    pub secret: String,
}

impl WebhookConfig {
    /// As the domain knows it.
    pub fn endpoint(&self) -> latchkey_core::events::Endpoint {
        latchkey_core::events::Endpoint {
            id: self.id.clone(),
            url: self.url.clone(),
            events: self.events.clone(),
            secret: self.secret.clone(),
            created_at: None,
        }
    }
}

fn unknown_keys(prefix: &str, raw: &serde_json::Value, known: &serde_json::Value, out: &mut Vec<String>) {
    let (Some(raw), Some(known)) = (raw.as_object(), known.as_object()) else {
        return;
    };
    for (k, v) in raw {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match known.get(k) {
            None => out.push(format!("unknown configuration key `{path}` (ignored)")),
            Some(kv) => unknown_keys(&path, v, kv, out),
        }
    }
}

/// A tiny TOML writer for `config check` (figment reads TOML but does not write it).
mod toml_value {
    use serde_json::Value;

    pub type Table = serde_json::Map<String, Value>;

    pub fn to_string(t: &Table) -> String {
        let mut out = String::new();
        write_table(&mut out, "", t);
        out
    }

    fn write_table(out: &mut String, path: &str, t: &Table) {
        let tables = |v: &Value| v.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_object));
        for (k, v) in t {
            if !v.is_object() && !v.is_null() && !tables(v) {
                out.push_str(&format!("{k} = {}\n", scalar(v)));
            }
        }
        let at = |k: &str| if path.is_empty() { k.to_owned() } else { format!("{path}.{k}") };
        for (k, v) in t {
            if let Value::Object(sub) = v {
                out.push_str(&format!("\n[{}]\n", at(k)));
                write_table(out, &at(k), sub);
            }
        }
        // Arrays of tables (`[[backends]]`, `[[policy.attributes]]`) last: a `[[…]]` header
        // would otherwise swallow the keys after it.
        for (k, v) in t {
            if tables(v) {
                for item in v.as_array().into_iter().flatten().filter_map(Value::as_object) {
                    out.push_str(&format!("\n[[{}]]\n", at(k)));
                    write_table(out, &at(k), item);
                }
            }
        }
    }

    fn scalar(v: &Value) -> String {
        match v {
            Value::Array(a) => format!("[{}]", a.iter().map(scalar).collect::<Vec<_>>().join(", ")),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn passkey_and_app_integrity_settings_are_checked_and_the_decryption_key_redacted() {
        let mut c = Config::default();
        c.policy.passkeys.rp_id = Some("example.com".into());
        c.policy.passkeys.origins = vec!["https://evil.com".into()];
        assert!(c.validate().unwrap_err().to_string().contains("evil.com"));
        c.policy.passkeys.origins = vec![];
        c.validate().unwrap();
        c.policy.app_integrity.require = vec![latchkey_core::factors::app_integrity::GatedAction::CodeSends];
        assert!(c.validate().unwrap_err().to_string().contains("needs a verifier"));
        let key = "b2JzY3VyZS1kZWNyeXB0aW9uLWtleS0zMi1ieXRlcyE=";
        c.policy.app_integrity.play = Some(latchkey_core::factors::app_integrity::PlayIntegrity {
            package_name: "com.example.app".into(),
            decryption_key: key.into(),
            verification_key: "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==".into(),
            require_device_integrity: true,
            require_app_recognized: true,
            require_licensed: false,
        });
        c.validate().unwrap();
        let shown = c.redacted_toml().unwrap();
        assert!(!shown.contains(key) && shown.contains("decryption_key = \"<redacted>\""), "{shown}");
    }

    #[test]
    fn layers_apply_in_order_and_unknown_keys_warn() {
        let dir = std::env::temp_dir().join(format!("lk-cfg-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("latchkey.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nemail_from = \"a@b.c\"\nbogus = 1\n[policy.tokens]\naccess_ttl_secs = 300\nnope = 2\n").unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "s3cret-from-file\n").unwrap();
        let loaded = Config::load_from(
            Some(&file),
            &Overrides { data_dir: Some("/tmp/x".into()), ..Default::default() },
            env(&[
                ("LATCHKEY_LISTEN", "127.0.0.1:9001"),
                ("LATCHKEY_POLICY__FLOWS__MAX_ATTEMPTS", "3"),
                ("LATCHKEY_SMS_WEBHOOK_URL", "http://127.0.0.1:1/sms"),
                ("LATCHKEY_SMS_WEBHOOK_SECRET_FILE", secret.to_str().unwrap()),
                ("OTHER", "x"),
                ("LATCHKEY_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1/test"),
            ]),
        )
        .unwrap();
        let c = loaded.config;
        assert_eq!(c.listen, "127.0.0.1:9001", "env beats file");
        assert_eq!(c.email_from, "a@b.c");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"), "flags beat everything");
        assert_eq!(c.policy.tokens.access_ttl_secs, 300);
        assert_eq!(c.policy.flows.max_attempts, 3);
        assert_eq!(c.sms_webhook_secret.as_deref(), Some("s3cret-from-file"));
        assert!(loaded.warnings.iter().any(|w| w.contains("`bogus`")), "{:?}", loaded.warnings);
        assert!(!loaded.warnings.iter().any(|w| w.contains("test_database_url")), "the test suite's variable");
        assert!(loaded.warnings.iter().any(|w| w.contains("`policy.tokens.nope`")), "{:?}", loaded.warnings);
        let shown = c.redacted_toml().unwrap();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("sms_webhook_secret = \"<redacted>\""), "{shown}");
        assert!(shown.contains("[policy.tokens]"), "{shown}");
    }

    #[test]
    fn the_recovery_policy_and_sms_limits_come_from_their_variables() {
        let c = Config::load_from(
            None,
            &Overrides::default(),
            env(&[
                ("LATCHKEY_POLICY__RECOVERY__DELAY_SECS", "60"),
                ("LATCHKEY_POLICY__RECOVERY__PHONE_CHANGE_COOLDOWN_SECS", "61"),
                ("LATCHKEY_POLICY__RECOVERY__EMAIL_CHANGE_COOLDOWN_SECS", "62"),
                ("LATCHKEY_POLICY__LIMITS__SMS_ALLOWED_PREFIXES", r#"["+1","+44"]"#),
            ]),
        )
        .unwrap()
        .config;
        let r = &c.policy.recovery;
        assert_eq!((r.delay_secs, r.phone_change_cooldown_secs, r.email_change_cooldown_secs), (60, 61, 62));
        assert_eq!(c.policy.limits.sms_allowed_prefixes, vec!["+1".to_string(), "+44".into()]);
        assert_eq!(Config::default().policy.recovery.delay_secs, 72 * 3600, "72 hours unless configured");
    }

    #[test]
    fn impossible_values_are_refused() {
        for (k, v) in [
            ("LATCHKEY_POLICY__LIMITS__SMS_ALLOWED_PREFIXES", r#"["44"]"#),
            ("LATCHKEY_LISTEN", "nowhere"),
            ("LATCHKEY_DATABASE_URL", "mysql://x"),
            ("LATCHKEY_SMS_WEBHOOK_URL", "http://x"),
            ("LATCHKEY_POLICY__FLOWS__CODE_TTL_SECS", "3600"),
        ] {
            assert!(Config::load_from(None, &Overrides::default(), env(&[(k, v)])).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn custom_attributes_are_declared_once_with_names_of_their_own() {
        let declare = |toml: &str| {
            let dir = std::env::temp_dir().join(format!("latchkey-attr-{}", uuid::Uuid::now_v7().simple()));
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join("latchkey.toml");
            std::fs::write(&file, toml).unwrap();
            Config::load_from(Some(&file), &Overrides::default(), env(&[]))
        };
        let ok = declare(
            "[[policy.attributes]]\nname = \"plan\"\ntype = \"string\"\nvalues = [\"free\", \"pro\"]\nwritable_by = \"admin\"\nclaim = true\n",
        );
        let mut config = ok.unwrap().config;
        let attrs = config.policy.attributes.clone();
        assert_eq!((attrs[0].name.as_str(), attrs[0].claim), ("plan", true));
        // `config check` prints arrays of tables as TOML that reads back.
        config.backends = vec![BackendClient { client_id: "orders".into(), client_secret: "s".repeat(40) }];
        let shown = config.redacted_toml().unwrap();
        assert!(shown.contains("[[backends]]") && shown.contains("[[policy.attributes]]"), "{shown}");
        let back: serde_json::Value =
            figment::Figment::from(figment::providers::Toml::string(&shown)).extract().unwrap();
        assert_eq!(back["backends"][0]["client_secret"], "<redacted>");
        assert_eq!(back["policy"]["attributes"][0]["values"], serde_json::json!(["free", "pro"]));
        for bad in [
            "[[policy.attributes]]\nname = \"sub\"\ntype = \"string\"\n",
            "[[policy.attributes]]\nname = \"Plan\"\ntype = \"string\"\n",
            "[[policy.attributes]]\nname = \"age\"\ntype = \"decimal\"\n",
            "[[policy.attributes]]\nname = \"a\"\ntype = \"boolean\"\n[[policy.attributes]]\nname = \"a\"\ntype = \"integer\"\n",
        ] {
            assert!(declare(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_http_is_warned_about_only_off_this_machine() {
        let with = |public: Option<&str>, listen: &str, tls: bool| Config {
            public_url: public.map(str::to_owned),
            listen: listen.into(),
            tls_cert: tls.then(|| "c.pem".into()),
            tls_key: tls.then(|| "k.pem".into()),
            ..Config::default()
        };
        for quiet in [
            with(None, "127.0.0.1:8080", false),
            with(None, "[::1]:8080", false),
            with(Some("http://localhost:8080"), "0.0.0.0:8080", false),
            with(Some("https://auth.example.com"), "0.0.0.0:8080", false),
            with(None, "0.0.0.0:8443", true),
        ] {
            assert_eq!(quiet.plain_http_warning(), None, "{:?} {}", quiet.public_url, quiet.listen);
        }
        for loud in [with(None, "0.0.0.0:8080", false), with(Some("http://auth.example.com"), "127.0.0.1:8080", false)]
        {
            let w = loud.plain_http_warning().unwrap();
            assert!(w.contains("plain HTTP") && w.contains("--tls-cert"), "{w}");
        }
        assert_eq!(with(None, "0.0.0.0:8443", true).issuer(), "https://0.0.0.0:8443");
    }

    #[test]
    fn defaults_need_no_configuration() {
        let c = Config::load_from(None, &Overrides::default(), env(&[])).unwrap().config;
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./latchkey-data"));
        assert!(c.database_url().starts_with("sqlite://./latchkey-data/latchkey.db"));
    }

    #[test]
    fn attestation_roots_are_pem_or_paths_read_at_load_and_checked() {
        let dir = std::env::temp_dir().join(format!("lk-cfg-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = latchkey_core::factors::attestation::testing::TestRoot::new();
        let pem_file = dir.join("roots.pem");
        std::fs::write(&pem_file, root.pem()).unwrap();
        let load = |roots: &str| {
            let file = dir.join("latchkey.toml");
            std::fs::write(&file, format!("[policy.devices]\nandroid_attestation_roots = {roots}\n")).unwrap();
            Config::load_from(Some(&file), &Overrides::default(), env(&[])).map(|l| l.config)
        };
        let c = load(&format!("[{:?}]", pem_file.to_str().unwrap())).unwrap();
        assert_eq!(c.policy.devices.android_attestation_roots, vec![root.pem()], "a path is read");
        let e = load("[\"/nonexistent/roots.pem\"]").unwrap_err().to_string();
        assert!(e.contains("android_attestation_roots: cannot read /nonexistent/roots.pem"), "{e}");
        let e = load("[\"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\"]").unwrap_err().to_string();
        assert!(e.contains("android_attestation_roots: entry 0"), "{e}");
    }
}
