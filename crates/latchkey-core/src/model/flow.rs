//! The flow record and its states: what each flow waits for, as stored (JSON in the flow row).
//! `FlowState` is half of the table in `flows/mod.rs`; the other half is the app's answer. The
//! engine that moves a flow from state to state is `crate::flow`.

use super::ClientContext;
use crate::ids::{ApprovalId, DeviceId, FactorId, FlowId, RememberedClientId, SessionId, UserId};
use latchkey_proto::{Channel, DenialReason, MfaMethod};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

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
    /// Raising a session's assurance in place (RFC 9470).
    StepUp,
}

impl FlowKind {
    /// The database name.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowKind::SignUp => "sign_up",
            FlowKind::SignIn => "sign_in",
            FlowKind::Recovery => "recovery",
            FlowKind::Enroll => "enroll",
            FlowKind::StepUp => "step_up",
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
// A flow's state is read, moved once and stored: one per request, so its size does not matter
// (the larger challenges are boxed already).
#[allow(clippy::large_enum_variant)]
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
        /// An operator's invitation (`POST /admin/v1/users`): confirming (the code in the
        /// invitation) leads to `new_password`, which completes the sign-up with a session.
        #[serde(default)]
        invited: bool,
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
        /// A step-up: the session the verified factor raises, instead of a new session.
        #[serde(default)]
        step_up: Option<StepUp>,
        /// For `custom_challenge`: the challenge the hook made.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        custom: Option<Box<CustomChallenge>>,
        /// For `passkey`: the assertion asked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passkey: Option<Box<PasskeyChallenge>>,
    },
    /// An enrolment: waiting for the new passkey (`passkey`, a creation ceremony).
    AwaitingPasskeyRegistration {
        /// The options shown and the ceremony's state.
        challenge: Box<PasskeyChallenge>,
    },
    /// A passkey sign-in: waiting for an assertion by any of the relying party's discoverable
    /// credentials (`passkey`); the user is whoever's the credential is.
    AwaitingPasskeySignIn {
        /// The options shown and the ceremony's state.
        challenge: Box<PasskeyChallenge>,
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
        /// A step-up of the session this device signed in: it is raised instead of a new one.
        #[serde(default)]
        step_up: Option<StepUp>,
    },
    /// A password sign-in that named a remembered client: its signature over the nonce stands in
    /// for the second factor.
    AwaitingRememberedClient {
        /// The client.
        client_id: RememberedClientId,
        /// Single-use nonce in the signed message.
        nonce: String,
        /// After it, the account must set a new password.
        then_new_password: bool,
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
                Some(MfaMethod::CustomChallenge) => "custom_challenge",
                Some(MfaMethod::Passkey) => "passkey",
                Some(_) => "totp_code",
            },
            FlowState::AwaitingPasskeyRegistration { .. } | FlowState::AwaitingPasskeySignIn { .. } => "passkey",
            FlowState::AwaitingVerification { .. } => "verify_code",
            FlowState::AwaitingRecoveryWait { .. } => "recovery_wait",
            FlowState::AwaitingRecoveryCodesSaved { .. } => "save_recovery_codes",
            FlowState::AwaitingDeviceEnrollment { .. } => "enroll_device",
            FlowState::AwaitingDeviceSignature { .. } => "device_signature",
            FlowState::AwaitingRememberedClient { .. } => "remembered_client",
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

/// A challenge the `custom_challenge` hook made for this flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomChallenge {
    /// Shown to the app.
    pub parameters: serde_json::Value,
    /// What the hook keeps to verify the answer, sealed with the data key (the flow id as
    /// associated data): never shown to the app.
    pub private_sealed: String,
    /// When it stops being accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A WebAuthn ceremony a flow waits for: the options the app passes to the platform, and
/// webauthn-rs's state for checking the answer (the challenge, and for an assertion the public
/// keys allowed). Neither is secret; the challenge is single-use because the flow moves once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyChallenge {
    /// `create` (registration) or `get` (assertion).
    pub ceremony: String,
    /// `PublicKeyCredentialCreationOptions` or `…RequestOptions`, JSON (byte fields Base64url).
    pub options: serde_json::Value,
    /// webauthn-rs's ceremony state, JSON.
    pub state: serde_json::Value,
    /// A registration that needs a trusted attestation, or an assertion that only the keys
    /// giving `aal3` may answer.
    #[serde(default)]
    pub attested: bool,
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

/// The session a `step_up` flow raises (RFC 9470), the level it was asked for, and the action
/// the phone is to approve, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUp {
    /// The session; its tokens are reissued, never a second session.
    pub session_id: SessionId,
    /// The `acr` asked for (`aal1` or `aal2`).
    pub acr: String,
    /// An action to approve: the approval's kind binds its hash, the `done` carries its JWT.
    #[serde(default)]
    pub action: Option<Box<ActionToApprove>>,
}

/// An action a step-up asks the phone to approve, with the hash that binds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionToApprove {
    /// The action, as the app sent it.
    pub action: latchkey_proto::Action,
    /// `base64url(SHA-256(canonical_action))`.
    pub hash: String,
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
