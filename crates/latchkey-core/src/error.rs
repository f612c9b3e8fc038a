//! The domain's error: every way a request can fail, each with a stable wire code.
//! A wrong answer to a flow step is *not* here: it is a value in the flow answer.

use crate::factors::password::PasswordRejection;
use crate::store::StoreError;
use latchkey_proto::codes;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Malformed input; nothing changed.
    #[error("{0}")]
    InvalidRequest(String),
    /// A device attestation was sent and does not verify; nothing changed.
    #[error("{0}")]
    InvalidAttestation(String),
    /// The request body is larger than the server accepts (64 KiB).
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// Sign-up with a taken username (only when the policy reveals it).
    #[error("an account with this username already exists")]
    UsernameExists,
    /// The app's backend (`before_sign_up`) refused the sign-up; the message is its own, for the
    /// user.
    #[error("{0}")]
    SignUpDenied(String),
    /// The policy requires a genuine app's proof for this request, and it had none or a bad one.
    #[error("{0}")]
    AppIntegrityRequired(String),
    /// The password breaks the policy.
    #[error("{0}")]
    InvalidPassword(PasswordRejection),
    /// Wrong username or password (never says which).
    #[error("incorrect username or password")]
    NotAuthorized,
    /// Too many attempts or sends; trying again sooner than `retry_after_secs` is refused too
    /// (the HTTP answer's `Retry-After`).
    #[error("attempt limit exceeded; try again later")]
    LimitExceeded {
        /// Seconds until an attempt may succeed (at least 1).
        retry_after_secs: u64,
        /// Which limit, for operators (a metric label; never on the wire): `flow_sends`,
        /// `send_rate`, `sms_daily`, `password_lockout`, `push_rate`, `push_paused`,
        /// `push_outstanding`, `push_denied`.
        limit: &'static str,
    },
    /// No such flow.
    #[error("flow not found")]
    FlowNotFound,
    /// The flow expired.
    #[error("flow expired; start again")]
    FlowExpired,
    /// The code expired, and its flow with it; start again for a new code.
    #[error("the code expired; start again for a new one")]
    ExpiredCode,
    /// The flow already ended.
    #[error("flow already completed")]
    FlowCompleted,
    /// The answer is for another step.
    #[error("this flow is waiting for `{expected}`")]
    StepMismatch {
        /// The step the flow waits for.
        expected: &'static str,
    },
    /// Another client started this flow.
    #[error("this flow belongs to another client")]
    ContextMismatch,
    /// Refresh token unknown, spent, expired or revoked.
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidGrant,
    /// Grant type other than `refresh_token`.
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    /// A DPoP proof was needed and is missing or wrong (RFC 9449). `resource`: on a resource
    /// request (401) rather than at the token endpoint (400).
    #[error("invalid DPoP proof: {reason}")]
    InvalidDpopProof {
        /// What was wrong, for the developer.
        reason: &'static str,
        /// A resource request rather than a token request.
        resource: bool,
    },
    /// A backend's client authentication is missing or wrong (RFC 6749 §5.2, RFC 7662 §2.1).
    #[error("the backend's client id and secret are missing or wrong")]
    InvalidClient,
    /// Missing or invalid access token, or its session was revoked.
    #[error("a valid access token is required")]
    Unauthenticated,
    /// The session is too old or too weak for this action (RFC 9470): sign in again (step up).
    #[error("this action needs a recent sign-in at {acr} or above")]
    InsufficientAuthentication {
        /// The assurance level required.
        acr: &'static str,
        /// The maximum age of the authentication, in seconds.
        max_age: u64,
    },
    /// Not allowed.
    #[error("forbidden")]
    Forbidden,
    /// The change would leave the account without the second factor its policy requires.
    #[error("{0}")]
    MfaRequired(&'static str),
    /// No such resource.
    #[error("not found")]
    NotFound,
    /// The request was not answered within the server's deadline; it may not have taken effect.
    #[error("the request took too long and was stopped; it may be retried")]
    RequestTimeout,
    /// The route exists, but not with this method.
    #[error("this route does not accept this method; see the Allow header")]
    MethodNotAllowed,
    /// Not available in this version.
    #[error("{0}")]
    NotImplemented(&'static str),
    /// The database or a dependency failed; nothing was changed (fail closed).
    #[error("service unavailable")]
    Unavailable(String),
    /// A bug.
    #[error("internal error")]
    Internal(String),
}

impl AuthError {
    /// The stable wire code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::InvalidRequest(_) => codes::INVALID_REQUEST,
            AuthError::InvalidAttestation(_) => codes::INVALID_ATTESTATION,
            AuthError::PayloadTooLarge => codes::PAYLOAD_TOO_LARGE,
            AuthError::UsernameExists => codes::USERNAME_EXISTS,
            AuthError::SignUpDenied(_) => codes::SIGN_UP_DENIED,
            AuthError::AppIntegrityRequired(_) => codes::APP_INTEGRITY_REQUIRED,
            AuthError::InvalidPassword(_) => codes::INVALID_PASSWORD,
            AuthError::NotAuthorized => codes::NOT_AUTHORIZED,
            AuthError::LimitExceeded { .. } => codes::LIMIT_EXCEEDED,
            AuthError::FlowNotFound => codes::FLOW_NOT_FOUND,
            AuthError::FlowExpired => codes::FLOW_EXPIRED,
            AuthError::ExpiredCode => codes::EXPIRED_CODE,
            AuthError::FlowCompleted => codes::FLOW_COMPLETED,
            AuthError::StepMismatch { .. } => codes::STEP_MISMATCH,
            AuthError::ContextMismatch => codes::FLOW_CONTEXT_MISMATCH,
            AuthError::InvalidGrant => codes::INVALID_GRANT,
            AuthError::InvalidClient => codes::INVALID_CLIENT,
            AuthError::UnsupportedGrantType => codes::UNSUPPORTED_GRANT_TYPE,
            AuthError::InvalidDpopProof { .. } => codes::INVALID_DPOP_PROOF,
            AuthError::Unauthenticated => codes::UNAUTHENTICATED,
            AuthError::InsufficientAuthentication { .. } => codes::INSUFFICIENT_USER_AUTHENTICATION,
            AuthError::Forbidden => codes::FORBIDDEN,
            AuthError::MfaRequired(_) => codes::MFA_REQUIRED,
            AuthError::NotFound => codes::NOT_FOUND,
            AuthError::MethodNotAllowed => codes::METHOD_NOT_ALLOWED,
            AuthError::RequestTimeout => codes::REQUEST_TIMEOUT,
            AuthError::NotImplemented(_) => codes::NOT_IMPLEMENTED,
            AuthError::Unavailable(_) => codes::UNAVAILABLE,
            AuthError::Internal(_) => codes::INTERNAL,
        }
    }
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt(m) => AuthError::Internal(m),
            other => AuthError::Unavailable(other.to_string()),
        }
    }
}

impl From<crate::factors::password::HashError> for AuthError {
    fn from(e: crate::factors::password::HashError) -> Self {
        AuthError::Internal(e.to_string())
    }
}

impl From<crate::crypto::CryptoError> for AuthError {
    fn from(e: crate::crypto::CryptoError) -> Self {
        AuthError::Internal(e.to_string())
    }
}

impl From<crate::tokens::TokenError> for AuthError {
    fn from(e: crate::tokens::TokenError) -> Self {
        AuthError::Internal(e.to_string())
    }
}

/// Seconds from `now` until `then`, at least 1: a `Retry-After` value.
pub fn retry_after(now: time::OffsetDateTime, then: time::OffsetDateTime) -> u64 {
    u64::try_from((then - now).whole_seconds()).unwrap_or(0).max(1)
}
