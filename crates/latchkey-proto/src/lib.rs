//! The Latchkey wire contract: what apps send and what the server answers.
//!
//! Every flow request (`POST /v1/sign-up`, `POST /v1/sign-in`, `POST /v1/flows/{id}`, …) is answered
//! with a [`FlowAnswer`]: the flow id, its expiry, and the [`NextStep`] the app must render. Tokens
//! appear only when the next step is [`NextStep::Done`]. A wrong answer is not an HTTP error: the flow
//! answers with the same step, fewer `attempts_left` and a [`StepError`] the app can branch on.
//!
//! This crate depends on serde only, so a mobile SDK can compile it for iOS and Android.
//!
//! ```
//! use latchkey_proto::{FlowAnswer, NextStep};
//! let json = r#"{"flow_id":"0193","expires_at":"2026-11-22T10:05:00Z",
//!   "next_step":{"type":"confirm_sign_up","channel":"email","destination":"a***@e***.com","attempts_left":5},
//!   "tokens":null}"#;
//! let answer: FlowAnswer = serde_json::from_str(json).unwrap();
//! assert!(matches!(answer.next_step, NextStep::ConfirmSignUp { .. }));
//! ```
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// `POST /v1/sign-up`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignUpRequest {
    /// The username: 1 to 64 letters and digits of one script, `.`, `_`, `-`, `@` or `+`;
    /// compared after NFKC normalisation and case folding.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64, pattern = r"\S"))]
    pub username: String,
    /// The password (8 to 256 characters, no composition rules, common passwords refused).
    #[serde(default)]
    pub password: Option<String>,
    /// An email address; the policy decides whether it is required.
    #[serde(default)]
    pub email: Option<String>,
    /// A phone number in E.164 form (`+` and 8–15 digits).
    #[serde(default)]
    pub phone: Option<String>,
}

/// `POST /v1/sign-in`: a username with a password.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    /// The username (a password sign-in).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64, pattern = r"\S"))]
    pub username: Option<String>,
    /// The password.
    #[serde(default)]
    pub password: Option<String>,
    /// An enrolled device: a device sign-in (`device_signature`).
    #[serde(default)]
    pub device_id: Option<String>,
}

/// `POST /v1/forgot-password`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ForgotPasswordRequest {
    /// The username whose password is to be reset.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64, pattern = r"\S"))]
    pub username: String,
}

/// `POST /v1/recovery`: start recovering an account (docs/recovery.md).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecoveryRequest {
    /// The username of the account to recover.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64, pattern = r"\S"))]
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

/// `POST /v1/flows/{id}`: the answer to the step the flow is waiting for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(tag = "step", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepAnswer {
    /// The code sent when signing up.
    ConfirmSignUp {
        /// The 6-digit code.
        code: String,
    },
    /// A new password, when the account must change its password.
    NewPassword {
        /// The new password.
        password: String,
    },
    /// The first code from the authenticator app, which activates a TOTP enrolment.
    SetupTotp {
        /// The 6-digit code.
        code: String,
    },
    /// A code from the authenticator app.
    TotpCode {
        /// The 6-digit code.
        code: String,
    },
    /// At `push_approval`: has the phone answered? The same as `GET /v1/flows/{id}`.
    PushApproval {},
    /// The code sent by text message at the `sms_code` step.
    SmsCode {
        /// The 6-digit code.
        code: String,
    },
    /// The code sent by email at the `email_code` step.
    EmailCode {
        /// The 6-digit code.
        code: String,
    },
    /// One of the account's saved recovery codes (dashes and case do not matter).
    RecoveryCode {
        /// The code, e.g. `ABCD-EFGH-IJKL-MNOP-QRST-UVWX`.
        code: String,
    },
    /// Pick a second factor: at `select_mfa`, or at any second-factor step to switch method
    /// (a code is sent when the method is `sms` or `email`). Attempts are not reset by switching.
    SelectMfa {
        /// One of the step's `methods` or `other_methods`.
        method: MfaMethod,
    },
    /// At `setup_totp` inside a sign-in, where policy allows SMS instead: verify this phone
    /// (default: the account's phone). The next step is `verify_code`.
    SetupSms {
        /// E.164 phone number.
        #[serde(default)]
        phone: Option<String>,
    },
    /// The user saved the recovery codes shown at `save_recovery_codes`: put them in force.
    SaveRecoveryCodes {},
    /// Register this device's two P-256 keys and the app PIN (`enroll_device`). Each key signs
    /// the enrolment message (see `docs/devices.md`) to prove the device holds it.
    EnrollDevice {
        /// A name the user will recognise ("Anna's Pixel").
        name: String,
        /// `android`, `ios` or another platform name.
        platform: String,
        /// The possession key (no user verification): SPKI DER or X9.63, Base64url.
        possession_key: String,
        /// The biometric key (released by the OS only after a biometric check).
        biometric_key: String,
        /// The possession key's signature over the enrolment message (DER or `r‖s`, Base64url).
        possession_signature: String,
        /// The biometric key's signature over the enrolment message.
        biometric_signature: String,
        /// The app PIN, 6 to 12 digits; checked by the server, never stored on the phone.
        pin: String,
        /// The platform's evidence that the biometric key needs a biometric for every use
        /// (Android Key Attestation with this step's nonce as the challenge). Without it, a
        /// biometric-key sign-in counts as possession only (`aal1`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attestation: Option<DeviceAttestation>,
    },
    /// Register a fresh biometric key for this device (`rekey_biometric`), after the OS
    /// invalidated the old one. The new key signs the re-key message (see `docs/devices.md`).
    RekeyBiometric {
        /// The new biometric key: SPKI DER or X9.63, Base64url.
        biometric_key: String,
        /// Its signature over the re-key message (DER or `r‖s`, Base64url).
        biometric_signature: String,
        /// Evidence for the new key, as in `enroll_device` (challenge: this step's nonce).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attestation: Option<DeviceAttestation>,
    },
    /// Sign the nonce of `device_signature`: with the biometric key, or with the possession key
    /// and the app PIN.
    DeviceSignature {
        /// Which key signed.
        key: DeviceKey,
        /// The signature over the sign-in message (DER or `r‖s`, Base64url).
        signature: String,
        /// With the possession key: the app PIN.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pin: Option<String>,
    },
    /// The code sent to the phone or email address being added (`verify_code`).
    VerifyCode {
        /// The 6-digit code.
        code: String,
    },
    /// At `recovery_wait`: has the wait ended? Before `ready_at` the same step comes back.
    RecoveryWait {},
    /// The code sent by `forgot-password`, with the new password.
    ResetPassword {
        /// The 6-digit code.
        code: String,
        /// The new password.
        password: String,
    },
}

impl StepAnswer {
    /// The wire name of the step this answers.
    pub fn step_name(&self) -> &'static str {
        match self {
            StepAnswer::ConfirmSignUp { .. } => "confirm_sign_up",
            StepAnswer::NewPassword { .. } => "new_password",
            StepAnswer::ResetPassword { .. } => "reset_password",
            StepAnswer::SetupTotp { .. } => "setup_totp",
            StepAnswer::TotpCode { .. } => "totp_code",
            StepAnswer::SmsCode { .. } => "sms_code",
            StepAnswer::EmailCode { .. } => "email_code",
            StepAnswer::RecoveryCode { .. } => "recovery_code",
            StepAnswer::SelectMfa { .. } => "select_mfa",
            StepAnswer::SetupSms { .. } => "setup_sms",
            StepAnswer::VerifyCode { .. } => "verify_code",
            StepAnswer::SaveRecoveryCodes {} => "save_recovery_codes",
            StepAnswer::EnrollDevice { .. } => "enroll_device",
            StepAnswer::DeviceSignature { .. } => "device_signature",
            StepAnswer::RekeyBiometric { .. } => "rekey_biometric",
            StepAnswer::PushApproval {} => "push_approval",
            StepAnswer::RecoveryWait {} => "recovery_wait",
        }
    }
}

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
    /// `sign_in` (a sign-in elsewhere) or `new_device` (a new phone's first sign-in).
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

/// A second-factor method a sign-in can ask for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MfaMethod {
    /// A code from an authenticator app (`totp_code`).
    Totp,
    /// A code by text message to the verified phone (`sms_code`).
    Sms,
    /// A code by email to the verified address (`email_code`); never `aal2` on its own.
    Email,
    /// One of the saved recovery codes (`recovery_code`).
    RecoveryCode,
    /// Approval on an enrolled device, matching the number shown here (`push_approval`).
    PushApproval,
    /// In a recovery: "I have no second proof" — wait out the delay the real owner can veto
    /// (`recovery_wait`).
    RecoveryWait,
    /// A method this client does not know yet.
    #[serde(other)]
    Unknown,
}

impl MfaMethod {
    /// The wire name (`totp`, `sms`, `email`, `recovery_code`).
    pub fn as_str(self) -> &'static str {
        match self {
            MfaMethod::Totp => "totp",
            MfaMethod::Sms => "sms",
            MfaMethod::Email => "email",
            MfaMethod::RecoveryCode => "recovery_code",
            MfaMethod::PushApproval => "push_approval",
            MfaMethod::RecoveryWait => "recovery_wait",
            MfaMethod::Unknown => "unknown",
        }
    }
}

/// Where a code was sent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Channel {
    /// An email message.
    Email,
    /// A text message.
    Sms,
    /// A channel this client does not know yet.
    #[serde(other)]
    Unknown,
}

/// Why a flow ended without tokens.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DenialReason {
    /// Too many wrong answers: start again (a new code is sent).
    TooManyAttempts,
    /// The flow ended for a reason the server does not disclose (also: the phone denied the
    /// push approval, reported it, or answered with a wrong number).
    Denied,
    /// The push approval was not answered in time: start again.
    Expired,
    /// The account's owner cancelled this recovery ("this wasn't me").
    Cancelled,
    /// A reason this client does not know yet.
    #[serde(other)]
    Unknown,
}

/// What the app must do next. A closed set; old apps see [`NextStep::Unknown`] for new steps.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NextStep {
    /// Enter the code sent to confirm the sign-up.
    ConfirmSignUp {
        /// Where the code went.
        channel: Channel,
        /// The destination, masked (`a***@e***.com`, `+*******4567`).
        destination: String,
        /// Wrong answers left before the flow is denied.
        attempts_left: u32,
    },
    /// Choose a new password (an administrator required a change).
    NewPassword {
        /// Wrong answers left before the flow is denied.
        attempts_left: u32,
    },
    /// Enter the code sent by `forgot-password` and a new password.
    ResetPassword {
        /// Where the code went (`null` when the server does not disclose it).
        channel: Option<Channel>,
        /// The masked destination (empty when the server does not disclose it).
        destination: String,
        /// Wrong answers left before the flow is denied.
        attempts_left: u32,
    },
    /// Add the secret to an authenticator app (scan the QR code or open the URI), then answer
    /// with its current code. Shown only until the enrolment is confirmed.
    SetupTotp {
        /// The secret, Base32 without padding (for typing in by hand).
        secret: String,
        /// The `otpauth://totp/Issuer:account?secret=…&issuer=…` key URI.
        uri: String,
        /// The URI as a QR code, an SVG document.
        qr_svg: String,
        /// Wrong answers left before the flow is denied.
        attempts_left: u32,
        /// Inside a sign-in: other set-up methods policy allows (`sms`: answer `setup_sms`).
        #[serde(default)]
        other_methods: Vec<MfaMethod>,
    },
    /// Choose a second factor; answer `select_mfa` with one of `methods`.
    SelectMfa {
        /// The enrolled methods, the preferred one first.
        methods: Vec<MfaMethod>,
    },
    /// Enter the current code from the authenticator app.
    TotpCode {
        /// Wrong answers left before the flow is denied.
        attempts_left: u32,
        /// Methods the user may switch to with `select_mfa`.
        #[serde(default)]
        other_methods: Vec<MfaMethod>,
    },
    /// Enter the code sent by text message to the verified phone.
    SmsCode {
        /// The phone, masked.
        destination: String,
        /// Wrong answers left before the flow is denied.
        attempts_left: u32,
        /// Methods the user may switch to with `select_mfa`.
        #[serde(default)]
        other_methods: Vec<MfaMethod>,
    },
    /// Enter the code sent by email to the verified address.
    EmailCode {
        /// The address, masked.
        destination: String,
        /// Wrong answers left before the flow is denied.
        attempts_left: u32,
        /// Methods the user may switch to with `select_mfa`.
        #[serde(default)]
        other_methods: Vec<MfaMethod>,
    },
    /// Enter one of the saved recovery codes.
    RecoveryCode {
        /// Wrong answers left before the flow is denied.
        attempts_left: u32,
        /// Methods the user may switch to with `select_mfa`.
        #[serde(default)]
        other_methods: Vec<MfaMethod>,
    },
    /// Create the device's two keys and ask the user for an app PIN, then answer `enroll_device`
    /// with both public keys, their signatures over the enrolment message, and the PIN.
    EnrollDevice {
        /// The id the device will have; keep it for `POST /v1/sign-in {"device_id"}`.
        device_id: String,
        /// Single-use, part of the signed message.
        nonce: String,
        /// Wrong answers left before the flow is denied.
        attempts_left: u32,
    },
    /// Create a new biometric key (the OS invalidated the old one), sign the re-key message with
    /// it and answer `rekey_biometric`. The old key stops working when the answer is accepted.
    RekeyBiometric {
        /// The device being re-keyed.
        device_id: String,
        /// Single-use, part of the signed message.
        nonce: String,
        /// Wrong answers left before the flow is denied.
        attempts_left: u32,
    },
    /// Sign the sign-in message with the biometric key, or with the possession key and send the
    /// app PIN too.
    DeviceSignature {
        /// Single-use (≥ 128 bits), part of the signed message.
        nonce: String,
        /// Wrong answers left before the flow is denied.
        attempts_left: u32,
    },
    /// Show `number` and tell the user to approve on their enrolled phone, typing that number
    /// there. Poll `GET /v1/flows/{id}?wait=25` (or answer `push_approval` to check): `done`
    /// with tokens once approved, `denied` when denied, reported, wrong or expired.
    PushApproval {
        /// The approval the phone is asked about.
        approval_id: String,
        /// Two digits to show; the phone must send them back (NIST SP 800-63B-4 §3.1.3.1).
        number: String,
        /// When the approval stops being accepted (RFC 3339).
        expires_at: String,
        /// Methods the user may switch to with `select_mfa`.
        #[serde(default)]
        other_methods: Vec<MfaMethod>,
    },
    /// Show these recovery codes (once) and let the user save them; answer `save_recovery_codes`
    /// to put them in force in place of any earlier set.
    SaveRecoveryCodes {
        /// Ten single-use codes, `XXXX-XXXX-XXXX-XXXX-XXXX-XXXX`.
        codes: Vec<String>,
    },
    /// Enter the code sent to the phone or address being added as a factor.
    VerifyCode {
        /// Where the code went.
        channel: Channel,
        /// The new destination, masked.
        destination: String,
        /// Wrong answers left before the flow is denied.
        attempts_left: u32,
    },
    /// A recovery with one proof only: it may continue at `ready_at` (RFC 3339) unless the
    /// owner cancels it meanwhile from any enrolled device, verified address or session. Answer
    /// `recovery_wait` (or read the flow) after that time; before it, this step comes back.
    RecoveryWait {
        /// When the recovery may continue.
        ready_at: String,
    },
    /// The flow is complete. Tokens are in [`FlowAnswer::tokens`] for sign-in flows.
    Done,
    /// The flow ended without success; start a new one.
    Denied {
        /// Why.
        reason: DenialReason,
    },
    /// A step this client does not know yet.
    #[serde(other)]
    Unknown,
}

impl NextStep {
    /// The wire name of the step (`"confirm_sign_up"`, …).
    pub fn name(&self) -> &'static str {
        match self {
            NextStep::ConfirmSignUp { .. } => "confirm_sign_up",
            NextStep::NewPassword { .. } => "new_password",
            NextStep::ResetPassword { .. } => "reset_password",
            NextStep::SetupTotp { .. } => "setup_totp",
            NextStep::TotpCode { .. } => "totp_code",
            NextStep::SelectMfa { .. } => "select_mfa",
            NextStep::SmsCode { .. } => "sms_code",
            NextStep::EmailCode { .. } => "email_code",
            NextStep::RecoveryCode { .. } => "recovery_code",
            NextStep::VerifyCode { .. } => "verify_code",
            NextStep::SaveRecoveryCodes { .. } => "save_recovery_codes",
            NextStep::EnrollDevice { .. } => "enroll_device",
            NextStep::DeviceSignature { .. } => "device_signature",
            NextStep::PushApproval { .. } => "push_approval",
            NextStep::RekeyBiometric { .. } => "rekey_biometric",
            NextStep::RecoveryWait { .. } => "recovery_wait",
            NextStep::Done => "done",
            NextStep::Denied { .. } => "denied",
            NextStep::Unknown => "unknown",
        }
    }
}

/// Why the last answer was not accepted. The step stays the same.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct StepError {
    /// A stable code: `code_mismatch`, `expired_code`, `invalid_password`, `limit_exceeded`.
    pub code: String,
    /// A human-readable message.
    pub message: String,
}

/// Tokens, present only in `done`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Tokens {
    /// An ES256 JWT (`typ: at+jwt`) verifiable with `/.well-known/jwks.json`.
    pub access_token: String,
    /// An opaque refresh token, rotated on every use.
    pub refresh_token: String,
    /// `Bearer`, or `DPoP` for a device session (its tokens are bound to the device's key).
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// The answer to every flow request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct FlowAnswer {
    /// The flow's id, for `/v1/flows/{id}`.
    pub flow_id: String,
    /// When the flow expires (RFC 3339).
    pub expires_at: String,
    /// What to do next.
    pub next_step: NextStep,
    /// Tokens, only when `next_step` is `done` and the flow signs in.
    pub tokens: Option<Tokens>,
    /// Why the last answer was refused, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
}

/// `POST /v1/token`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TokenRequest {
    /// Only `refresh_token` is supported.
    #[cfg_attr(feature = "openapi", schema(pattern = "^refresh_token$"))]
    pub grant_type: String,
    /// The refresh token to rotate.
    pub refresh_token: String,
}

/// `POST /v1/sign-out`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SignOutRequest {
    /// `session` (default) or `all`.
    #[serde(default)]
    pub scope: SignOutScope,
}

/// Which sessions a sign-out ends.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SignOutScope {
    /// Only the session of the access token.
    #[default]
    Session,
    /// Every session of the user.
    All,
}

/// `GET /v1/me`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Me {
    /// The user id (UUIDv7).
    pub id: String,
    /// The username as registered.
    pub username: String,
    /// The email address, if any.
    pub email: Option<String>,
    /// Whether the email address was verified.
    pub email_verified: bool,
    /// The phone number, if any.
    pub phone: Option<String>,
    /// Whether the phone number was verified.
    pub phone_verified: bool,
    /// `unconfirmed`, `active`, `locked` or `disabled`.
    pub status: String,
    /// The current session's id.
    pub session_id: String,
    /// The current session's assurance level.
    pub acr: String,
    /// The methods used to authenticate (RFC 8176).
    pub amr: Vec<String>,
}

/// One session in `GET /v1/me/sessions`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SessionInfo {
    /// The session id.
    pub id: String,
    /// Whether this is the session of the calling access token.
    pub current: bool,
    /// Assurance level.
    pub acr: String,
    /// Methods used (RFC 8176).
    pub amr: Vec<String>,
    /// When the user authenticated (RFC 3339).
    pub auth_time: String,
    /// When the session was created (RFC 3339).
    pub created_at: String,
    /// When the session was last refreshed (RFC 3339).
    pub last_refresh_at: String,
    /// The IP address that created it, if known.
    pub ip: Option<String>,
    /// The user agent that created it, if known.
    pub user_agent: Option<String>,
}

/// `GET /v1/me/sessions`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SessionList {
    /// Active sessions, newest first.
    pub sessions: Vec<SessionInfo>,
}

/// `POST /v1/me/factors`: start enrolling a factor (an `enroll` flow).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollFactorRequest {
    /// `totp`, `sms`, `email` or `recovery_codes` (also `POST /v1/me/recovery-codes`, in one call).
    #[serde(rename = "type")]
    pub kind: String,
    /// For `sms`: the phone (E.164) to verify; default the account's phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// For `email`: the address to verify; default the account's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
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
}

/// `POST /v1/me/recovery-codes`: the new set, shown this once. Any earlier set stops working.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RecoveryCodes {
    /// Ten single-use codes of 120 bits each, `XXXX-XXXX-XXXX-XXXX-XXXX-XXXX`.
    pub codes: Vec<String>,
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
        let src = include_str!("lib.rs");
        let module = &src[src.find("pub mod codes").unwrap_or(0)..src.find("#[cfg(test)]").unwrap_or(src.len())];
        // Every `pub const` of the module but `ALL` itself.
        assert_eq!(module.matches("pub const ").count() - 1, super::codes::ALL.len());
    }
}
