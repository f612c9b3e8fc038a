//! Synchronous hooks (issue 15, item 2): the app's backend asked during a request, and what its
//! answer may do. The call itself (HTTPS, Standard Webhooks signature, deadline) is the server's,
//! behind [`Hooks`]; this module says what each hook is sent and how its answer is read.
//!
//! Every hook fails closed: no answer within the deadline, a non-2xx answer or an answer that
//! does not parse refuses the request (`unavailable`), unless the operator chose `on_failure =
//! "continue"` for `before_sign_up` or `custom_access_token`. A hook never receives a password,
//! a code, a TOTP secret or a token, except `user_migration`, which is sent the password it
//! must check.

use crate::attributes::AttributeDecl;
use crate::error::AuthError;
use serde_json::Value;
use std::collections::BTreeMap;

/// The hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Before an account is created by a sign-up: allow, deny with a message, set attributes.
    BeforeSignUp,
    /// Before an access token is signed: claims to add.
    CustomAccessToken,
    /// A challenge step of the operator's own: create it, then verify its answer.
    CustomChallenge,
    /// A sign-in or recovery for a username Latchkey does not know: ask the old system.
    UserMigration,
}

impl Hook {
    /// The name in the configuration and in every request body (`"hook"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::BeforeSignUp => "before_sign_up",
            Hook::CustomAccessToken => "custom_access_token",
            Hook::CustomChallenge => "custom_challenge",
            Hook::UserMigration => "user_migration",
        }
    }
}

/// How a configured hook is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookPolicy {
    /// On a failed call, go on as if the hook had allowed and added nothing (only
    /// `before_sign_up` and `custom_access_token` may; the default is to refuse).
    pub continue_on_failure: bool,
    /// `custom_challenge`: the RFC 8176 `amr` value a right answer adds, which decides its
    /// factor class (`otp`, `sms`, `tel`, `swk`: possession; `kba`: knowledge).
    pub amr: &'static str,
}

/// The port to the app's backend.
#[async_trait::async_trait]
pub trait Hooks: Send + Sync + 'static {
    /// How `hook` is configured; `None` when it is not.
    fn policy(&self, hook: Hook) -> Option<HookPolicy>;
    /// POST `body` to the hook and return its JSON answer, or why there is none (no answer
    /// within the deadline, not 2xx, not a JSON object). The reason is for the log only.
    async fn call(&self, hook: Hook, body: Value) -> Result<Value, String>;
}

/// The `amr` values a custom challenge may count as, with their factor class.
pub const CHALLENGE_AMR: [(&str, &str); 5] =
    [("otp", "possession"), ("sms", "possession"), ("tel", "possession"), ("swk", "possession"), ("kba", "knowledge")];

/// Claims a hook cannot set: those Latchkey signs into every access token and the registered
/// ones that would change what the token means (RFC 7519, RFC 9068, RFC 9449, OpenID Connect).
pub const RESERVED_CLAIMS: [&str; 18] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "sid",
    "acr",
    "amr",
    "auth_time",
    "cnf",
    "client_id",
    "scope",
    "azp",
    "nonce",
    "typ",
    "act",
];

/// The most a hook may add to a token: claims, as JSON.
const MAX_CLAIMS_BYTES: usize = 4096;

/// A failed hook call, as the request sees it (fail closed).
pub(crate) fn failed(hook: Hook, why: &str) -> AuthError {
    metrics::counter!("latchkey_hook_failures_total", "hook" => hook.as_str()).increment(1);
    AuthError::Unavailable(format!("hook {}: {why}", hook.as_str()))
}

/// What `before_sign_up` decided.
#[derive(Debug, Default)]
pub(crate) struct SignUpDecision {
    /// Why not, to show the user; `None`: allowed.
    pub denied: Option<String>,
    /// Declared attributes to set on the new account.
    pub attributes: BTreeMap<String, Value>,
}

/// Read `before_sign_up`'s answer: `{"decision": "allow", "attributes": {…}}` or `{"decision":
/// "deny", "message": "…"}`. Attributes must be declared and valid; a message is at most 256
/// characters without control characters.
pub(crate) fn read_sign_up(answer: &Value, declared: &[AttributeDecl]) -> Result<SignUpDecision, String> {
    let obj = answer.as_object().ok_or("the answer is not a JSON object")?;
    if let Some(k) = obj.keys().find(|k| !["decision", "message", "attributes"].contains(&k.as_str())) {
        return Err(format!("unknown field {k:?}"));
    }
    match obj.get("decision").and_then(Value::as_str) {
        Some("deny") => {
            let message = obj.get("message").and_then(Value::as_str).unwrap_or("").trim();
            if message.is_empty() || message.chars().count() > 256 || message.chars().any(char::is_control) {
                return Err("a denial needs a message of 1–256 characters without control characters".into());
            }
            Ok(SignUpDecision { denied: Some(message.to_owned()), attributes: BTreeMap::new() })
        }
        Some("allow") => {
            let mut attributes = BTreeMap::new();
            if let Some(attrs) = obj.get("attributes") {
                let attrs = attrs.as_object().ok_or("attributes: an object")?;
                for (name, value) in attrs {
                    let decl = declared
                        .iter()
                        .find(|a| &a.name == name)
                        .ok_or_else(|| format!("attributes: {name} is not declared in [[policy.attributes]]"))?;
                    decl.check(value).map_err(|m| format!("attributes.{name}: {m}"))?;
                    attributes.insert(name.clone(), value.clone());
                }
            }
            Ok(SignUpDecision { denied: None, attributes })
        }
        _ => Err("decision: \"allow\" or \"deny\"".into()),
    }
}

/// Read `custom_access_token`'s answer: `{"claims": {…}}`. A claim in [`RESERVED_CLAIMS`], or a
/// declared attribute's, cannot be set; the claims together are at most 4 KiB of JSON.
pub(crate) fn read_claims(answer: &Value, declared: &[AttributeDecl]) -> Result<BTreeMap<String, Value>, String> {
    let obj = answer.as_object().ok_or("the answer is not a JSON object")?;
    if let Some(k) = obj.keys().find(|k| k.as_str() != "claims") {
        return Err(format!("unknown field {k:?}"));
    }
    let Some(claims) = obj.get("claims") else { return Ok(BTreeMap::new()) };
    let claims = claims.as_object().ok_or("claims: an object")?;
    if let Some(k) =
        claims.keys().find(|k| RESERVED_CLAIMS.contains(&k.as_str()) || declared.iter().any(|a| &a.name == *k))
    {
        return Err(format!("claims: {k:?} is reserved and cannot be set by a hook"));
    }
    if serde_json::to_vec(claims).map_or(usize::MAX, |v| v.len()) > MAX_CLAIMS_BYTES {
        return Err(format!("claims: at most {MAX_CLAIMS_BYTES} bytes of JSON"));
    }
    Ok(claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// A challenge the hook created: what the app is shown, and what the hook keeps to verify.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CreatedChallenge {
    /// Shown to the app as the step's `parameters` (never a secret).
    pub parameters: Value,
    /// Given back to the hook with the answer; never shown to the app (sealed in the flow).
    pub private: Value,
}

/// Read the answer to `{"action": "create"}`: `{"parameters": {…}, "private": {…}}`, each at
/// most 4 KiB of JSON.
pub(crate) fn read_created(answer: &Value) -> Result<CreatedChallenge, String> {
    let obj = answer.as_object().ok_or("the answer is not a JSON object")?;
    if let Some(k) = obj.keys().find(|k| !["parameters", "private"].contains(&k.as_str())) {
        return Err(format!("unknown field {k:?}"));
    }
    let part = |name: &str| -> Result<Value, String> {
        let v = obj.get(name).cloned().unwrap_or_else(|| Value::Object(Default::default()));
        if !v.is_object() {
            return Err(format!("{name}: an object"));
        }
        if serde_json::to_vec(&v).map_or(usize::MAX, |b| b.len()) > MAX_CLAIMS_BYTES {
            return Err(format!("{name}: at most {MAX_CLAIMS_BYTES} bytes of JSON"));
        }
        Ok(v)
    };
    Ok(CreatedChallenge { parameters: part("parameters")?, private: part("private")? })
}

/// Read the answer to `{"action": "verify"}`: `{"correct": true|false}`.
pub(crate) fn read_verdict(answer: &Value) -> Result<bool, String> {
    answer.get("correct").and_then(Value::as_bool).ok_or_else(|| "correct: true or false".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn declared() -> Vec<AttributeDecl> {
        serde_json::from_value(json!([{"name": "plan", "type": "string", "values": ["free", "pro"]}])).unwrap()
    }

    #[test]
    fn a_sign_up_answer_allows_denies_or_is_refused() {
        let d = read_sign_up(&json!({"decision": "allow", "attributes": {"plan": "pro"}}), &declared()).unwrap();
        assert_eq!((d.denied, d.attributes.get("plan")), (None, Some(&json!("pro"))));
        let d = read_sign_up(&json!({"decision": "deny", "message": "Invitation only"}), &declared()).unwrap();
        assert_eq!(d.denied.as_deref(), Some("Invitation only"));
        for bad in [
            json!({"decision": "deny"}),
            json!({"decision": "maybe"}),
            json!({"decision": "allow", "attributes": {"plan": "gold"}}),
            json!({"decision": "allow", "attributes": {"undeclared": 1}}),
            json!({"decision": "allow", "extra": 1}),
            json!({"decision": "deny", "message": "x".repeat(257)}),
            json!([]),
        ] {
            assert!(read_sign_up(&bad, &declared()).is_err(), "{bad}");
        }
    }

    #[test]
    fn reserved_and_declared_claims_cannot_be_set() {
        let c = read_claims(&json!({"claims": {"tenant": "t1", "roles": ["a"]}}), &declared()).unwrap();
        assert_eq!(c.len(), 2);
        for name in ["sub", "acr", "amr", "exp", "cnf", "iss", "aud", "plan"] {
            assert!(read_claims(&json!({"claims": {name: "x"}}), &declared()).is_err(), "{name}");
        }
        assert!(read_claims(&json!({"claims": {"big": "x".repeat(5000)}}), &declared()).is_err());
        assert!(read_claims(&json!({}), &declared()).unwrap().is_empty());
    }

    #[test]
    fn a_challenge_is_created_and_verified_from_plain_answers() {
        let c = read_created(&json!({"parameters": {"question": "2+2"}, "private": {"answer": 4}})).unwrap();
        assert_eq!(c.parameters, json!({"question": "2+2"}));
        assert!(read_created(&json!({"parameters": "text"})).is_err());
        assert_eq!(read_verdict(&json!({"correct": true})), Ok(true));
        assert_eq!(read_verdict(&json!({"correct": false})), Ok(false));
        assert!(read_verdict(&json!({"correct": "yes"})).is_err());
    }
}
