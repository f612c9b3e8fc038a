//! Errors: the body of every error answer and its stable codes.

use super::*;

/// The error body of every non-2xx response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error: a stable code, a message, and the request id to quote to an operator.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorDetail {
    /// Stable snake_case code; see [`codes`].
    pub code: String,
    /// A human-readable message (may change; do not branch on it).
    pub message: String,
    /// The request id, also in the `x-request-id` header and the server's logs.
    pub request_id: String,
}

/// The stable error codes of the API.
pub mod codes {
    /// Every code, for documents and clients that list them.
    pub const ALL: &[&str] = &[
        INVALID_REQUEST,
        PAYLOAD_TOO_LARGE,
        USERNAME_EXISTS,
        SIGN_UP_DENIED,
        APP_INTEGRITY_REQUIRED,
        INVALID_PASSWORD,
        CODE_MISMATCH,
        EXPIRED_CODE,
        LIMIT_EXCEEDED,
        NOT_AUTHORIZED,
        FLOW_NOT_FOUND,
        FLOW_EXPIRED,
        FLOW_COMPLETED,
        STEP_MISMATCH,
        FLOW_CONTEXT_MISMATCH,
        INVALID_GRANT,
        INVALID_CLIENT,
        UNSUPPORTED_GRANT_TYPE,
        INVALID_DPOP_PROOF,
        UNAUTHENTICATED,
        INSUFFICIENT_USER_AUTHENTICATION,
        FORBIDDEN,
        MFA_REQUIRED,
        INVALID_ATTESTATION,
        INVALID_PIN,
        NOT_FOUND,
        NOT_IMPLEMENTED,
        METHOD_NOT_ALLOWED,
        REQUEST_TIMEOUT,
        UNAVAILABLE,
        INTERNAL,
    ];
    /// The request body or a field is malformed.
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// The request body is over the size limit.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// The username is already registered (only when the policy reveals it).
    pub const USERNAME_EXISTS: &str = "username_exists";
    /// The app's backend refused the sign-up (`before_sign_up` hook); the message is its own,
    /// written for the user (`403`).
    pub const SIGN_UP_DENIED: &str = "sign_up_denied";
    /// The policy requires proof that the request comes from the operator's genuine app
    /// (`[policy.app_integrity]`), and the request had none, or one that did not pass; the
    /// message says why (`403`). Get a new challenge and a new proof, then retry.
    pub const APP_INTEGRITY_REQUIRED: &str = "app_integrity_required";
    /// The password breaks the password policy; the message says why.
    pub const INVALID_PASSWORD: &str = "invalid_password";
    /// The code is wrong, already used or burned.
    pub const CODE_MISMATCH: &str = "code_mismatch";
    /// The code expired; ask for a new one.
    pub const EXPIRED_CODE: &str = "expired_code";
    /// Too many attempts or sends; try later (`Retry-After` says when, where known).
    pub const LIMIT_EXCEEDED: &str = "limit_exceeded";
    /// Username or password wrong (never says which).
    pub const NOT_AUTHORIZED: &str = "not_authorized";
    /// The flow does not exist.
    pub const FLOW_NOT_FOUND: &str = "flow_not_found";
    /// The flow expired; start a new one.
    pub const FLOW_EXPIRED: &str = "flow_expired";
    /// The flow already ended.
    pub const FLOW_COMPLETED: &str = "flow_completed";
    /// The answer names a step the flow is not waiting for.
    pub const STEP_MISMATCH: &str = "step_mismatch";
    /// The flow was started by another client.
    pub const FLOW_CONTEXT_MISMATCH: &str = "flow_context_mismatch";
    /// The refresh token is unknown, spent, expired or revoked (RFC 6749 name).
    pub const INVALID_GRANT: &str = "invalid_grant";
    /// `POST /v1/introspect` and `/v1/revoke`: the backend's client id and secret are missing or
    /// wrong (HTTP Basic or form fields).
    pub const INVALID_CLIENT: &str = "invalid_client";
    /// The grant type is not supported.
    pub const UNSUPPORTED_GRANT_TYPE: &str = "unsupported_grant_type";
    /// A device session's request came without a valid DPoP proof by the device's possession key
    /// (RFC 9449): missing, signed by another key, for another method or URL, too old, replayed.
    pub const INVALID_DPOP_PROOF: &str = "invalid_dpop_proof";
    /// No valid access token.
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    /// The session is too old or too weak for this action: step up (RFC 9470).
    pub const INSUFFICIENT_USER_AUTHENTICATION: &str = "insufficient_user_authentication";
    /// The caller may not do this.
    pub const FORBIDDEN: &str = "forbidden";
    /// The change would leave the account without the second factor its policy requires.
    pub const MFA_REQUIRED: &str = "mfa_required";
    /// A device attestation was sent and does not verify (the message says why).
    pub const INVALID_ATTESTATION: &str = "invalid_attestation";
    /// The app PIN does not meet the rules (in a step answer).
    pub const INVALID_PIN: &str = "invalid_pin";
    /// The resource does not exist.
    pub const NOT_FOUND: &str = "not_found";
    /// The feature is not available on this server yet.
    pub const NOT_IMPLEMENTED: &str = "not_implemented";
    /// The route exists, but not with this method (`405`, with an `Allow` header).
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// The request was not answered within the server's deadline (`408`).
    pub const REQUEST_TIMEOUT: &str = "request_timeout";
    /// The server could not decide (database or provider down); nothing was changed.
    pub const UNAVAILABLE: &str = "unavailable";
    /// An unexpected server error.
    pub const INTERNAL: &str = "internal";
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_error_code_is_listed_in_all() {
        let src = include_str!("error.rs");
        let module = &src[src.find("pub mod codes").unwrap_or(0)..src.find("#[cfg(test)]").unwrap_or(src.len())];
        // Every `pub const` of the module but `ALL` itself.
        assert_eq!(module.matches("pub const ").count() - 1, super::codes::ALL.len());
    }
}
