//! Delivery of outbox messages: SMTP (lettre), an SMS webhook signed with HMAC-SHA-256, and the
//! development sink (the log and the `dev` outbox that `latchkey outbox` prints). A worker claims
//! due messages from the database, so any number of replicas can run one.

use crate::config::{Config, OutboxConfig};
use aws_lc_rs::hmac;
use latchkey_core::clock::Clock;
use latchkey_core::crypto::Keys;
use latchkey_core::model::OutboxMessage;
use latchkey_core::service::OutboxRoutes;
use latchkey_core::store::Store;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Provider names stored with each message.
pub const SMTP: &str = "smtp";
/// The SMS webhook.
pub const SMS_WEBHOOK: &str = "sms_webhook";
/// Development: log and keep.
pub const DEV: &str = "dev";

/// The routes for the configured providers: a channel without a provider goes to `dev`.
pub fn routes(config: &Config) -> OutboxRoutes {
    OutboxRoutes {
        email: if config.smtp_url.is_some() { SMTP } else { DEV }.into(),
        sms: if config.sms_webhook_url.is_some() { SMS_WEBHOOK } else { DEV }.into(),
        push: [
            ("fcm", config.fcm_service_account.is_some()),
            ("apns", config.apns_key.is_some()),
            ("webhook", config.push_webhook_url.is_some()),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(p, _)| p.to_owned())
        .collect(),
    }
}

/// The header carrying the SMS webhook's signature: `t=<unix seconds>,v1=<hex HMAC-SHA-256 of
/// "<t>.<body>" under the shared secret>`.
pub const SIGNATURE_HEADER: &str = "x-latchkey-signature";

/// Compute the webhook signature header value (also used by tests and receivers).
pub fn sign_webhook(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// Sends messages.
pub struct Senders {
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, lettre::message::Mailbox)>,
    sms: Option<(String, Vec<u8>, reqwest::Client)>,
    push_webhook: Option<crate::push::WebhookSender>,
    fcm: Option<crate::push::FcmSender>,
    apns: Option<crate::push::ApnsSender>,
    dev_log_bodies: bool,
}

impl Senders {
    /// Build the configured senders.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(config.outbox.send_timeout_secs);
        let smtp = match &config.smtp_url {
            Some(url) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| anyhow::anyhow!("smtp_url: {e}"))?
                    .timeout(Some(timeout))
                    .build();
                let from = config.email_from.parse().map_err(|e| anyhow::anyhow!("email_from: {e}"))?;
                Some((transport, from))
            }
            None => None,
        };
        let sms = match (&config.sms_webhook_url, &config.sms_webhook_secret) {
            (Some(url), Some(secret)) => {
                Some((url.clone(), secret.as_bytes().to_vec(), reqwest::Client::builder().timeout(timeout).build()?))
            }
            _ => None,
        };
        let http = || reqwest::Client::builder().timeout(timeout).build();
        let push_webhook = match (&config.push_webhook_url, &config.push_webhook_secret) {
            (Some(url), Some(secret)) => {
                Some(crate::push::WebhookSender { url: url.clone(), secret: secret.as_bytes().to_vec(), http: http()? })
            }
            _ => None,
        };
        let fcm = match &config.fcm_service_account {
            Some(sa) => Some(crate::push::FcmSender::new(sa, &config.fcm_base_url, http()?)?),
            None => None,
        };
        let apns = match (&config.apns_key, &config.apns_key_id, &config.apns_team_id, &config.apns_topic) {
            (Some(key), Some(key_id), Some(team), Some(topic)) => {
                Some(crate::push::ApnsSender::new(key, key_id, team, topic, &config.apns_base_url, timeout)?)
            }
            _ => None,
        };
        Ok(Self { smtp, sms, push_webhook, fcm, apns, dev_log_bodies: config.dev_log_message_bodies })
    }

    async fn send(&self, m: &OutboxMessage, body: &str, now_unix: i64) -> Result<(), String> {
        match m.provider.as_str() {
            DEV => {
                if self.dev_log_bodies {
                    tracing::info!(channel = %m.channel, to = %m.to, subject = %m.subject, body = %body, "development outbox: message not sent (no provider configured)");
                } else {
                    tracing::info!(channel = %m.channel, to = %m.to, subject = %m.subject, "development outbox: message not sent (no provider configured)");
                }
                Ok(())
            }
            SMTP => {
                let (transport, from) = self.smtp.as_ref().ok_or("smtp is not configured")?;
                let to = m.to.parse().map_err(|e| format!("bad recipient: {e}"))?;
                // The outbox message's id, the same on every attempt: a re-send after a crash
                // (delivery is at least once) is one message to the receiver (issue 11, item 3).
                let message_id = format!("<{}@{}>", m.id, from.email.domain());
                let email = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .message_id(Some(message_id))
                    .subject(m.subject.clone())
                    .header(lettre::message::header::ContentType::TEXT_PLAIN)
                    .body(body.to_owned())
                    .map_err(|e| format!("cannot build email: {e}"))?;
                transport.send(email).await.map(|_| ()).map_err(|e| format!("smtp: {e}"))
            }
            SMS_WEBHOOK => {
                let (url, secret, client) = self.sms.as_ref().ok_or("sms webhook is not configured")?;
                let payload =
                    serde_json::to_vec(&serde_json::json!({"to": m.to, "body": body})).map_err(|e| e.to_string())?;
                let resp = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header(SIGNATURE_HEADER, sign_webhook(secret, now_unix, &payload))
                    .header("x-latchkey-message-id", m.id.to_string())
                    .body(payload)
                    .send()
                    .await
                    .map_err(|e| format!("sms webhook: {}", e.without_url()))?;
                if resp.status().is_success() { Ok(()) } else { Err(format!("sms webhook answered {}", resp.status())) }
            }
            "webhook" | "fcm" | "apns" if m.channel == "push" => {
                let p: crate::push::Payload = serde_json::from_str(body).map_err(|e| format!("push payload: {e}"))?;
                match (m.provider.as_str(), &self.push_webhook, &self.fcm, &self.apns) {
                    ("webhook", Some(w), _, _) => w.send(&m.id.to_string(), &m.to, &p, now_unix).await,
                    ("fcm", _, Some(f), _) => f.send(&m.to, &p, now_unix).await,
                    ("apns", _, _, Some(a)) => a.send(&m.to, &p, now_unix).await,
                    (other, _, _, _) => Err(format!("push provider {other} is not configured")),
                }
            }
            other => Err(format!("unknown provider {other}")),
        }
    }
}

/// The outbox worker.
pub struct Worker {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// To open sealed bodies.
    pub keys: Keys,
    /// Senders.
    pub senders: Senders,
    /// Timing.
    pub config: OutboxConfig,
    /// Woken when a message is queued.
    pub wakeup: Arc<Notify>,
    /// To report flows that expired unfinished (the `abandoned` step metric).
    pub auth: latchkey_core::Auth,
}

impl Worker {
    /// Deliver until `shutdown` fires.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(10));
        let mut last_purge = self.clock.now();
        let mut last_sweep = self.clock.now();
        loop {
            let mut busy = false;
            match self.tick().await {
                Ok(n) => busy = n > 0,
                Err(e) => tracing::error!(error = %e, "outbox: database unavailable"),
            }
            let now = self.clock.now();
            if now - last_sweep >= time::Duration::minutes(1) {
                last_sweep = now;
                self.sweep_abandoned().await;
            }
            if now - last_purge > time::Duration::hours(1) {
                last_purge = now;
                if let Err(e) = self.store.purge(now - time::Duration::days(1)).await {
                    tracing::warn!(error = %e, "purge failed");
                }
            }
            if busy {
                continue;
            }
            tokio::select! {
                _ = self.wakeup.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Count flows that expired at a step as `abandoned` there, so operators see where users drop
    /// off. The store hands each expired flow to one replica.
    pub async fn sweep_abandoned(&self) {
        loop {
            match self.auth.sweep_expired_flows(500).await {
                Ok(events) => {
                    for e in &events {
                        metrics::counter!("latchkey_flow_steps_total", "step" => e.step, "outcome" => e.outcome)
                            .increment(1);
                    }
                    if events.len() < 500 {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sweeping expired flows failed");
                    return;
                }
            }
        }
    }

    /// Claim and deliver one batch; returns how many were claimed.
    pub async fn tick(&self) -> Result<usize, latchkey_core::store::StoreError> {
        let now = self.clock.now();
        let lease = time::Duration::seconds(i64::try_from(self.config.lease_secs).unwrap_or(60));
        let batch = self.store.claim_outbox(now, 16, lease).await?;
        let n = batch.len();
        for m in batch {
            self.deliver(m).await?;
        }
        Ok(n)
    }

    async fn deliver(&self, m: OutboxMessage) -> Result<(), latchkey_core::store::StoreError> {
        let now = self.clock.now();
        let body = m
            .body_sealed
            .as_deref()
            .ok_or_else(|| "message has no body".to_owned())
            .and_then(|s| self.keys.open(&m.id.to_string(), s).map_err(|e| e.to_string()))
            .and_then(|b| String::from_utf8(b).map_err(|e| e.to_string()));
        let result = match body {
            Ok(body) => self.senders.send(&m, &body, now.unix_timestamp()).await,
            Err(e) => Err(format!("cannot open message body: {e}")),
        };
        match result {
            Ok(()) => {
                metrics::counter!("latchkey_outbox_messages_total", "channel" => m.channel.clone(), "outcome" => "sent").increment(1);
                self.store.outbox_sent(m.id, now, m.provider == DEV).await
            }
            Err(e) => {
                let retry = (m.attempts < self.config.max_attempts).then(|| now + backoff(&self.config, m.attempts));
                metrics::counter!("latchkey_outbox_messages_total", "channel" => m.channel.clone(), "outcome" => if retry.is_some() { "retry" } else { "dead" }).increment(1);
                tracing::warn!(message_id = %m.id, channel = %m.channel, attempts = m.attempts, error = %e, will_retry = retry.is_some(), "delivery failed");
                self.store.outbox_failed(m.id, &e, retry).await
            }
        }
    }
}

/// The delay before retry number `attempts` + 1.
pub fn backoff(c: &OutboxConfig, attempts: u32) -> time::Duration {
    let exp = attempts.saturating_sub(1).min(20);
    let secs = c.backoff_base_secs.saturating_mul(1 << exp).min(c.backoff_max_secs);
    time::Duration::seconds(i64::try_from(secs).unwrap_or(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = OutboxConfig { backoff_base_secs: 5, backoff_max_secs: 60, ..Default::default() };
        let s: Vec<i64> = (1..=6).map(|a| backoff(&c, a).whole_seconds()).collect();
        assert_eq!(s, vec![5, 10, 20, 40, 60, 60]);
    }

    #[test]
    fn the_webhook_signature_is_hmac_sha256_over_timestamp_and_body() {
        // Python: hmac.new(b"key", b"1700000000.{}", hashlib.sha256).hexdigest()
        let sig = sign_webhook(b"key", 1_700_000_000, b"{}");
        assert_eq!(sig, "t=1700000000,v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae");
    }
}
