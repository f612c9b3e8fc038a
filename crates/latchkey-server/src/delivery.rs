//! The senders of outbox messages: SMTP (lettre), an SMS webhook signed with HMAC-SHA-256, the
//! push providers, and the development sink (the log and the `dev` outbox that `latchkey outbox`
//! prints). The worker that claims and hands them messages is `crate::worker`.

use crate::config::{Config, OutboxConfig};
pub use crate::webhook::Failure;
use crate::webhook::{MESSAGE_ID_HEADER, SIGNATURE_HEADER, sign_webhook, with_causes};
use latchkey_core::auth::OutboxRoutes;
use latchkey_core::model::OutboxMessage;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// Provider names stored with each message.
pub const SMTP: &str = "smtp";
/// The SMS webhook.
pub const SMS_WEBHOOK: &str = "sms_webhook";
/// Twilio's Messages API.
pub const TWILIO: &str = "twilio";
/// Development: log and keep.
pub const DEV: &str = "dev";
/// The push providers.
pub const PUSH_PROVIDERS: [&str; 3] = ["fcm", "apns", "webhook"];

/// Every provider a message can name.
pub fn all_providers() -> impl Iterator<Item = &'static str> {
    [DEV, SMTP, SMS_WEBHOOK, TWILIO].into_iter().chain(PUSH_PROVIDERS)
}

/// The routes for the configured providers: a channel without a provider goes to `dev`.
pub fn routes(config: &Config) -> OutboxRoutes {
    OutboxRoutes {
        email: if config.smtp_url.is_some() { SMTP } else { DEV }.into(),
        sms: if config.twilio.is_some() {
            TWILIO
        } else if config.sms_webhook_url.is_some() {
            SMS_WEBHOOK
        } else {
            DEV
        }
        .into(),
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

/// Sends messages.
pub struct Senders {
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, lettre::message::Mailbox)>,
    sms: Option<(String, Vec<u8>, reqwest::Client)>,
    twilio: Option<crate::twilio::TwilioSender>,
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
        let twilio = match &config.twilio {
            Some(t) => Some(crate::twilio::TwilioSender::new(t.clone(), http()?)),
            None => None,
        };
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
        Ok(Self { smtp, sms, twilio, push_webhook, fcm, apns, dev_log_bodies: config.dev_log_message_bodies })
    }

    /// The providers configured here (the development outbox always is).
    pub fn configured(&self) -> Vec<&'static str> {
        let on = [
            (DEV, true),
            (SMTP, self.smtp.is_some()),
            (SMS_WEBHOOK, self.sms.is_some()),
            (TWILIO, self.twilio.is_some()),
            ("fcm", self.fcm.is_some()),
            ("apns", self.apns.is_some()),
            ("webhook", self.push_webhook.is_some()),
        ];
        on.into_iter().filter(|(_, on)| *on).map(|(p, _)| p).collect()
    }

    /// Deliver one message (without a deadline: the worker holds it to `send_timeout_secs`).
    pub async fn send(&self, m: &OutboxMessage, body: &str, now_unix: i64) -> Result<(), Failure> {
        if m.provider == TWILIO {
            let twilio = self.twilio.as_ref().ok_or_else(|| Failure::retry("twilio is not configured".into()))?;
            return twilio.send(&m.to, body).await;
        }
        self.send_other(m, body, now_unix).await.map_err(Failure::retry)
    }

    async fn send_other(&self, m: &OutboxMessage, body: &str, now_unix: i64) -> Result<(), String> {
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
                transport.send(email).await.map(|_| ()).map_err(|e| format!("smtp: {}", with_causes(&e)))
            }
            SMS_WEBHOOK => {
                let (url, secret, client) = self.sms.as_ref().ok_or("sms webhook is not configured")?;
                let payload =
                    serde_json::to_vec(&serde_json::json!({"to": m.to, "body": body})).map_err(|e| e.to_string())?;
                let resp = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header(SIGNATURE_HEADER, sign_webhook(secret, now_unix, &payload))
                    .header(MESSAGE_ID_HEADER, m.id.to_string())
                    .body(payload)
                    .send()
                    .await
                    .map_err(|e| format!("sms webhook: {}", with_causes(&e.without_url())))?;
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
}
