//! The records the domain keeps: users, flows, sessions, outbox messages, audit events.

use crate::ids::{ApprovalId, DeviceId, EventId, FactorId, FlowId, MessageId, SessionId, UserId};
use latchkey_proto::{Channel, DenialReason, MfaMethod};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

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
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

/// What a flow is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowKind {
    /// Creating an account.
    SignUp,
    /// Signing in.
    SignIn,
    /// Resetting a forgotten password.
    Recovery,
    /// Adding a factor from a session.
    Enroll,
}

impl FlowKind {
    /// The database name.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowKind::SignUp => "sign_up",
            FlowKind::SignIn => "sign_in",
            FlowKind::Recovery => "recovery",
            FlowKind::Enroll => "enroll",
        }
    }
}

/// A one-time code sent to the user. Only its peppered MAC is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeChallenge {
    /// MAC of the code, keyed by the pepper and bound to the flow.
    pub mac: String,
    /// Where it went.
    pub channel: Channel,
    /// The masked destination, for the answer.
    pub destination: String,
    /// When it stops being accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// What a flow waits for. Every state names what it expects next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum FlowState {
    /// Waiting for the sign-up confirmation code. `sign_in_after` is set when a password was
    /// verified in this flow, so confirming completes a sign-in.
    AwaitingConfirmation {
        /// The code.
        code: CodeChallenge,
        /// Confirming completes a sign-in with these methods.
        sign_in_after: bool,
        /// A passwordless sign-up: confirming (the SMS code) leads to `enroll_device` for the
        /// account's first device, which completes the sign-up with a session.
        #[serde(default)]
        then_enroll_device: bool,
    },
    /// Waiting for a new password (an administrator required it); the old one was verified,
    /// with `amr` the methods verified so far in this flow. In a recovery, the proofs were
    /// given and the password completes it (no session).
    AwaitingNewPassword {
        /// Methods verified so far (RFC 8176).
        #[serde(default)]
        amr: Vec<String>,
        /// Set in a recovery flow.
        #[serde(default)]
        recovery: Option<Recovery>,
    },
    /// An enrolment: waiting for the first code from the authenticator app.
    AwaitingTotpSetup {
        /// The pending factor.
        factor_id: FactorId,
        /// The label in the authenticator app (the username).
        account: String,
        /// The secret, sealed with the data key (shown until the enrolment is confirmed).
        secret_sealed: String,
    },
    /// A sign-in whose password was verified, waiting for a second factor: `method` is the one
    /// asked for (`None`: the user picks one, `select_mfa`).
    AwaitingMfa {
        /// The method asked for now.
        method: Option<MfaMethod>,
        /// The methods the account can use, preferred first.
        methods: Vec<MfaMethod>,
        /// For `sms` and `email`: the code sent.
        code: Option<CodeChallenge>,
        /// After the second factor, the account must set a new password.
        then_new_password: bool,
        /// A passwordless first sign-in on a new device: SMS first, then a second proof, then
        /// `enroll_device` (SMS proves a number, never a device).
        #[serde(default)]
        new_device: Option<NewDevice>,
        /// For `push_approval`: the approval the account's devices were asked.
        #[serde(default)]
        push: Option<PushChallenge>,
        /// A recovery: its first proof (a code to a channel), then a second, independent one.
        #[serde(default)]
        recovery: Option<Recovery>,
    },
    /// A recovery with one proof, waiting out the delay the owner can veto (`recovery_wait`).
    AwaitingRecoveryWait {
        /// When it may continue.
        #[serde(with = "time::serde::rfc3339")]
        ready_at: OffsetDateTime,
        /// Where it stands.
        recovery: Recovery,
        /// MAC of the cancel token sent in the notices (the token is single-use: a cancel ends
        /// the flow).
        cancel_mac: String,
    },
    /// Waiting for the code sent to a phone or address being added as a factor. The account's
    /// current value stays authoritative until this code is right (checklist LIFE-5). In a
    /// sign-in flow (required MFA set up by SMS) a right code completes the sign-in.
    AwaitingVerification {
        /// `sms` or `email`.
        channel: Channel,
        /// The phone (E.164) or address being verified.
        value: String,
        /// The code sent to it.
        code: CodeChallenge,
    },
    /// An enrolment showing a new set of recovery codes, waiting for the app to confirm the user
    /// saved them; only then does the set replace the old one.
    AwaitingRecoveryCodesSaved {
        /// The codes (a JSON list), sealed with the data key, the flow id as associated data.
        codes_sealed: String,
    },
    /// An enrolment waiting for the device's keys, their proofs and the app PIN. In a sign-up or
    /// sign-in flow it completes with a session bound to the new device.
    AwaitingDeviceEnrollment {
        /// Methods verified earlier in this flow (sign-up and new-device sign-in).
        #[serde(default)]
        amr: Vec<String>,
        /// Set in a recovery flow: the enrolment completes it.
        #[serde(default)]
        recovery: Option<Recovery>,
        /// The id the device gets (shown to the app, part of the signed message).
        device_id: DeviceId,
        /// Single-use nonce in the signed message.
        nonce: String,
    },
    /// Waiting for a fresh biometric key for an enrolled device, signed over the nonce.
    AwaitingBiometricKey {
        /// The device.
        device_id: DeviceId,
        /// Single-use nonce in the signed message.
        nonce: String,
    },
    /// A device sign-in waiting for a signature over the nonce. `device_id` is `None` for an
    /// unknown or revoked device, so the answer looks the same and no signature verifies.
    AwaitingDeviceSignature {
        /// The device.
        device_id: Option<DeviceId>,
        /// Single-use nonce in the signed message.
        nonce: String,
    },
    /// Waiting for the reset code and a new password. `code` is `None` when the username is
    /// unknown, so the answer looks the same and every code is refused.
    AwaitingReset {
        /// The code, if one was sent.
        code: Option<CodeChallenge>,
    },
    /// Finished successfully.
    Completed {
        /// The session created, for sign-in flows.
        session_id: Option<SessionId>,
    },
    /// Finished without success.
    Denied {
        /// Why.
        reason: DenialReason,
    },
}

impl FlowState {
    /// The wire name of the step this state waits for (`done`/`denied` when it ended).
    pub fn step_name(&self) -> &'static str {
        match self {
            FlowState::AwaitingConfirmation { .. } => "confirm_sign_up",
            FlowState::AwaitingNewPassword { .. } => "new_password",
            FlowState::AwaitingTotpSetup { .. } => "setup_totp",
            FlowState::AwaitingMfa { method, .. } => match method {
                None => "select_mfa",
                Some(MfaMethod::Sms) => "sms_code",
                Some(MfaMethod::Email) => "email_code",
                Some(MfaMethod::RecoveryCode) => "recovery_code",
                Some(MfaMethod::PushApproval) => "push_approval",
                Some(_) => "totp_code",
            },
            FlowState::AwaitingVerification { .. } => "verify_code",
            FlowState::AwaitingRecoveryWait { .. } => "recovery_wait",
            FlowState::AwaitingRecoveryCodesSaved { .. } => "save_recovery_codes",
            FlowState::AwaitingDeviceEnrollment { .. } => "enroll_device",
            FlowState::AwaitingDeviceSignature { .. } => "device_signature",
            FlowState::AwaitingBiometricKey { .. } => "rekey_biometric",
            FlowState::AwaitingReset { .. } => "reset_password",
            FlowState::Completed { .. } => "done",
            FlowState::Denied { .. } => "denied",
        }
    }

    /// Whether the flow has ended.
    pub fn is_terminal(&self) -> bool {
        matches!(self, FlowState::Completed { .. } | FlowState::Denied { .. })
    }
}

/// A push approval a sign-in waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushChallenge {
    /// The approval.
    pub approval_id: ApprovalId,
    /// The number shown on the signing-in screen.
    pub number: String,
    /// When it stops being answerable.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Where a passwordless new-device sign-in stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDevice {
    /// Methods verified so far (`sms`, then the second proof).
    pub verified: Vec<String>,
    /// The second proofs this account can give, fixed when the flow started.
    pub second_proofs: Vec<MfaMethod>,
}

/// Where a recovery stands (DESIGN.md: every way back in needs two independent proofs, or a
/// delay the owner can veto).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// Methods verified so far (RFC 8176 values: `email`, `sms`, `otp`, `hwk`).
    pub verified: Vec<String>,
    /// The channel of the first proof.
    pub first: Channel,
    /// The second proofs this account can give, fixed at the first proof.
    pub second_proofs: Vec<MfaMethod>,
    /// The new password given with the first proof (`forgot-password`), as an Argon2id hash:
    /// set only when the recovery completes.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// It went through `recovery_wait` (one proof and the delay), not two proofs.
    #[serde(default)]
    pub waited: bool,
}

/// Who started a flow. The flow answers only that client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientContext {
    /// The client's IP address as seen by the server (or a trusted proxy).
    pub ip: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

/// A flow record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// Id.
    pub id: FlowId,
    /// Kind.
    pub kind: FlowKind,
    /// The user, when known (never revealed to the client).
    pub user_id: Option<UserId>,
    /// What the flow waits for.
    pub state: FlowState,
    /// Answers evaluated in this flow (wrong ones count; never reset by a resend).
    pub attempts: u32,
    /// Codes sent in this flow.
    pub sends: u32,
    /// Optimistic-concurrency version: every transition is a compare-and-swap on it.
    pub version: i64,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Expires.
    pub expires_at: OffsetDateTime,
    /// The client that started it.
    pub context: ClientContext,
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
