//! SMS through Twilio's Messages API (issue 15, item 5), besides the signed JSON webhook:
//! `POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`, form-encoded `To`, `Body`
//! and `From` (or `MessagingServiceSid`), HTTP Basic with the account SID (or an API key SID) and
//! its secret. A `201` is sent. Twilio's answer to a refusal is `{"code", "message", "status"}`:
//! what will never succeed (a number that is invalid, unreachable or unsubscribed, a body it
//! refuses) is **dead** at once; what may succeed later (throttling, Twilio's own failures,
//! credentials being rotated, no answer) is **retried** with the outbox's backoff.

use crate::webhook::{Failure, with_causes};
use serde::{Deserialize, Serialize};

/// `[twilio]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// The account SID (`AC…`): in the URL, and the Basic user name unless `api_key_sid` is set.
    pub account_sid: String,
    /// The auth token, or the API key's secret when `api_key_sid` is set.
    pub auth_token: String,
    /// An API key SID (`SK…`) to authenticate with instead of the account SID.
    #[serde(default)]
    pub api_key_sid: Option<String>,
    /// The sending number (E.164) or alphanumeric sender id.
    #[serde(default)]
    pub from: Option<String>,
    /// A Messaging Service (`MG…`) to send through instead of `from`.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// The API's base URL (tests point it at a local fake).
    #[serde(default = "default_base_url")]
    pub base_url: String,
}

fn default_base_url() -> String {
    "https://api.twilio.com".into()
}

impl TwilioConfig {
    /// Why it cannot work, if it cannot.
    pub fn problem(&self) -> Option<&'static str> {
        if !self.account_sid.starts_with("AC") || self.auth_token.is_empty() {
            return Some("twilio: account_sid (AC…) and auth_token are required");
        }
        if self.from.is_some() == self.messaging_service_sid.is_some() {
            return Some("twilio: set exactly one of from and messaging_service_sid");
        }
        None
    }
}

/// Sends SMS through Twilio.
pub struct TwilioSender {
    config: TwilioConfig,
    http: reqwest::Client,
}

/// Twilio error codes that no retry will fix (docs/integrations.md lists them): the number is
/// invalid, cannot receive SMS, is not reachable from this sender or region, or unsubscribed; the
/// body is refused.
const PERMANENT_CODES: [u32; 9] = [21211, 21214, 21265, 21408, 21610, 21612, 21614, 21617, 21635];

/// What Twilio's refusal means for the message.
pub fn classify(status: u16, code: Option<u32>, message: &str) -> Failure {
    let reason = match code {
        Some(c) => format!("twilio answered {status}, error {c}: {message}"),
        None => format!("twilio answered {status}"),
    };
    let permanent = match (status, code) {
        (_, Some(c)) if PERMANENT_CODES.contains(&c) => true,
        // Throttled, Twilio failing, or credentials refused (fixed by the operator, then sent).
        (429 | 500..=599 | 401 | 403, _) => false,
        (_, Some(20429)) => false,
        // Any other refusal of the request is the same refusal next time.
        (400..=499, _) => true,
        _ => false,
    };
    Failure { reason, permanent }
}

#[derive(Deserialize)]
struct TwilioError {
    code: Option<u32>,
    #[serde(default)]
    message: String,
}

impl TwilioSender {
    /// With the configured deadline.
    pub fn new(config: TwilioConfig, http: reqwest::Client) -> Self {
        Self { config, http }
    }

    /// Send one SMS.
    pub async fn send(&self, to: &str, body: &str) -> Result<(), Failure> {
        let c = &self.config;
        let url = format!("{}/2010-04-01/Accounts/{}/Messages.json", c.base_url.trim_end_matches('/'), c.account_sid);
        let mut form = vec![("To", to), ("Body", body)];
        match (&c.from, &c.messaging_service_sid) {
            (_, Some(service)) => form.push(("MessagingServiceSid", service)),
            (Some(from), None) => form.push(("From", from)),
            (None, None) => return Err(Failure::permanent("twilio: no from or messaging_service_sid".into())),
        }
        let user = c.api_key_sid.as_deref().unwrap_or(&c.account_sid);
        let resp = self
            .http
            .post(url)
            .basic_auth(user, Some(&c.auth_token))
            .form(&form)
            .send()
            .await
            .map_err(|e| Failure::retry(format!("twilio: {}", with_causes(&e.without_url()))))?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(());
        }
        let err: Option<TwilioError> = resp.json().await.ok();
        // Twilio's message may quote the number; never the body (the code is in it).
        let (code, message) = err.map_or((None, String::new()), |e| (e.code, e.message.replace(body, "<body>")));
        Err(classify(status, code, &message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_that_cannot_succeed_are_dead_and_the_rest_retried() {
        assert!(classify(400, Some(21211), "Invalid 'To' Phone Number").permanent);
        assert!(classify(400, Some(21610), "Attempt to send to unsubscribed recipient").permanent);
        assert!(classify(400, Some(21408), "Permission to send an SMS has not been enabled").permanent);
        assert!(classify(404, Some(20404), "not found").permanent);
        assert!(!classify(429, Some(20429), "Too Many Requests").permanent);
        assert!(!classify(503, None, "").permanent);
        assert!(!classify(500, Some(20500), "Internal Server Error").permanent);
        assert!(!classify(401, Some(20003), "Authenticate").permanent);
        let f = classify(400, Some(21211), "Invalid 'To' Phone Number: +1555");
        assert_eq!(f.reason, "twilio answered 400, error 21211: Invalid 'To' Phone Number: +1555");
    }

    #[test]
    fn the_configuration_takes_one_sms_provider_and_redacts_the_token() {
        let twilio = TwilioConfig {
            account_sid: "AC00000000000000000000000000000001".into(),
            auth_token: "twilio-auth-token".into(),
            api_key_sid: None,
            from: Some("+15005550006".into()),
            messaging_service_sid: None,
            base_url: default_base_url(),
        };
        let mut c = crate::config::Config { twilio: Some(twilio.clone()), ..Default::default() };
        c.validate().unwrap();
        let shown = c.redacted_toml().unwrap();
        assert!(shown.contains("[twilio]") && !shown.contains("twilio-auth-token"), "{shown}");
        c.sms_webhook_url = Some("https://sms.example.com".into());
        c.sms_webhook_secret = Some("s".into());
        assert!(c.validate().unwrap_err().to_string().contains("one SMS provider"));
        let both = TwilioConfig { messaging_service_sid: Some("MG1".into()), ..twilio.clone() };
        assert!(both.problem().is_some());
        let none = TwilioConfig { from: None, ..twilio };
        assert!(none.problem().is_some());
    }
}
