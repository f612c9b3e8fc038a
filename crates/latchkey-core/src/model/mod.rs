//! The records the domain keeps: users, sessions, devices, factors, approvals, outbox messages,
//! audit events; the flow record and its states, half of the table in `flows/mod.rs`, have a
//! file of their own (`flow.rs`).

use crate::ids::{
    ApprovalId, DeviceId, EventId, FactorId, FlowId, MessageId, PasskeyId, RememberedClientId, SessionId, UserId,
};
use latchkey_proto::MfaMethod;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

mod flow;
pub use flow::{
    ActionToApprove, CodeChallenge, CustomChallenge, Flow, FlowKind, FlowState, NewDevice, PasskeyChallenge,
    PushChallenge, Recovery, StepUp,
};

/// An account's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// Signed up, identifier not yet confirmed.
    Unconfirmed,
    /// Can sign in.
    Active,
    /// Locked by policy.
    Locked,
    /// Disabled by an administrator.
    Disabled,
}

impl UserStatus {
    /// The wire/database name.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Unconfirmed => "unconfirmed",
            UserStatus::Active => "active",
            UserStatus::Locked => "locked",
            UserStatus::Disabled => "disabled",
        }
    }
    /// Parse the database name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "unconfirmed" => UserStatus::Unconfirmed,
            "active" => UserStatus::Active,
            "locked" => UserStatus::Locked,
            "disabled" => UserStatus::Disabled,
            _ => return None,
        })
    }
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Id (UUIDv7).
    pub id: UserId,
    /// The username as registered (NFKC).
    pub username: String,
    /// The canonical username: unique.
    pub username_canonical: String,
    /// Email address.
    pub email: Option<String>,
    /// Whether the email was verified by a code.
    pub email_verified: bool,
    /// Phone number (E.164).
    pub phone: Option<String>,
    /// Whether the phone was verified by a code.
    pub phone_verified: bool,
    /// Status.
    pub status: UserStatus,
    /// Argon2id PHC string of the password, if the account has one.
    pub password_hash: Option<String>,
    /// An administrator requires a new password at the next sign-in.
    pub must_change_password: bool,
    /// The second factor sign-in lists first.
    pub preferred_mfa: Option<MfaMethod>,
    /// When the phone number last changed or became an SMS factor: SMS is not trusted for a
    /// cooling-off period after it (a new number is a new authenticator).
    pub phone_changed_at: Option<OffsetDateTime>,
    /// When the email address last changed or became a factor (same rule, for recovery).
    pub email_changed_at: Option<OffsetDateTime>,
    /// What the user says about themselves (`PATCH /v1/me`).
    pub profile: Profile,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

/// The standard profile attributes a user edits themselves (OpenID Connect Core §5.1 names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Full name, as the user writes it.
    pub name: Option<String>,
    /// BCP 47 language tag (`en`, `de-CH`).
    pub locale: Option<String>,
    /// IANA time zone (`Europe/Berlin`).
    pub zoneinfo: Option<String>,
    /// An `https` URL of a picture.
    pub picture: Option<String>,
    /// The operator's custom attributes that are set (`[[policy.attributes]]`), by name.
    pub custom: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Who started a flow. The flow answers only that client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientContext {
    /// The client's IP address as seen by the server (or a trusted proxy).
    pub ip: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The request's proof of a genuine app (`Latchkey-App-Integrity`), checked once when the
    /// request arrived: `Err` says why it did not pass. Never stored.
    #[serde(skip)]
    pub app_integrity: Option<Result<(), String>>,
}

/// A session: one sign-in, one refresh-token family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Id (the `sid` claim).
    pub id: SessionId,
    /// The user.
    pub user_id: UserId,
    /// Assurance level (`aal1`…).
    pub acr: String,
    /// Methods (RFC 8176).
    pub amr: Vec<String>,
    /// When the user authenticated.
    pub auth_time: OffsetDateTime,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last refreshed.
    pub last_refresh_at: OffsetDateTime,
    /// Absolute end: no refresh after this.
    pub expires_at: OffsetDateTime,
    /// Revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
    /// Why it was revoked (`sign_out`, `refresh_reuse`, `password_reset`, …).
    pub revoke_reason: Option<String>,
    /// The client that created it.
    pub context: ClientContext,
    /// The device it was signed in with, if it was a device sign-in: revoking the device ends it.
    pub device_id: Option<DeviceId>,
    /// For a device session, the JWK thumbprint (RFC 7638) of the device's possession key: its
    /// tokens carry `cnf.jkt` and refreshing needs a DPoP proof by that key (RFC 9449).
    pub dpop_jkt: Option<String>,
    /// The flow that started it: "this wasn't me" in that sign-in's notice ends it.
    pub flow_id: Option<FlowId>,
    /// Set when a refresh came from another network or user agent than the session's
    /// (checklist SES-8): the next sensitive call needs a step-up, which clears it.
    pub step_up_required_at: Option<OffsetDateTime>,
}

/// What an account's sign-ins came from (`kind` `network`: an IPv4 /24 or IPv6 /48, with the
/// GeoIP place when the operator supplies a database; `agent`: a user agent's hash), for the
/// risk policy's "new network", "new country", "impossible travel" and "new device" signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The account.
    pub user_id: UserId,
    /// `network` or `agent`.
    pub kind: String,
    /// The network (`203.0.113.0/24`) or the agent's hash.
    pub value: String,
    /// The network's country (ISO 3166-1 alpha-2), from GeoIP.
    pub country: Option<String>,
    /// The network's approximate place, in millionths of a degree (latitude, longitude).
    pub position_e6: Option<(i64, i64)>,
    /// First seen.
    pub first_seen_at: OffsetDateTime,
    /// Last seen.
    pub last_seen_at: OffsetDateTime,
}

/// A device's push address, registered by the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushAddress {
    /// `fcm`, `apns` or `webhook`.
    pub provider: String,
    /// The device's token with that provider (FCM registration token, APNs device token, or
    /// whatever the app's own backend knows the device by).
    pub token: String,
}

/// A verified attestation of a device's biometric key (checklist DEV-4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BiometricEvidence {
    /// `android_key`.
    pub format: String,
    /// `tee` or `strongbox`.
    pub security_level: String,
    /// The RFC 8176 `amr` value of the biometric the app declared: `fpt`, `face` or `iris`.
    pub modality: String,
}

/// Where a push approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for a device's answer.
    Pending,
    /// Approved with the right number.
    Approved,
    /// Denied, or answered with a wrong number.
    Denied,
    /// "This wasn't me".
    Reported,
    /// Not answered in time (set when the next one is asked).
    Expired,
    /// Withdrawn: the sign-in switched to another method or asked again.
    Withdrawn,
}

impl ApprovalStatus {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Reported => "reported",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Withdrawn => "withdrawn",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => ApprovalStatus::Pending,
            "approved" => ApprovalStatus::Approved,
            "denied" => ApprovalStatus::Denied,
            "reported" => ApprovalStatus::Reported,
            "expired" => ApprovalStatus::Expired,
            "withdrawn" => ApprovalStatus::Withdrawn,
            _ => return None,
        })
    }
}

/// A push approval (DESIGN.md, "Push approval"): a sign-in elsewhere asks the account's enrolled
/// devices; one answers with its biometric key over the id, the nonce, the number and the
/// decision. At most one is pending per account; each is answered once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Id (what a notification carries).
    pub id: ApprovalId,
    /// Whose devices are asked.
    pub user_id: UserId,
    /// The waiting flow.
    pub flow_id: FlowId,
    /// `sign_in` or `new_device`.
    pub kind: String,
    /// The two digits shown on the signing-in screen.
    pub number: String,
    /// Single-use, in the signed answer.
    pub nonce: String,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// Asked.
    pub created_at: OffsetDateTime,
    /// Not answerable after this.
    pub expires_at: OffsetDateTime,
    /// Answered.
    pub decided_at: Option<OffsetDateTime>,
    /// The device that answered.
    pub device_id: Option<DeviceId>,
    /// The signing-in client, shown on the phone.
    pub context: ClientContext,
    /// For an action approval (`kind` `action:<hash>`): the action the phone shows.
    pub action: Option<latchkey_proto::Action>,
}

/// A remembered client: the public key of a browser or app the user chose to remember after a
/// sign-in with a second factor. Signing a sign-in's nonce with it stands in for the second
/// factor until it expires or is forgotten (checklist SES-9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RememberedClient {
    /// Id.
    pub id: RememberedClientId,
    /// Whose.
    pub user_id: UserId,
    /// The P-256 public key (65-byte X9.63 point).
    pub public_key: Vec<u8>,
    /// What the user calls it.
    pub name: String,
    /// Remembered at.
    pub created_at: OffsetDateTime,
    /// Forgotten at, however often it is used.
    pub expires_at: OffsetDateTime,
    /// Last used to sign in.
    pub last_used_at: Option<OffsetDateTime>,
    /// Forgotten early: when, and why.
    pub revoked_at: Option<OffsetDateTime>,
    /// Why it was forgotten.
    pub revoke_reason: Option<String>,
}

/// An enrolled device: two P-256 public keys and the app PIN's hash. Nothing secret to the device
/// is here; the PIN is checked by the server and counted per device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Id.
    pub id: DeviceId,
    /// Whose.
    pub user_id: UserId,
    /// Display name.
    pub name: String,
    /// Platform (`android`, `ios`, …).
    pub platform: String,
    /// The possession key's uncompressed point (65 bytes).
    pub possession_key: Vec<u8>,
    /// The biometric key's uncompressed point.
    pub biometric_key: Vec<u8>,
    /// What proves the biometric key needs a biometric for every use; without it a biometric
    /// sign-in is possession only (checklist DEV-4).
    pub biometric_evidence: Option<BiometricEvidence>,
    /// Where it is notified (push approvals, notices); none: it polls.
    pub push: Option<PushAddress>,
    /// Argon2id PHC string of the app PIN (peppered).
    pub pin_hash: String,
    /// Consecutive wrong PINs; at the limit the PIN is blocked.
    pub pin_failures: u32,
    /// Enrolled.
    pub created_at: OffsetDateTime,
    /// Last signed in with.
    pub last_used_at: Option<OffsetDateTime>,
    /// Revoked, if it was: its keys, PIN and sessions stop working.
    pub revoked_at: Option<OffsetDateTime>,
}

/// A second factor of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factor {
    /// Id.
    pub id: FactorId,
    /// Whose.
    pub user_id: UserId,
    /// `totp`, `sms`, `email` or `recovery_codes`.
    pub kind: String,
    /// `pending` until confirmed by a first code, then `active`.
    pub state: String,
    /// Secret material sealed with the data key (`Keys::seal`, associated data = the factor id).
    pub secret_sealed: Option<String>,
    /// TOTP: the last time step accepted (codes at or before it are refused).
    pub last_step: Option<i64>,
    /// Added.
    pub created_at: OffsetDateTime,
    /// Last used to sign in.
    pub last_used_at: Option<OffsetDateTime>,
}

/// A passkey: a WebAuthn credential registered to an account (`docs/passkeys.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passkey {
    /// Id.
    pub id: PasskeyId,
    /// Whose.
    pub user_id: UserId,
    /// The credential id, Base64url without padding; unique across accounts.
    pub credential_id: String,
    /// The name the user gave it.
    pub name: String,
    /// The authenticator model (AAGUID), when it said which.
    pub aaguid: Option<String>,
    /// webauthn-rs's credential record (public key, counter, flags), JSON.
    pub credential: String,
    /// The last signature counter seen (0: the authenticator keeps none).
    pub sign_count: u32,
    /// The authenticator may back it up (a synced passkey).
    pub backup_eligible: bool,
    /// It is backed up now.
    pub backed_up: bool,
    /// Registered.
    pub created_at: OffsetDateTime,
    /// Last used to sign in.
    pub last_used_at: Option<OffsetDateTime>,
}

/// An iOS app instance's App Attest key (`docs/attestation.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAttestKey {
    /// The key id: Base64 of the SHA-256 of the key, as the app holds it.
    pub key_id: String,
    /// The app it belongs to (`<team id>.<bundle id>`).
    pub app_id: String,
    /// The key's uncompressed P-256 point.
    pub public_key: Vec<u8>,
    /// The last assertion's counter (0 after the attestation).
    pub counter: u32,
    /// Registered.
    pub created_at: OffsetDateTime,
    /// Last used.
    pub last_used_at: Option<OffsetDateTime>,
}

/// Delivery state of an outbox message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Waiting to be sent (possibly after a failed attempt).
    Pending,
    /// Claimed by a worker until its lease ends.
    Sending,
    /// Delivered.
    Sent,
    /// Given up after the maximum number of attempts.
    Dead,
}

impl OutboxStatus {
    /// Database name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Sending => "sending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Dead => "dead",
        }
    }
    /// Parse the database name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => OutboxStatus::Pending,
            "sending" => OutboxStatus::Sending,
            "sent" => OutboxStatus::Sent,
            "dead" => OutboxStatus::Dead,
            _ => return None,
        })
    }
}

/// A message to deliver. The body is sealed with the data key (it holds codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Id.
    pub id: MessageId,
    /// `email` or `sms`.
    pub channel: String,
    /// Which sender delivers it: `smtp`, `sms_webhook` or `dev`.
    pub provider: String,
    /// Destination address or number.
    pub to: String,
    /// Subject (email).
    pub subject: String,
    /// The body, sealed (`Keys::seal` with the message id as associated data); `None` once delivered
    /// through a real provider.
    pub body_sealed: Option<String>,
    /// Status.
    pub status: OutboxStatus,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Not before.
    pub next_attempt_at: OffsetDateTime,
    /// The last delivery error (never containing the body).
    pub last_error: Option<String>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Delivered.
    pub sent_at: Option<OffsetDateTime>,
}

/// An event webhook endpoint made through the admin API, as stored (configured ones live in the
/// configuration only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// `ep_…`.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The events it subscribes to.
    pub events: Vec<String>,
    /// The `whsec_…` signing secret, sealed (`Keys::seal` with the id as associated data).
    pub secret_sealed: String,
    /// Made.
    pub created_at: OffsetDateTime,
}

/// An audit event. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Id.
    pub id: EventId,
    /// When.
    pub at: OffsetDateTime,
    /// Whose account, if known.
    pub user_id: Option<UserId>,
    /// What (`sign_in`, `refresh_reuse`, …).
    pub kind: String,
    /// `success`, `failure`, `denied`, …
    pub outcome: String,
    /// Client IP.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Extra facts (flow id, session id, reason), never secrets.
    pub detail: serde_json::Value,
}

/// Lockout rules for one kind of failure (passwords, codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutPolicy {
    /// Consecutive failures allowed before delays start.
    pub free_attempts: u32,
    /// The first delay, doubled for each further failure.
    pub base_delay_secs: u64,
    /// The longest delay.
    pub max_delay_secs: u64,
    /// After this many consecutive failures no attempt is evaluated until a reset.
    pub hard_cap: u32,
    /// A counter below `hard_cap` with no failure for this long is forgotten (and its row
    /// purged), so counters for names nobody uses do not pile up; one at the cap is kept until a
    /// reset (default 30 days).
    #[serde(default = "default_forget_after_secs")]
    pub forget_after_secs: u64,
}

fn default_forget_after_secs() -> u64 {
    30 * 24 * 3600
}

/// The answer to "may one more attempt be evaluated?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Yes; this is the n-th consecutive attempt (counted as a failure until it succeeds).
    Allowed(u32),
    /// No, until this time (`None`: until reset).
    Locked(Option<OffsetDateTime>),
}

/// An account's failure counter an attempt is also counted against (`Store::reserve_attempt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountCounter {
    /// The counter's key (the account's canonical username).
    pub key: String,
    /// Its kind (`otp`, `password`).
    pub kind: String,
    /// The time of the attempt.
    pub now: OffsetDateTime,
    /// The counter's lockout rules.
    pub policy: LockoutPolicy,
}

/// What `Store::reserve_attempt` reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptReservation {
    /// The flow's attempt count after this one, or `None` when it had none left.
    pub attempts: Option<u32>,
    /// The account counter's answer; `None` when no counter was given or the flow refused first.
    pub account: Option<Reservation>,
}

impl AttemptReservation {
    /// Whether the answer may be evaluated: the flow had an attempt left and the account's
    /// counter, when one was given, is not locked.
    pub fn granted(&self) -> bool {
        self.attempts.is_some() && !matches!(self.account, Some(Reservation::Locked(_)))
    }
}

impl LockoutPolicy {
    /// When a counter that has just reached `failures` may be forgotten (`None`: at the cap, kept
    /// until a reset).
    pub fn forget_at(&self, failures: u32, now: OffsetDateTime) -> Option<OffsetDateTime> {
        (failures < self.hard_cap)
            .then(|| now + time::Duration::seconds(i64::try_from(self.forget_after_secs).unwrap_or(i64::MAX)))
    }

    /// The delay imposed after `failures` consecutive failures.
    pub fn delay_after(&self, failures: u32) -> Option<time::Duration> {
        if failures < self.free_attempts {
            return None;
        }
        let exp = (failures - self.free_attempts).min(30);
        let secs = self.base_delay_secs.saturating_mul(1u64 << exp).min(self.max_delay_secs);
        Some(time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX)))
    }
}

/// One saved recovery code: only its peppered MAC is kept (120-bit codes, so a keyed hash is
/// enough, NIST SP 800-63B-4 §3.1.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryCode {
    /// Whose.
    pub user_id: UserId,
    /// HMAC-SHA-256 of the normalised code under the pepper.
    pub mac: String,
    /// Generated.
    pub created_at: OffsetDateTime,
    /// Used, if it was (then never accepted again).
    pub used_at: Option<OffsetDateTime>,
}
