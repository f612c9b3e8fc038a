//! Custom attributes an operator declares (`[[policy.attributes]]`): a name, a type, who may
//! write it, and whether it rides in access tokens as a claim. Values live in the user's profile
//! as JSON and reach the wire as top-level fields of `PATCH /v1/me` and `GET /v1/me`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A custom attribute's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeType {
    /// Text, at most `max_length` characters, no control characters; one of `values` when given.
    String,
    /// A whole number (64-bit).
    Integer,
    /// `true` or `false`.
    Boolean,
}

/// Who may write an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Writer {
    /// The user (`PATCH /v1/me`) and admins.
    #[default]
    User,
    /// Admins only (`PATCH /admin/v1/users/{username}`); the user reads it.
    Admin,
}

/// One declared attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeDecl {
    /// `^[a-z][a-z0-9_]{0,31}$`, and not a name Latchkey uses itself.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: AttributeType,
    /// Who may write it (default `user`).
    #[serde(default)]
    pub writable_by: Writer,
    /// Put it in access tokens as a claim of its name (default false).
    #[serde(default)]
    pub claim: bool,
    /// Strings: the longest value, in characters (default 256, at most 2,048).
    #[serde(default)]
    pub max_length: Option<u32>,
    /// Strings: the only values allowed (default: any).
    #[serde(default)]
    pub values: Vec<String>,
}

/// Names an attribute cannot take: the fields of `/v1/me` and the profile, and the claims of
/// access tokens (RFC 7519, RFC 9068, OpenID Connect, RFC 9449).
pub const RESERVED: [&str; 32] = [
    "id",
    "username",
    "email",
    "email_verified",
    "phone",
    "phone_verified",
    "phone_number",
    "status",
    "session_id",
    "name",
    "locale",
    "zoneinfo",
    "picture",
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
    "roles",
    "groups",
];

/// The longest string value anyone may declare.
pub const MAX_STRING: u32 = 2048;

impl AttributeDecl {
    /// Why this declaration is refused, if it is.
    pub fn problem(&self) -> Option<String> {
        let n = &self.name;
        let shape = n.len() <= 32
            && n.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
            && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !shape {
            return Some(format!("attribute {n:?}: a name is a lower-case letter, then up to 31 of a-z, 0-9 and _"));
        }
        if RESERVED.contains(&n.as_str()) {
            return Some(format!("attribute {n:?}: the name is Latchkey's own"));
        }
        if self.kind != AttributeType::String && (self.max_length.is_some() || !self.values.is_empty()) {
            return Some(format!("attribute {n:?}: max_length and values are for strings"));
        }
        if self.max_length.is_some_and(|m| m == 0 || m > MAX_STRING) {
            return Some(format!("attribute {n:?}: max_length is 1 to {MAX_STRING}"));
        }
        None
    }

    /// Whether `v` is a value of this attribute (null, which clears it, is checked by the caller).
    pub fn check(&self, v: &Value) -> Result<(), String> {
        let n = &self.name;
        match (self.kind, v) {
            (AttributeType::Boolean, Value::Bool(_)) => Ok(()),
            (AttributeType::Integer, Value::Number(x)) if x.is_i64() => Ok(()),
            (AttributeType::String, Value::String(s)) => {
                let max = self.max_length.unwrap_or(256) as usize;
                if s.is_empty() || s.chars().count() > max || s.chars().any(char::is_control) {
                    return Err(format!("{n}: 1 to {max} characters, no control characters"));
                }
                if !self.values.is_empty() && !self.values.contains(s) {
                    return Err(format!("{n}: one of {}", self.values.join(", ")));
                }
                Ok(())
            }
            (AttributeType::Boolean, _) => Err(format!("{n}: true or false")),
            (AttributeType::Integer, _) => Err(format!("{n}: a whole number")),
            (AttributeType::String, _) => Err(format!("{n}: a string")),
        }
    }

    /// The attribute's JSON Schema, for the served OpenAPI document.
    pub fn schema(&self) -> Value {
        let mut s = match self.kind {
            AttributeType::Boolean => serde_json::json!({"type": ["boolean", "null"]}),
            AttributeType::Integer => serde_json::json!({"type": ["integer", "null"], "format": "int64"}),
            AttributeType::String => serde_json::json!({
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": self.max_length.unwrap_or(256),
                "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]+$",
            }),
        };
        if !self.values.is_empty() {
            let mut values: Vec<Value> = self.values.iter().map(|v| Value::String(v.clone())).collect();
            values.push(Value::Null);
            s["enum"] = Value::Array(values);
        }
        let who = match self.writable_by {
            Writer::User => "the user and admins",
            Writer::Admin => "admins only",
        };
        let claim = if self.claim { "; also an access-token claim" } else { "" };
        s["description"] = Value::String(format!("A custom attribute (written by {who}{claim}); null clears it."));
        s
    }
}

/// The access-token claims of `custom` that `declared` puts in tokens.
pub fn claims(declared: &[AttributeDecl], custom: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    declared
        .iter()
        .filter(|d| d.claim)
        .filter_map(|d| custom.get(&d.name).map(|v| (d.name.clone(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decl(name: &str, kind: AttributeType) -> AttributeDecl {
        AttributeDecl {
            name: name.into(),
            kind,
            writable_by: Writer::User,
            claim: false,
            max_length: None,
            values: vec![],
        }
    }

    #[test]
    fn names_are_checked_and_latchkeys_own_are_refused() {
        assert_eq!(decl("plan", AttributeType::String).problem(), None);
        for bad in ["Plan", "1plan", "plan-b", "", "sub", "email", "acr", &"x".repeat(33)] {
            assert!(decl(bad, AttributeType::String).problem().is_some(), "{bad}");
        }
        let mut d = decl("age", AttributeType::Integer);
        d.max_length = Some(3);
        assert!(d.problem().is_some(), "max_length is for strings");
    }

    #[test]
    fn values_are_checked_by_type() {
        let mut plan = decl("plan", AttributeType::String);
        plan.values = vec!["free".into(), "pro".into()];
        assert!(plan.check(&json!("pro")).is_ok());
        assert!(plan.check(&json!("gold")).is_err() && plan.check(&json!(1)).is_err());
        let nick = decl("nickname", AttributeType::String);
        assert!(nick.check(&json!("")).is_err() && nick.check(&json!("a\nb")).is_err());
        assert!(nick.check(&json!("x".repeat(257))).is_err() && nick.check(&json!("x".repeat(256))).is_ok());
        let age = decl("age", AttributeType::Integer);
        assert!(age.check(&json!(42)).is_ok() && age.check(&json!(4.2)).is_err() && age.check(&json!("42")).is_err());
        let news = decl("newsletter", AttributeType::Boolean);
        assert!(news.check(&json!(true)).is_ok() && news.check(&json!("true")).is_err());
    }

    #[test]
    fn only_claimed_attributes_become_claims() {
        let mut plan = decl("plan", AttributeType::String);
        plan.claim = true;
        let declared = [plan, decl("nickname", AttributeType::String)];
        let custom = BTreeMap::from([("plan".to_owned(), json!("pro")), ("nickname".to_owned(), json!("Zo"))]);
        assert_eq!(claims(&declared, &custom), BTreeMap::from([("plan".to_owned(), json!("pro"))]));
    }
}
