//! An action to approve (PSD2-style dynamic linking): what the phone shows and signs, and its
//! canonical encoding, whose SHA-256 binds the approval to exactly this action.

use super::*;

/// An action the user approves on their enrolled phone (`POST /v1/step-up` with `action`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// What kind of action, for the app's backend: 1–64 of `a-z 0-9 _ . -`, e.g. `payment`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64, pattern = r"^[a-z0-9_.\-]+$"))]
    pub kind: String,
    /// What the phone shows, word for word: 1–200 characters, e.g. `Pay €120.00 to ACME Ltd`.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub text: String,
    /// The facts the backend executes (amount, payee, …): a JSON object with ASCII keys and no
    /// fractional numbers (send amounts as strings or in minor units), at most 2,048 bytes
    /// canonically encoded. Absent is `{}`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: Option<serde_json::Value>,
}

/// Why an action cannot be approved as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionError(pub String);

impl std::fmt::Display for ActionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The most bytes an action's `data` may have, canonically encoded.
pub const MAX_ACTION_DATA_BYTES: usize = 2048;

/// The canonical encoding of an action: the JSON object `{"data":…,"text":…,"type":…}` with
/// every object's keys in byte order, no whitespace, strings escaped as JSON requires and no
/// more (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as `\u00xx` in lower
/// case; everything else as its UTF-8 bytes), and integers in decimal. With ASCII keys and no
/// fractional numbers this is exactly RFC 8785 (JCS). The approval binds
/// `base64url(SHA-256(canonical bytes))`, unpadded.
///
/// ```
/// use latchkey_proto::{Action, canonical_action};
/// let a = Action {
///     kind: "payment".into(),
///     text: "Pay €120.00 to ACME Ltd".into(),
///     data: Some(serde_json::json!({"payee": "ACME Ltd", "amount_minor": 12000, "currency": "EUR"})),
/// };
/// assert_eq!(
///     canonical_action(&a).unwrap(),
///     r#"{"data":{"amount_minor":12000,"currency":"EUR","payee":"ACME Ltd"},"text":"Pay €120.00 to ACME Ltd","type":"payment"}"#
/// );
/// ```
pub fn canonical_action(action: &Action) -> Result<String, ActionError> {
    let bad = |m: &str| Err(ActionError(m.into()));
    let kind_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-');
    if action.kind.is_empty() || action.kind.len() > 64 || !action.kind.chars().all(kind_ok) {
        return bad("action.type: 1–64 of a-z 0-9 _ . -");
    }
    let chars = action.text.chars().count();
    if chars == 0 || chars > 200 || action.text.trim().is_empty() {
        return bad("action.text: 1–200 characters");
    }
    let empty = serde_json::Value::Object(serde_json::Map::new());
    let data = action.data.as_ref().unwrap_or(&empty);
    if !data.is_object() {
        return bad("action.data: a JSON object");
    }
    let mut encoded = String::new();
    write_value(data, &mut encoded)?;
    if encoded.len() > MAX_ACTION_DATA_BYTES {
        return bad("action.data: at most 2,048 bytes");
    }
    let mut out = String::from("{\"data\":");
    out.push_str(&encoded);
    out.push_str(",\"text\":");
    write_string(&action.text, &mut out);
    out.push_str(",\"type\":");
    write_string(&action.kind, &mut out);
    out.push('}');
    Ok(out)
}

fn write_value(v: &serde_json::Value, out: &mut String) -> Result<(), ActionError> {
    match v {
        serde_json::Value::Null => out.push_str("null"),
        serde_json::Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => out.push_str(&i.to_string()),
            (None, Some(u)) => out.push_str(&u.to_string()),
            _ => return Err(ActionError("action.data: no fractional numbers (use strings or minor units)".into())),
        },
        serde_json::Value::String(s) => write_string(s, out),
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            if keys.iter().any(|k| !k.is_ascii()) {
                return Err(ActionError("action.data: keys must be ASCII".into()));
            }
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_value(&map[k.as_str()], out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The approval kind that binds an action: `action:` and its hash. The phone signs it inside
/// [`approval_message`], so the signature covers the action.
pub fn action_approval_kind(action_hash: &str) -> String {
    format!("action:{action_hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(data: serde_json::Value) -> Action {
        Action { kind: "payment".into(), text: "Pay".into(), data: Some(data) }
    }

    #[test]
    fn the_encoding_sorts_nested_keys_escapes_minimally_and_refuses_what_jcs_would_spell_otherwise() {
        let a = action(serde_json::json!({"z": [1, {"b": null, "a": true}], "a\n": "tab\there \"q\" \u{1}"}));
        assert_eq!(
            canonical_action(&a).unwrap(),
            r#"{"data":{"a\n":"tab\there \"q\" \u0001","z":[1,{"a":true,"b":null}]},"text":"Pay","type":"payment"}"#
        );
        assert!(canonical_action(&action(serde_json::json!({"amount": 1.5}))).is_err(), "a fraction");
        assert!(canonical_action(&action(serde_json::json!({"é": 1}))).is_err(), "a non-ASCII key");
        assert!(canonical_action(&action(serde_json::json!([1]))).is_err(), "data not an object");
        assert!(canonical_action(&Action { kind: "Pay!".into(), ..action(serde_json::json!({})) }).is_err());
        assert!(canonical_action(&Action { text: " ".into(), ..action(serde_json::json!({})) }).is_err());
        let none = Action { data: None, ..action(serde_json::json!({})) };
        assert_eq!(canonical_action(&none).unwrap(), r#"{"data":{},"text":"Pay","type":"payment"}"#);
        let big = action(serde_json::json!({"x": "a".repeat(3000)}));
        assert!(canonical_action(&big).is_err(), "too big");
    }
}
