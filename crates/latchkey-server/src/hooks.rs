//! Calling the app's backend during a request (`[hooks.<name>]`; issue 15, item 2): one POST of
//! JSON, signed as the event webhooks are (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
//! `webhook-signature`), no redirects, answered within the hook's deadline with a JSON object.
//! What is sent and how the answer is read is the domain's (`latchkey_core::hooks`).

use latchkey_core::clock::Clock;
use latchkey_core::hooks::{CHALLENGE_AMR, Hook, HookPolicy, Hooks};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use standardwebhooks::{HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, Webhook};
use std::sync::Arc;

/// `[hooks]`: each hook is off unless configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// Asked before a sign-up creates an account.
    pub before_sign_up: Option<HookConfig>,
    /// Asked for claims before every access token is signed.
    pub custom_access_token: Option<HookConfig>,
    /// Creates and verifies the `custom_challenge` second-factor step.
    pub custom_challenge: Option<HookConfig>,
    /// Asked about usernames Latchkey does not know, at sign-in and recovery.
    pub user_migration: Option<HookConfig>,
}

/// What to do when a hook cannot be asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Refuse the request (`503 unavailable`; a sign-in looks like a wrong password).
    #[default]
    Refuse,
    /// Go on as if the hook allowed and added nothing (`before_sign_up`, `custom_access_token`).
    Continue,
}

/// One hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Where it is POSTed: `https://`, or `http://` to localhost.
    pub url: String,
    /// The Standard Webhooks signing secret, `whsec_<base64>`.
    pub secret: String,
    /// The deadline of one call, the whole conversation (default 3000 ms; 100 to 10,000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// `refuse` (default) or `continue`.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// `custom_challenge` only: the RFC 8176 `amr` a right answer adds, which is its factor
    /// class: `otp`, `sms`, `tel` or `swk` (possession; default `otp`), `kba` (knowledge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<String>,
}

fn default_timeout_ms() -> u64 {
    3000
}

/// Whether `secret` is `whsec_` and the base64 of at least 24 bytes.
pub fn signing_secret_ok(secret: &str) -> bool {
    use base64::Engine as _;
    let key = secret.strip_prefix("whsec_").map(|k| base64::engine::general_purpose::STANDARD.decode(k));
    matches!(key, Some(Ok(k)) if k.len() >= 24)
}

impl HooksConfig {
    fn each(&self) -> [(Hook, Option<&HookConfig>); 4] {
        [
            (Hook::BeforeSignUp, self.before_sign_up.as_ref()),
            (Hook::CustomAccessToken, self.custom_access_token.as_ref()),
            (Hook::CustomChallenge, self.custom_challenge.as_ref()),
            (Hook::UserMigration, self.user_migration.as_ref()),
        ]
    }

    /// Why this configuration is refused, if it is.
    pub fn problem(&self) -> Option<String> {
        for (hook, c) in self.each() {
            let Some(c) = c else { continue };
            let name = hook.as_str();
            if let Some(p) = latchkey_core::subscriptions::url_problem(&c.url) {
                return Some(format!("hooks.{name}.{p}"));
            }
            if !signing_secret_ok(&c.secret) {
                return Some(format!(
                    "hooks.{name}.secret: whsec_ and the base64 of at least 24 random bytes (whsec_$(openssl rand -base64 32) is one)"
                ));
            }
            if !(100..=10_000).contains(&c.timeout_ms) {
                return Some(format!("hooks.{name}.timeout_ms: 100 to 10000"));
            }
            if c.on_failure == OnFailure::Continue && !matches!(hook, Hook::BeforeSignUp | Hook::CustomAccessToken) {
                return Some(format!(
                    "hooks.{name}.on_failure: only refuse (continue is for before_sign_up and custom_access_token)"
                ));
            }
            match (&c.amr, hook) {
                (None, _) => {}
                (Some(a), Hook::CustomChallenge) if CHALLENGE_AMR.iter().any(|(v, _)| v == a) => {}
                (Some(_), Hook::CustomChallenge) => {
                    let names: Vec<&str> = CHALLENGE_AMR.iter().map(|(v, _)| *v).collect();
                    return Some(format!("hooks.custom_challenge.amr: one of {}", names.join(", ")));
                }
                (Some(_), _) => return Some(format!("hooks.{name}.amr: only for custom_challenge")),
            }
        }
        None
    }

    /// Replace each secret with `<redacted>` in the configuration's JSON form.
    pub fn redact(v: &mut Value) {
        if let Some(hooks) = v.as_object_mut() {
            for h in hooks.values_mut() {
                if let Some(h) = h.as_object_mut() {
                    h.insert("secret".into(), Value::String("<redacted>".into()));
                }
            }
        }
    }
}

struct Target {
    url: String,
    signer: Webhook,
    http: reqwest::Client,
    policy: HookPolicy,
}

/// The hooks over HTTP.
pub struct HttpHooks {
    targets: Vec<(Hook, Target)>,
    clock: Arc<dyn Clock>,
}

/// The most of a hook's answer that is read.
const MAX_ANSWER: usize = 64 * 1024;

impl HttpHooks {
    /// The configured hooks (checked by [`HooksConfig::problem`] first).
    pub fn new(config: &HooksConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let mut targets = vec![];
        for (hook, c) in config.each() {
            let Some(c) = c else { continue };
            let http = reqwest::Client::builder()
                .timeout(std::time::Duration::from_millis(c.timeout_ms))
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("Latchkey-Hooks/", env!("CARGO_PKG_VERSION")))
                .build()?;
            let signer = Webhook::new(&c.secret).map_err(|e| anyhow::anyhow!("hooks.{}.secret: {e}", hook.as_str()))?;
            let amr = c.amr.as_deref().unwrap_or("otp");
            let amr = CHALLENGE_AMR.iter().find(|(v, _)| *v == amr).map_or("otp", |(v, _)| v);
            let policy = HookPolicy { continue_on_failure: c.on_failure == OnFailure::Continue, amr };
            targets.push((hook, Target { url: c.url.clone(), signer, http, policy }));
        }
        Ok(Self { targets, clock })
    }

    fn target(&self, hook: Hook) -> Option<&Target> {
        self.targets.iter().find(|(h, _)| *h == hook).map(|(_, t)| t)
    }
}

#[async_trait::async_trait]
impl Hooks for HttpHooks {
    fn policy(&self, hook: Hook) -> Option<HookPolicy> {
        self.target(hook).map(|t| t.policy)
    }

    async fn call(&self, hook: Hook, body: Value) -> Result<Value, String> {
        let t = self.target(hook).ok_or("not configured")?;
        let id = format!("hook_{}", uuid::Uuid::now_v7().simple());
        let now = self.clock.now().unix_timestamp();
        let body = serde_json::to_string(&body).map_err(|e| e.to_string())?;
        let signature = t.signer.sign(&id, now, body.as_bytes()).map_err(|e| format!("cannot sign: {e}"))?;
        let started = std::time::Instant::now();
        let result = async {
            let mut resp = t
                .http
                .post(&t.url)
                .header("content-type", "application/json")
                .header(HEADER_WEBHOOK_ID, &id)
                .header(HEADER_WEBHOOK_TIMESTAMP, now.to_string())
                .header(HEADER_WEBHOOK_SIGNATURE, signature)
                .body(body)
                .send()
                .await
                .map_err(|e| crate::webhook::with_causes(&e.without_url()))?;
            if !resp.status().is_success() {
                return Err(format!("answered {}", resp.status()));
            }
            let mut bytes = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| crate::webhook::with_causes(&e.without_url()))? {
                if bytes.len() + chunk.len() > MAX_ANSWER {
                    return Err(format!("the answer is over {MAX_ANSWER} bytes"));
                }
                bytes.extend_from_slice(&chunk);
            }
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) if v.is_object() => Ok(v),
                _ => Err("the answer is not a JSON object".to_owned()),
            }
        }
        .await;
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        metrics::histogram!("latchkey_hook_seconds", "hook" => hook.as_str(), "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            tracing::warn!(hook = hook.as_str(), error = %e, "hook call failed");
        }
        result
    }
}
