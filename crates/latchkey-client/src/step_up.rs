//! Step-up from the app's side (RFC 9470): an API — Latchkey's or the app's own — answers `401`
//! with `WWW-Authenticate: Bearer error="insufficient_user_authentication", acr_values=…,
//! max_age=…`; the SDK starts a `step_up` flow for the same session, lets the app's screens
//! answer its steps, keeps the new tokens and retries the call once.

use crate::{Client, ClientError, Result};
use latchkey_proto::{
    Action, ApprovalRequest, FlowAnswer, NextStep, SecurityEvents, StepUpRequest, Tokens, canonical_action, codes,
};
use reqwest::Method;
use std::future::Future;

/// What an RFC 9470 challenge asks a new authentication to achieve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepUpChallenge {
    /// The levels acceptable, space-separated, in order of preference.
    pub acr_values: Option<String>,
    /// The most seconds since the user last authenticated.
    pub max_age: Option<u64>,
}

impl StepUpChallenge {
    /// The challenge in a `WWW-Authenticate` value, if it is RFC 9470's
    /// (`error="insufficient_user_authentication"`); `None` for any other.
    pub fn parse(www_authenticate: &str) -> Option<Self> {
        let params = www_authenticate.trim().strip_prefix("Bearer")?.trim();
        let mut out = StepUpChallenge::default();
        let mut is_step_up = false;
        for (name, value) in auth_params(params) {
            match name.to_ascii_lowercase().as_str() {
                "error" => is_step_up = value == codes::INSUFFICIENT_USER_AUTHENTICATION,
                "acr_values" => out.acr_values = Some(value),
                "max_age" => out.max_age = value.parse().ok(),
                _ => {}
            }
        }
        is_step_up.then_some(out)
    }

    /// The `POST /v1/step-up` body that answers it.
    pub fn request(&self) -> StepUpRequest {
        StepUpRequest { acr_values: self.acr_values.clone(), max_age: self.max_age, action: None }
    }
}

/// `name=value` and `name="quoted value"` pairs of an auth-param list (RFC 9110 §11.2).
fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().to_owned();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        out.push((name, value));
    }
    out
}

impl Client {
    /// `POST /v1/step-up`: raise this session in place. The answer is the flow's first step (or
    /// `done` with new tokens when the session already meets the request).
    pub async fn step_up(&self, access_token: &str, req: &StepUpRequest) -> Result<FlowAnswer> {
        self.send(self.authed(Method::POST, "/v1/step-up", access_token)?.json(req)).await
    }

    /// `GET /v1/me/events`: the security timeline, newest first; `before` is the previous page's
    /// `next_before`.
    pub async fn events(&self, access_token: &str, before: Option<&str>, limit: Option<u32>) -> Result<SecurityEvents> {
        let mut query: Vec<String> = vec![];
        if let Some(b) = before {
            // Event ids are UUIDs: nothing to escape, and anything else is no page.
            if !b.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                return Err(ClientError::Decode("before must be an event id (a page's next_before)".into()));
            }
            query.push(format!("before={b}"));
        }
        if let Some(l) = limit {
            query.push(format!("limit={l}"));
        }
        let path =
            if query.is_empty() { "/v1/me/events".to_owned() } else { format!("/v1/me/events?{}", query.join("&")) };
        self.send(self.authed(Method::GET, &path, access_token)?).await
    }

    /// Run `call` with the session's access token. When it fails with an RFC 9470 challenge —
    /// from Latchkey or from the app's own API (see [`ClientError::step_up_required`]) — step
    /// up: `prove` receives the `step_up` flow's first answer and drives its steps (the app's
    /// screens) to the end; the new tokens replace `tokens`, and `call` runs once more. Any
    /// other error, a second challenge, or a step-up that does not end in tokens is returned.
    pub async fn with_step_up<T, C, CF, P, PF>(&self, tokens: &mut Tokens, mut call: C, prove: P) -> Result<T>
    where
        C: FnMut(String) -> CF,
        CF: Future<Output = Result<T>>,
        P: FnOnce(FlowAnswer) -> PF,
        PF: Future<Output = Result<FlowAnswer>>,
    {
        let challenge = match call(tokens.access_token.clone()).await {
            Err(e) => match e.challenge() {
                Some(c) => c.clone(),
                None => return Err(e),
            },
            ok => return ok,
        };
        let first = self.step_up(&tokens.access_token, &challenge.request()).await?;
        let done = if matches!(first.next_step, NextStep::Done) { first } else { prove(first).await? };
        let fresh = done.tokens.ok_or_else(|| {
            ClientError::Decode(format!("the step-up ended at {} without tokens", done.next_step.name()))
        })?;
        *tokens = fresh;
        call(tokens.access_token.clone()).await
    }
}

/// The hash an action approval binds: `base64url(SHA-256(canonical_action))`, unpadded. The
/// app's backend computes it of the action it is about to execute and compares it with the
/// approval JWT's `action_hash`.
pub fn action_hash(action: &Action) -> Result<String> {
    let canonical = canonical_action(action).map_err(|e| ClientError::Decode(e.to_string()))?;
    Ok(crate::b64url(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref()))
}

/// The action an approval asks the user to approve, once checked against the hash its `kind`
/// binds (`action:<hash>`): show this, word for word. `Ok(None)` for a sign-in's approval; an
/// error when the action is missing or is not the one the hash names (never show or sign it).
pub fn verified_action(approval: &ApprovalRequest) -> Result<Option<&Action>> {
    let Some(hash) = approval.kind.strip_prefix("action:") else { return Ok(None) };
    let action =
        approval.action.as_ref().ok_or_else(|| ClientError::Decode("an action approval without its action".into()))?;
    if action_hash(action)? != hash {
        return Err(ClientError::Decode("the action shown is not the one this approval binds".into()));
    }
    Ok(Some(action))
}

impl ClientError {
    /// The error an app's own API call should give when its response is `401` with an RFC 9470
    /// challenge in `WWW-Authenticate`, so [`Client::with_step_up`] steps up and retries; `None`
    /// when the header is no such challenge.
    pub fn step_up_required(www_authenticate: &str) -> Option<ClientError> {
        let challenge = StepUpChallenge::parse(www_authenticate)?;
        Some(ClientError::Api {
            status: 401,
            code: codes::INSUFFICIENT_USER_AUTHENTICATION.into(),
            message: "the API asks for a stronger or more recent sign-in".into(),
            request_id: String::new(),
            challenge: Some(challenge),
        })
    }

    /// The RFC 9470 challenge a `401` carried, if any.
    pub fn challenge(&self) -> Option<&StepUpChallenge> {
        match self {
            ClientError::Api { challenge, .. } => challenge.as_ref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_latchkeys_challenge_and_ignores_others() {
        let c = StepUpChallenge::parse(
            r#"Bearer error="insufficient_user_authentication", acr_values="aal2", max_age=600"#,
        );
        assert_eq!(c, Some(StepUpChallenge { acr_values: Some("aal2".into()), max_age: Some(600) }));
        let c = StepUpChallenge::parse(r#"Bearer max_age=5,error="insufficient_user_authentication""#).unwrap();
        assert_eq!((c.acr_values, c.max_age), (None, Some(5)));
        assert_eq!(StepUpChallenge::parse(r#"Bearer error="invalid_token""#), None);
        assert_eq!(StepUpChallenge::parse(r#"DPoP error="invalid_dpop_proof", algs="ES256""#), None);
        let q = StepUpChallenge::parse(r#"Bearer error="insufficient_user_authentication", acr_values="aal2 \"x\"""#)
            .unwrap();
        assert_eq!(q.acr_values.as_deref(), Some(r#"aal2 "x""#));
    }
}
