//! Device push notifications (docs/push.md): Firebase Cloud Messaging HTTP v1 and a signed
//! webhook to the app's own backend. A notification carries only what `PushData` holds (an
//! approval id); the device fetches the details with a signed request.
//!
//! An outbox message for a device has channel `push`, `to` = `<provider>:<device token>`, and a
//! sealed body `{"title","body","data"}`.

use crate::webhook::{MESSAGE_ID_HEADER, SIGNATURE_HEADER, sign_webhook, with_causes};
use serde::Deserialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a push message's sealed body holds.
#[derive(Debug, Deserialize)]
pub struct Payload {
    /// Shown by the OS.
    pub title: String,
    /// Shown by the OS.
    pub body: String,
    /// For the app (`type`, `approval_id`).
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// The device token from an outbox `to` (`<provider>:<token>`).
pub fn device_token(to: &str) -> &str {
    to.split_once(':').map_or(to, |(_, t)| t)
}

/// The app's own backend, told with the same HMAC signature as the SMS webhook.
pub struct WebhookSender {
    pub url: String,
    pub secret: Vec<u8>,
    pub http: reqwest::Client,
}

impl WebhookSender {
    pub async fn send(&self, message_id: &str, to: &str, p: &Payload, now_unix: i64) -> Result<(), String> {
        let body =
            serde_json::json!({"device_token": device_token(to), "title": p.title, "body": p.body, "data": p.data});
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let resp = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, sign_webhook(&self.secret, now_unix, &body))
            .header(MESSAGE_ID_HEADER, message_id)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("push webhook: {}", with_causes(&e.without_url())))?;
        if resp.status().is_success() { Ok(()) } else { Err(format!("push webhook answered {}", resp.status())) }
    }
}

/// The fields of a Google service account key that FCM needs.
#[derive(Debug, Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    token_uri: String,
    project_id: String,
}

/// FCM HTTP v1: a service-account JWT (RS256) is exchanged for an OAuth access token, kept until
/// shortly before it expires, and sent with each `messages:send`.
pub struct FcmSender {
    account: ServiceAccount,
    key: jsonwebtoken::EncodingKey,
    base_url: String,
    http: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

/// The OAuth scope FCM sends need.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

impl FcmSender {
    /// From the service account's JSON key (a path or the JSON itself).
    pub fn new(service_account: &str, base_url: &str, http: reqwest::Client) -> anyhow::Result<Self> {
        let json = if service_account.trim_start().starts_with('{') {
            service_account.to_owned()
        } else {
            std::fs::read_to_string(service_account)
                .map_err(|e| anyhow::anyhow!("fcm_service_account: cannot read {service_account}: {e}"))?
        };
        let account: ServiceAccount =
            serde_json::from_str(&json).map_err(|e| anyhow::anyhow!("fcm_service_account: {e}"))?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| anyhow::anyhow!("fcm_service_account: private_key: {e}"))?;
        Ok(Self { account, key, base_url: base_url.trim_end_matches('/').to_owned(), http, token: Mutex::new(None) })
    }

    pub async fn send(&self, to: &str, p: &Payload, now_unix: i64) -> Result<(), String> {
        let access = self.access_token(now_unix).await?;
        let url = format!("{}/v1/projects/{}/messages:send", self.base_url, self.account.project_id);
        let message = serde_json::json!({"message": {
            "token": device_token(to),
            "notification": {"title": p.title, "body": p.body},
            "data": p.data,
            "android": {"priority": "HIGH"},
        }});
        let resp = self
            .http
            .post(url)
            .bearer_auth(access)
            .json(&message)
            .send()
            .await
            .map_err(|e| format!("fcm: {}", with_causes(&e.without_url())))?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            // A revoked or expired token: fetch a new one on the retry.
            if let Ok(mut t) = self.token.lock() {
                *t = None;
            }
        }
        if resp.status().is_success() { Ok(()) } else { Err(format!("fcm answered {}", resp.status())) }
    }

    async fn access_token(&self, now_unix: i64) -> Result<String, String> {
        if let Ok(t) = self.token.lock()
            && let Some((token, until)) = t.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let claims = serde_json::json!({
            "iss": self.account.client_email,
            "scope": FCM_SCOPE,
            "aud": self.account.token_uri,
            "iat": now_unix,
            "exp": now_unix + 3600,
        });
        let assertion =
            jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &self.key)
                .map_err(|e| format!("fcm: cannot sign the service-account JWT: {e}"))?;
        let form = format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}");
        let resp = self
            .http
            .post(&self.account.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| format!("fcm token: {}", with_causes(&e.without_url())))?;
        if !resp.status().is_success() {
            return Err(format!("fcm token endpoint answered {}", resp.status()));
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: String,
            expires_in: u64,
        }
        let t: TokenResponse = resp.json().await.map_err(|e| format!("fcm token: {e}"))?;
        // Renewed a minute early, so a token never expires in flight.
        let until = Instant::now() + Duration::from_secs(t.expires_in.saturating_sub(60));
        if let Ok(mut slot) = self.token.lock() {
            *slot = Some((t.access_token.clone(), until));
        }
        Ok(t.access_token)
    }
}

/// APNs with token-based authentication: an ES256 provider token (`kid` the key id, `iss` the
/// team id) reused for 50 minutes (Apple accepts one up to an hour old and refuses refreshing more
/// often than every 20 minutes), over HTTP/2.
pub struct ApnsSender {
    key: jsonwebtoken::EncodingKey,
    key_id: String,
    team_id: String,
    topic: String,
    base_url: String,
    http: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

impl ApnsSender {
    /// From the `.p8` key (a path or the PEM itself) and the ids Apple's developer portal shows.
    pub fn new(
        key: &str,
        key_id: &str,
        team_id: &str,
        topic: &str,
        base_url: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let pem = if key.trim_start().starts_with("-----BEGIN") {
            key.to_owned()
        } else {
            std::fs::read_to_string(key).map_err(|e| anyhow::anyhow!("apns_key: cannot read {key}: {e}"))?
        };
        let key =
            jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| anyhow::anyhow!("apns_key: {e}"))?;
        let base_url = base_url.trim_end_matches('/').to_owned();
        // APNs speaks only HTTP/2: negotiated by TLS ALPN, or assumed for a plain-HTTP test receiver.
        let builder = reqwest::Client::builder().timeout(timeout);
        let http = if base_url.starts_with("http://") { builder.http2_prior_knowledge() } else { builder }.build()?;
        Ok(Self {
            key,
            key_id: key_id.into(),
            team_id: team_id.into(),
            topic: topic.into(),
            base_url,
            http,
            token: Mutex::new(None),
        })
    }

    pub async fn send(&self, to: &str, p: &Payload, now_unix: i64) -> Result<(), String> {
        let token = self.provider_token(now_unix)?;
        let mut body = serde_json::json!({"aps": {"alert": {"title": p.title, "body": p.body}, "sound": "default"}});
        for (k, v) in &p.data {
            body[k] = v.clone();
        }
        let resp = self
            .http
            .post(format!("{}/3/device/{}", self.base_url, device_token(to)))
            .header("authorization", format!("bearer {token}"))
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("apns: {}", with_causes(&e.without_url())))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let reason = resp.json::<serde_json::Value>().await.ok().and_then(|v| v["reason"].as_str().map(str::to_owned));
        if reason.as_deref() == Some("ExpiredProviderToken")
            && let Ok(mut t) = self.token.lock()
        {
            *t = None;
        }
        Err(format!("apns answered {status}: {}", reason.unwrap_or_default()))
    }

    fn provider_token(&self, now_unix: i64) -> Result<String, String> {
        if let Ok(t) = self.token.lock()
            && let Some((token, until)) = t.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = serde_json::json!({"iss": self.team_id, "iat": now_unix});
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| format!("apns: cannot sign the provider token: {e}"))?;
        if let Ok(mut slot) = self.token.lock() {
            *slot = Some((token.clone(), Instant::now() + Duration::from_secs(50 * 60)));
        }
        Ok(token)
    }
}
