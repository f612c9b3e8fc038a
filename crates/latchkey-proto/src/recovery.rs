//! Account recovery: starting it, and the one-tap "this wasn't me" that cancels it.

use super::*;

/// `POST /v1/recovery`: start recovering an account (docs/recovery.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecoveryRequest {
    /// The username of the account to recover.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub username: String,
    /// Where the first code should go: `email` or `sms`. Without it, the verified email when the
    /// account has one, else the verified phone. The step is this channel's code step whether or
    /// not the account can receive it there (a code is sent only when it can).
    #[serde(default)]
    pub channel: Option<Channel>,
}

/// `POST /v1/recovery/cancel`: the one-tap "this wasn't me" from a recovery notice.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecoveryCancelRequest {
    /// The token from the notice (single-use; it expires with the recovery).
    pub token: String,
}

/// The answer to a "this wasn't me" token (`POST /v1/recovery/cancel`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UndoOutcome {
    /// `recovery_cancelled` (a waiting recovery ended), `account_locked` (every session ended;
    /// the account is held until it is recovered) or `device_removed`.
    pub outcome: String,
}

/// The answer to a recovery cancel: how many waiting recoveries were cancelled.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RecoveryCancelled {
    /// Recoveries of the account that were waiting and are now cancelled.
    pub cancelled: u32,
}
