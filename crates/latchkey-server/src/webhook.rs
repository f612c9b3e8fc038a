//! Signing of the webhooks Latchkey calls (the SMS provider and the push webhook): an HMAC-SHA-256
//! over `"<unix seconds>.<body>"` under a shared secret, and the message's stable id so a receiver
//! can drop the duplicate an at-least-once re-send makes. And what every provider's send ends
//! in when it fails: a reason, and whether a retry could help.

use aws_lc_rs::hmac;

/// The header carrying a webhook's signature: `t=<unix seconds>,v1=<hex HMAC-SHA-256 of
/// "<t>.<body>" under the shared secret>`.
pub const SIGNATURE_HEADER: &str = "x-latchkey-signature";

/// The header carrying the outbox message's id: the same on every attempt of one message.
pub const MESSAGE_ID_HEADER: &str = "x-latchkey-message-id";

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

/// An error with its causes (`error sending request: connection refused`), for the log and the
/// message's `last_error`: a provider's failure must say why. URLs are left out (they may carry
/// credentials or device tokens).
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Why a send failed, and whether trying again could help: a permanent failure makes the
/// message `dead` at once, any other is retried with backoff until `outbox.max_attempts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// For the log and the message's `last_error` (never the body).
    pub reason: String,
    /// No retry can succeed.
    pub permanent: bool,
}

impl Failure {
    /// Worth trying again.
    pub fn retry(reason: String) -> Self {
        Self { reason, permanent: false }
    }
    /// Never worth trying again.
    pub fn permanent(reason: String) -> Self {
        Self { reason, permanent: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_keeps_its_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(with_causes(&Outer(io)), "error sending request: connection refused");
    }

    #[test]
    fn the_webhook_signature_is_hmac_sha256_over_timestamp_and_body() {
        // Python: hmac.new(b"key", b"1700000000.{}", hashlib.sha256).hexdigest()
        let sig = sign_webhook(b"key", 1_700_000_000, b"{}");
        assert_eq!(sig, "t=1700000000,v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae");
    }
}
