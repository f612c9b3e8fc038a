//! Delivering event webhooks (issue 15, item 1), signed as Standard Webhooks asks so a receiver
//! uses any of its verifier libraries: `webhook-id` (the outbox message's id, the same on every
//! attempt, so a receiver drops the duplicate an at-least-once re-send makes), `webhook-timestamp`
//! (Unix seconds of this attempt) and `webhook-signature: v1,<base64 HMAC-SHA-256 of
//! "<id>.<timestamp>.<body>">` under the endpoint's `whsec_` secret. Any 2xx is delivered; any
//! other answer, a redirect, or no answer within `outbox.send_timeout_secs` is retried with the
//! outbox's backoff and ends `dead` after `outbox.max_attempts`.

use crate::webhook::with_causes;
use latchkey_core::events::Endpoint;
use latchkey_core::model::OutboxMessage;
use standardwebhooks::{HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP, Webhook};

/// The HTTP client for endpoints: no redirects (a receiver that moved answers 3xx, which is a
/// failure the operator sees), the outbox's deadline.
pub fn client(timeout: std::time::Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Latchkey-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// POST one event to its endpoint.
pub async fn send(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    m: &OutboxMessage,
    body: &str,
    now_unix: i64,
) -> Result<(), String> {
    let id = m.id.to_string();
    let signature = Webhook::new(&endpoint.secret)
        .and_then(|w| w.sign(&id, now_unix, body.as_bytes()))
        .map_err(|e| format!("cannot sign for endpoint {}: {e}", endpoint.id))?;
    let resp = http
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header(HEADER_WEBHOOK_ID, &id)
        .header(HEADER_WEBHOOK_TIMESTAMP, now_unix.to_string())
        .header(HEADER_WEBHOOK_SIGNATURE, signature)
        .body(body.to_owned())
        .send()
        .await
        .map_err(|e| format!("endpoint {}: {}", endpoint.id, with_causes(&e.without_url())))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("endpoint {} answered {}", endpoint.id, resp.status()))
    }
}
