//! Access-token claims and the signer the server provides (ES256 JWTs with a `kid`).

use serde::{Deserialize, Serialize};

/// Claims of an access token (RFC 9068, RFC 8176, RFC 9470).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The session id.
    pub sid: String,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Unique token id.
    pub jti: String,
    /// The client the token was issued to (RFC 9068 requires it).
    pub client_id: String,
    /// Assurance level: `aal1`, `aal2`, `aal3`.
    pub acr: String,
    /// Authentication methods (RFC 8176).
    pub amr: Vec<String>,
    /// When the user authenticated (Unix seconds).
    pub auth_time: i64,
    /// Confirmation (RFC 9449 §6): the device key the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// The account's custom attributes declared as claims (`[[policy.attributes]]`); their
    /// names never collide with the claims above (configuration refuses them).
    #[serde(flatten, default)]
    pub custom: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Claims of an action approval (`typ: approval+jwt`): who approved which action in which
/// session, at what level, when. Signed with the access tokens' key, so the JWKS verifies it; its
/// type keeps it from ever passing as an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalClaims {
    /// Issuer.
    pub iss: String,
    /// Audience (the access tokens' audience).
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The session id.
    pub sid: String,
    /// Issued at (Unix seconds): when the phone's approval was accepted.
    pub iat: i64,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Unique id: a backend executes an action once per approval.
    pub jti: String,
    /// `base64url(SHA-256(canonical_action))` of the approved action.
    pub action_hash: String,
    /// The action's `type`.
    pub action_type: String,
    /// The session's level after the approval.
    pub acr: String,
    /// Its methods (RFC 8176), `hwk` among them: the phone's key signed.
    pub amr: Vec<String>,
    /// When the user authenticated (Unix seconds): the approval.
    pub auth_time: i64,
}

/// The `cnf` claim of a DPoP-bound access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// JWK SHA-256 thumbprint of the key every request must carry a DPoP proof by.
    pub jkt: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Malformed, wrong algorithm or type, bad signature, wrong issuer or audience.
    #[error("invalid token")]
    Invalid,
    /// Expired.
    #[error("expired token")]
    Expired,
    /// The signing key could not be used.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Signs and verifies access tokens. Verification checks signature, `alg`, `typ`, `kid`, `iss`
/// and `aud`; expiry is checked by the caller against the injected clock.
pub trait AccessTokenSigner: Send + Sync + 'static {
    /// Sign claims into a compact JWT.
    fn sign(&self, claims: &AccessClaims) -> Result<String, TokenError>;
    /// Sign an action approval (`typ: approval+jwt`) with the same key.
    fn sign_approval(&self, claims: &ApprovalClaims) -> Result<String, TokenError>;
    /// Verify a compact JWT and return its claims.
    fn verify(&self, token: &str) -> Result<AccessClaims, TokenError>;
}
