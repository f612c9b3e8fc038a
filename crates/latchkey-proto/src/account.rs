//! The signed-in account's factors: enrolling, listing, preferring; recovery codes.

use super::*;

/// `POST /v1/me/factors`: start enrolling a factor (an `enroll` flow).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollFactorRequest {
    /// `totp`, `sms`, `email`, `recovery_codes` (also `POST /v1/me/recovery-codes`, in one
    /// call) or `passkey`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `sms`: the phone (E.164) to verify; default the account's phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// For `email`: the address to verify; default the account's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// For `passkey`: the authenticator must prove its model by an attestation the server
    /// trusts (`[policy.passkeys] trusted_authenticators`) and be device-bound; such a
    /// passkey signs in at `aal3`. A security key, typically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested: Option<bool>,
}

/// `POST /v1/me/recovery-codes`: the new set, shown this once. Any earlier set stops working.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RecoveryCodes {
    /// Ten single-use codes of 120 bits each, `XXXX-XXXX-XXXX-XXXX-XXXX-XXXX`.
    pub codes: Vec<String>,
}

/// `PUT /v1/me/factors/preferred`: the method a sign-in lists first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PreferredMfa {
    /// An enrolled method (`totp`, `sms`, `email`).
    pub method: MfaMethod,
}

/// One factor in `GET /v1/me/factors`. Never carries secret material.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct FactorInfo {
    /// The factor id.
    pub id: String,
    /// `totp`, `sms`, `email` or `recovery_codes`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending` (not yet confirmed by a first code) or `active`.
    pub state: String,
    /// `sms` and `email`: the verified destination, masked.
    #[serde(default)]
    pub destination: Option<String>,
    /// `recovery_codes`: how many unused codes are left.
    #[serde(default)]
    pub remaining: Option<u32>,
    /// Whether sign-in lists this method first.
    #[serde(default)]
    pub preferred: bool,
    /// When it was added (RFC 3339).
    pub created_at: String,
    /// When it was last used to sign in (RFC 3339).
    pub last_used_at: Option<String>,
}

/// `GET /v1/me/factors`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct FactorList {
    /// The user's factors besides the password.
    pub factors: Vec<FactorInfo>,
}

/// `PUT /v1/me/password`: change the password, or add a first one to a passwordless account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The password now; required when the account has one. An account without one (a
    /// passwordless account adding its first) needs a sign-in at `aal2` from the last 10
    /// minutes instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
    /// The new password (8 to 256 characters, no composition rules, common passwords refused).
    pub new_password: String,
    /// Keep the account's other sessions (and remembered clients); by default they end.
    #[serde(default)]
    pub keep_other_sessions: bool,
}

/// The answer to `PUT /v1/me/password`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PasswordChanged {
    /// How many other sessions ended (0 with `keep_other_sessions`).
    pub other_sessions_ended: u32,
}

/// `GET /v1/me/export`: everything Latchkey keeps about the account that the user may see, as
/// one JSON document. Factors and devices are described, never their secrets or keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AccountExport {
    /// When it was made (RFC 3339).
    pub exported_at: String,
    /// When the account was created (RFC 3339).
    pub created_at: String,
    /// The profile, as `GET /v1/me` shows it (with the exporting session).
    pub profile: Me,
    /// The factors, as `GET /v1/me/factors` lists them.
    pub factors: FactorList,
    /// The devices and remembered clients, as `GET /v1/me/devices` lists them.
    pub devices: DeviceList,
    /// The live sessions, as `GET /v1/me/sessions` lists them.
    pub sessions: SessionList,
    /// Every security event of the account, newest first, as `GET /v1/me/events` shows them.
    pub events: Vec<SecurityEvent>,
}

/// `GET /admin/v1/users/{username}`: one account as the operator sees it. Factors and devices
/// are described, never their secrets or keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AdminUser {
    /// The user id.
    pub id: String,
    /// The username as registered.
    pub username: String,
    /// The email address, if any.
    pub email: Option<String>,
    /// Whether it was verified.
    pub email_verified: bool,
    /// The phone number, if any.
    pub phone: Option<String>,
    /// Whether it was verified.
    pub phone_verified: bool,
    /// `unconfirmed`, `active`, `locked` or `disabled`.
    pub status: String,
    /// A new password is required at the next sign-in.
    pub must_change_password: bool,
    /// `admin` or `read_only` for an admin account.
    pub admin_role: Option<String>,
    /// Profile: full name.
    pub name: Option<String>,
    /// Profile: BCP 47 language tag.
    pub locale: Option<String>,
    /// Profile: IANA time zone.
    pub zoneinfo: Option<String>,
    /// Profile: picture URL.
    pub picture: Option<String>,
    /// The custom attributes that are set (`[[policy.attributes]]`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub attributes: std::collections::BTreeMap<String, serde_json::Value>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
    /// The factors.
    pub factors: FactorList,
    /// The devices and remembered clients.
    pub devices: DeviceList,
    /// The live sessions (none is `current`).
    pub sessions: SessionList,
    /// The newest 50 security events, as the user's timeline shows them.
    pub recent_events: Vec<SecurityEvent>,
}
