//! Sessions and tokens: the tokens a finished flow returns, refresh, sign-out, the signed-in
//! account and its sessions.

use super::*;

/// Tokens, present only in `done`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Tokens {
    /// An ES256 JWT (`typ: at+jwt`) verifiable with `/.well-known/jwks.json`.
    pub access_token: String,
    /// An opaque refresh token, rotated on every use.
    pub refresh_token: String,
    /// `Bearer`, or `DPoP` for a device session (its tokens are bound to the device's key).
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// `POST /v1/token`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TokenRequest {
    /// Only `refresh_token` is supported.
    #[cfg_attr(feature = "openapi", schema(pattern = "^refresh_token$"))]
    pub grant_type: String,
    /// The refresh token to rotate.
    pub refresh_token: String,
}

/// `POST /v1/sign-out`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SignOutRequest {
    /// `session` (default) or `all`.
    #[serde(default)]
    pub scope: SignOutScope,
}

/// Which sessions a sign-out ends.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SignOutScope {
    /// Only the session of the access token.
    #[default]
    Session,
    /// Every session of the user.
    All,
}

/// `GET /v1/me`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Me {
    /// The user id (UUIDv7).
    pub id: String,
    /// The username as registered.
    pub username: String,
    /// The email address, if any.
    pub email: Option<String>,
    /// Whether the email address was verified.
    pub email_verified: bool,
    /// The phone number, if any.
    pub phone: Option<String>,
    /// Whether the phone number was verified.
    pub phone_verified: bool,
    /// `unconfirmed`, `active`, `locked` or `disabled`.
    pub status: String,
    /// The current session's id.
    pub session_id: String,
    /// The current session's assurance level.
    pub acr: String,
    /// The methods used to authenticate (RFC 8176).
    pub amr: Vec<String>,
    /// Full name, as the user wrote it (`PATCH /v1/me`).
    #[serde(default)]
    pub name: Option<String>,
    /// BCP 47 language tag.
    #[serde(default)]
    pub locale: Option<String>,
    /// IANA time zone.
    #[serde(default)]
    pub zoneinfo: Option<String>,
    /// An `https` URL of a picture.
    #[serde(default)]
    pub picture: Option<String>,
    /// The custom attributes that are set, as fields of their own names (the served
    /// `/openapi.json` lists the declared ones).
    #[serde(flatten, default)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub attributes: std::collections::BTreeMap<String, serde_json::Value>,
}

/// `PATCH /v1/me`: the profile attributes to change. A field left out stays as it is; `null`
/// clears it. Email and phone are not here: they change through verification
/// (`POST /v1/me/factors`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProfileUpdate {
    /// Full name: 1 to 256 characters, no control characters.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, min_length = 1, max_length = 256, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"))]
    pub name: Option<Option<String>>,
    /// BCP 47 language tag, e.g. `en`, `de-CH`, `zh-Hant-TW`.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 35, pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$"))]
    pub locale: Option<Option<String>>,
    /// IANA time zone, e.g. `Europe/Berlin`, `America/Argentina/Buenos_Aires`, `UTC`.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 64, pattern = "^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"))]
    pub zoneinfo: Option<Option<String>>,
    /// An `https` URL of a picture, at most 2,048 characters.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 2048, pattern = "^https://[^\\u0000-\\u0020\\u007F-\\u009F]+$"))]
    pub picture: Option<Option<String>>,
    /// The operator's custom attributes (`[[policy.attributes]]`), as fields of their own names;
    /// any other field is refused. The served `/openapi.json` lists the declared ones.
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub attributes: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A field that was sent, as `Some(value or null)`; one left out stays `None` (its default).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// One session in `GET /v1/me/sessions`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SessionInfo {
    /// The session id.
    pub id: String,
    /// Whether this is the session of the calling access token.
    pub current: bool,
    /// Assurance level.
    pub acr: String,
    /// Methods used (RFC 8176).
    pub amr: Vec<String>,
    /// When the user authenticated (RFC 3339).
    pub auth_time: String,
    /// When the session was created (RFC 3339).
    pub created_at: String,
    /// When the session was last refreshed (RFC 3339).
    pub last_refresh_at: String,
    /// The IP address that created it, if known.
    pub ip: Option<String>,
    /// The user agent that created it, if known.
    pub user_agent: Option<String>,
}

/// `GET /v1/me/sessions`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SessionList {
    /// Active sessions, newest first.
    pub sessions: Vec<SessionInfo>,
}

/// `POST /v1/step-up` (RFC 9470): raise the calling session in place. Both fields are optional;
/// with neither, the target is `aal2`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StepUpRequest {
    /// The assurance wanted, as in RFC 9470's challenge: space-separated, in order of
    /// preference; Latchkey knows `aal1`, `aal2` and `aal3` and takes the first it knows.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 256))]
    pub acr_values: Option<String>,
    /// The most seconds since the user last authenticated that the caller accepts; an older
    /// session verifies a factor again. At most 2,147,483,647.
    #[serde(default, deserialize_with = "whole_seconds")]
    #[cfg_attr(feature = "openapi", schema(maximum = 2147483647))]
    pub max_age: Option<u64>,
    /// An action to approve on the enrolled phone (its text shown, its hash signed); the
    /// flow's `done` then carries an `approval` JWT. Always asks the phone, however fresh the
    /// session.
    #[serde(default)]
    pub action: Option<Action>,
}

/// One entry of the signed-in user's security timeline (`GET /v1/me/events`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SecurityEvent {
    /// The event's id; pass the last one seen as `before` for the next page.
    pub id: String,
    /// When (RFC 3339).
    pub at: String,
    /// What happened: `sign_in`, `step_up`, `refresh_reuse`, `device_enrolled`, … (the list is
    /// in docs/adaptive.md; new kinds may appear).
    pub kind: String,
    /// How it ended: `success`, `failure`, `locked`, `denied`, … (per kind).
    pub outcome: String,
    /// The client's IP address, when known.
    pub ip: Option<String>,
    /// The client's `User-Agent`, when known.
    pub user_agent: Option<String>,
    /// Facts about it that are safe to show the account's owner: ids of the session, device,
    /// factor or flow it concerns, the method or channel used, a risk decision's `reasons`.
    /// Never a secret, code or address.
    pub detail: serde_json::Map<String, serde_json::Value>,
    /// Where the address is, approximately, when the server has a GeoIP database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<EventPlace>,
}

/// An address's approximate place, from the server's GeoIP database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EventPlace {
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
    /// The city, in English.
    pub city: Option<String>,
}

/// `GET /v1/me/events`: newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SecurityEvents {
    /// This page.
    pub events: Vec<SecurityEvent>,
    /// Set when there may be older events: pass it as `before` to read them.
    pub next_before: Option<String>,
}

/// A number of seconds as JSON Schema's `integer` allows it: `300` or `300.0` (an integral
/// number however written), never a fraction or a negative.
pub(crate) fn whole_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Option::<serde_json::Number>::deserialize(d)?;
    let Some(n) = v else { return Ok(None) };
    if let Some(u) = n.as_u64() {
        return Ok(Some(u));
    }
    match n.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom("a whole number of seconds, not negative")),
    }
}

/// `POST /v1/introspect` (RFC 7662): what an authenticated backend learns of a token. An inactive
/// or unknown token is exactly `{"active":false}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Introspection {
    /// Whether the token is live: it verifies, has not expired, its session is live and its
    /// account active.
    pub active: bool,
    /// `access_token` or `refresh_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// The client the token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Expiry (Unix seconds): the access token's, or the session's for a refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued (Unix seconds): the access token's, or the session's last refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// The access token's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The assurance level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// The methods (RFC 8176).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// When the user authenticated (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The device key a bound token needs DPoP proofs by (RFC 9449 §6.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<IntrospectionConfirmation>,
    /// An access token's custom attribute claims (`[[policy.attributes]]` with `claim = true`).
    #[serde(flatten, default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub claims: std::collections::BTreeMap<String, serde_json::Value>,
}

/// The key a token is bound to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct IntrospectionConfirmation {
    /// JWK SHA-256 thumbprint.
    pub jkt: String,
}

/// `POST /v1/introspect` and `POST /v1/revoke`, form-encoded (RFC 7662 §2.1, RFC 7009 §2.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TokenForm {
    /// The token.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 4096))]
    pub token: String,
    /// `access_token` or `refresh_token` (a hint; both are looked at).
    #[serde(default)]
    pub token_type_hint: Option<String>,
    /// `client_secret_post`: the backend's id (or HTTP Basic).
    #[serde(default)]
    pub client_id: Option<String>,
    /// `client_secret_post`: the backend's secret (or HTTP Basic).
    #[serde(default)]
    pub client_secret: Option<String>,
}
