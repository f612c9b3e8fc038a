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
    /// Verify a compact JWT and return its claims.
    fn verify(&self, token: &str) -> Result<AccessClaims, TokenError>;
}
