//! Devices: the keys and signed messages of a phone, push approvals, and managing devices.

use super::*;

/// A platform's attestation of the biometric key (`docs/devices.md`, "Attestation").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeviceAttestation {
    /// `android_key`: Android Key Attestation.
    pub format: String,
    /// The key's certificate chain, leaf first, each DER in Base64 or Base64url (Android:
    /// `KeyStore.getCertificateChain(alias)` of a key created with `setAttestationChallenge`
    /// set to the UTF-8 bytes of the step's nonce).
    pub certificates: Vec<String>,
    /// Which biometric the phone offers, for `amr`: `fpt`, `face` or `iris`. Attestation proves
    /// that a strong biometric guards the key, not which one; this is the app's word.
    pub biometric: String,
}

/// Which of a device's two keys signed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeviceKey {
    /// The possession key: needs the app PIN alongside.
    Possession,
    /// The biometric key: the OS released it after a biometric check.
    Biometric,
}

impl DeviceKey {
    /// The wire name (`possession`, `biometric`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKey::Possession => "possession",
            DeviceKey::Biometric => "biometric",
        }
    }
}

/// The exact message a device signs, shared by the server and the SDK. ASCII lines,
/// domain-separated by a version tag; never user data:
///
/// ```text
/// latchkey-device-v1
/// <purpose: enroll | sign_in>
/// <flow id>
/// <nonce>
/// <key: possession | biometric>
/// <device id>
/// ```
///
/// ```
/// use latchkey_proto::{DeviceKey, device_message};
/// assert_eq!(device_message("sign_in", "f", "n", DeviceKey::Biometric, "d"), "latchkey-device-v1\nsign_in\nf\nn\nbiometric\nd");
/// ```
pub fn device_message(purpose: &str, flow_id: &str, nonce: &str, key: DeviceKey, device_id: &str) -> String {
    format!("latchkey-device-v1\n{purpose}\n{flow_id}\n{nonce}\n{}\n{device_id}", key.as_str())
}

/// The exact text an enrolled device signs with its biometric key to answer a push approval
/// (`POST /v1/device/approvals/{id}`): the approval, the server's nonce, what is being approved
/// (`sign_in`, `new_device` or `recovery`), the number the user typed (empty for `deny` and
/// `report`: the line is there, with nothing on it), the
/// decision and the device. Nothing else is accepted as an answer (checklist PUSH-1, PUSH-2).
///
/// ```
/// use latchkey_proto::{ApprovalDecision, approval_message};
/// assert_eq!(
///     approval_message("a", "n", "sign_in", "42", ApprovalDecision::Approve, "d"),
///     "latchkey-approval-v1\na\nn\nsign_in\n42\napprove\nd"
/// );
/// ```
pub fn approval_message(
    approval_id: &str,
    nonce: &str,
    kind: &str,
    number: &str,
    decision: ApprovalDecision,
    device_id: &str,
) -> String {
    format!("latchkey-approval-v1\n{approval_id}\n{nonce}\n{kind}\n{number}\n{}\n{device_id}", decision.as_str())
}

/// What the user decided on their phone.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ApprovalDecision {
    /// It was me: with the number shown on the other screen.
    Approve,
    /// Not now: the sign-in ends.
    Deny,
    /// This wasn't me: the sign-in ends, push prompts stop for a while, the account is told.
    Report,
}

impl ApprovalDecision {
    /// The wire and message name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalDecision::Approve => "approve",
            ApprovalDecision::Deny => "deny",
            ApprovalDecision::Report => "report",
        }
    }
}

/// `GET /v1/device/approvals/{id}`: what the phone shows before the user decides.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApprovalRequest {
    /// The approval id (what a notification carries).
    pub id: String,
    /// Single-use, part of the signed answer.
    pub nonce: String,
    /// `sign_in` (a sign-in elsewhere), `new_device` (a new phone's first sign-in), `recovery`,
    /// or `action:<hash>` (an action to approve, see `action`).
    pub kind: String,
    /// The product asking (configuration `policy.product_name`).
    pub app: String,
    /// Where the sign-in comes from, as the server saw it.
    pub ip: Option<String>,
    /// The signing-in client's `User-Agent`.
    pub user_agent: Option<String>,
    /// When it was asked (RFC 3339).
    pub created_at: String,
    /// When it stops being accepted (RFC 3339).
    pub expires_at: String,
    /// For `kind` `action:<hash>`: the action to show. Show it only if the SHA-256 of its
    /// [`canonical_action`] is that hash (the SDK checks before it signs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

/// `GET /v1/device/approvals`: the account's approvals waiting for an answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApprovalList {
    /// At most one (one outstanding approval per account).
    pub approvals: Vec<ApprovalRequest>,
}

/// `POST /v1/device/approvals/{id}`: the user's decision, signed by the biometric key over
/// [`approval_message`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApprovalAnswer {
    /// Approve, deny or report.
    pub decision: ApprovalDecision,
    /// For `approve`: the number the user typed from the other screen.
    #[serde(default)]
    pub number: Option<String>,
    /// The biometric key's signature (DER or `r‖s`, Base64url).
    pub signature: String,
}

/// The answer to `POST /v1/device/approvals/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApprovalOutcome {
    /// `approved`, `denied` (a deny, or a wrong number) or `reported`.
    pub status: String,
}

/// One device in `GET /v1/me/devices`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeviceInfo {
    /// The device id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its platform.
    pub platform: String,
    /// Whether five wrong PINs blocked its PIN (sign in another way, then `PUT /v1/me/devices/{id}/pin`).
    pub pin_blocked: bool,
    /// What proves its biometric key needs a biometric (`android_key/tee`,
    /// `android_key/strongbox`), or null: then a biometric sign-in is possession only.
    #[serde(default)]
    pub biometric_evidence: Option<String>,
    /// Enrolled (RFC 3339).
    pub created_at: String,
    /// Last used to sign in (RFC 3339).
    pub last_used_at: Option<String>,
}

/// `GET /v1/me/devices`: the enrolled devices that are not revoked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeviceList {
    /// Oldest first.
    pub devices: Vec<DeviceInfo>,
    /// The clients remembered for skipping the second factor (browsers, apps), oldest first.
    #[serde(default)]
    pub remembered_clients: Vec<RememberedClient>,
}

/// `POST /v1/me/remembered-clients`: remember this client, from a fresh sign-in with a second
/// factor. The key is the client's own, non-exportable where the platform allows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RememberClientRequest {
    /// A P-256 public key: SPKI DER or X9.63 uncompressed, Base64url.
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub public_key: String,
    /// Its signature over [`remember_message`] (DER or `r‖s`, Base64url): proof the caller
    /// holds the key.
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub signature: String,
    /// What the user calls it ("Firefox on the work laptop"); 1–64 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub name: String,
}

/// A remembered client, as `GET /v1/me/devices` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RememberedClient {
    /// Its id: send it as `remembered_client` at sign-in.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Remembered at (RFC 3339).
    pub created_at: String,
    /// When it is forgotten, however often it is used (RFC 3339).
    pub expires_at: String,
    /// Last used to sign in (RFC 3339).
    pub last_used_at: Option<String>,
}

/// `POST /v1/app-integrity/challenge`: what the app asks its platform to vouch for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AppIntegrityChallenge {
    /// Base64url (web-safe, no padding, 75 characters): Play Integrity's `nonce` as it is.
    /// Works once.
    pub challenge: String,
    /// When it stops being accepted (RFC 3339).
    pub expires_at: String,
}

/// `POST /v1/app-integrity/apple/keys`: register an iOS app instance's App Attest key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AppAttestKeyRequest {
    /// The key id `DCAppAttestService.generateKey` returned (Base64 of 32 bytes).
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub key_id: String,
    /// The attestation object `attestKey` returned, Base64.
    #[cfg_attr(feature = "openapi", schema(max_length = 16384))]
    pub attestation: String,
    /// The challenge from `POST /v1/app-integrity/challenge` whose SHA-256 was `clientDataHash`.
    #[cfg_attr(feature = "openapi", schema(max_length = 128))]
    pub challenge: String,
}

/// A passkey, as `GET /v1/me/passkeys` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PasskeyInfo {
    /// Its id, for `PATCH` and `DELETE /v1/me/passkeys/{id}`.
    pub id: String,
    /// The name the user gave it (default: the authenticator's name).
    pub name: String,
    /// The authenticator's name, where its AAGUID is a well-known one ("iCloud Keychain",
    /// "Google Password Manager", …).
    pub authenticator: Option<String>,
    /// The authenticator model's AAGUID, when it said.
    pub aaguid: Option<String>,
    /// Its authenticator may copy it to the user's other devices (a synced passkey: `swk`).
    pub backup_eligible: bool,
    /// It is backed up now.
    pub backed_up: bool,
    /// Its attestation chains to an authenticator the server trusts now, and it is
    /// device-bound: it signs in at `aal3`.
    pub attested: bool,
    /// Registered at (RFC 3339).
    pub created_at: String,
    /// Last used to sign in (RFC 3339).
    pub last_used_at: Option<String>,
}

/// `GET /v1/me/passkeys`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PasskeyList {
    /// Oldest first.
    pub passkeys: Vec<PasskeyInfo>,
}

/// `PATCH /v1/me/passkeys/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RenamePasskeyRequest {
    /// The new name: 1–64 characters, no links or markup.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub name: String,
}

/// What a client signs to be remembered: its key, for this session.
///
/// ```
/// use latchkey_proto::remember_message;
/// assert_eq!(remember_message("s", "k"), "latchkey-remember-v1\nregister\ns\nk");
/// ```
pub fn remember_message(session_id: &str, public_key: &str) -> String {
    format!("latchkey-remember-v1\nregister\n{session_id}\n{public_key}")
}

/// What a remembered client signs at a sign-in's `remembered_client` step.
///
/// ```
/// use latchkey_proto::remembered_sign_in_message;
/// assert_eq!(remembered_sign_in_message("f", "n", "c"), "latchkey-remember-v1\nsign_in\nf\nn\nc");
/// ```
pub fn remembered_sign_in_message(flow_id: &str, nonce: &str, client_id: &str) -> String {
    format!("latchkey-remember-v1\nsign_in\n{flow_id}\n{nonce}\n{client_id}")
}

/// `PUT /v1/device/push-token`: where this device is notified (signed by the device).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PushRegistration {
    /// `fcm` (Firebase Cloud Messaging), `apns` (Apple Push Notification service), `webhook`
    /// (the app's own backend is told), or `none` (the device polls).
    pub provider: String,
    /// The FCM registration token, the APNs device token (hex), or the app's own identifier for
    /// the device. Absent for `none`.
    #[serde(default)]
    pub token: Option<String>,
}

/// What a push notification carries (FCM `data`, the APNs payload beside `aps`, the webhook's
/// `data`): never the details, which the device fetches with a signed request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PushData {
    /// `approval` (fetch `GET /v1/device/approvals/{approval_id}`), `recovery` (someone is
    /// recovering the account: offer "this wasn't me", `DELETE /v1/device/recovery`) or `notice`
    /// (something changed on the account; the text is in the notification).
    #[serde(rename = "type")]
    pub kind: String,
    /// For `approval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
}

/// `PUT /v1/me/devices/{id}/pin`: a new app PIN for a device (also unblocks a blocked PIN).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DevicePin {
    /// 6 to 12 digits, not an easy one.
    pub pin: String,
}
