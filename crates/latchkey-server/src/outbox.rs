//! Reading the development outbox (what `latchkey outbox` prints and tests read).

use latchkey_core::clock::rfc3339;
use latchkey_core::crypto::Keys;
use latchkey_core::store::Store;
use serde::Serialize;

/// One message, opened.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DevMessage {
    /// `email` or `sms`.
    pub channel: String,
    /// The recipient.
    pub to: String,
    /// The subject.
    pub subject: String,
    /// The body (holds the code).
    pub body: String,
    /// When it was queued (RFC 3339).
    pub created_at: String,
}

/// Every message of `provider` (default `dev`), oldest first, bodies decrypted.
pub async fn read(store: &dyn Store, keys: &Keys, provider: &str) -> anyhow::Result<Vec<DevMessage>> {
    let messages = store.outbox_messages(Some(provider)).await?;
    Ok(messages
        .into_iter()
        .map(|m| {
            let body = m
                .body_sealed
                .as_deref()
                .and_then(|s| keys.open(&m.id.to_string(), s).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_else(|| "<body not kept>".into());
            DevMessage { channel: m.channel, to: m.to, subject: m.subject, body, created_at: rfc3339(m.created_at) }
        })
        .collect())
}
