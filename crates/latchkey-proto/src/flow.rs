//! Flows: starting one (sign-up, sign-in, forgot-password), the answer to a step, and what the
//! server answers every flow request with (`FlowAnswer`, `NextStep`).

use super::*;

/// `POST /v1/sign-up`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignUpRequest {
    /// The username: 1 to 64 letters and digits of one script, `.`, `_`, `-`, `@` or `+`;
    /// compared after NFKC normalisation and case folding.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
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
    /// The user's language (BCP 47: `en`, `de-CH`), for the confirmation code and every later
    /// message; the profile's `locale` from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 35, pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$"))]
    pub locale: Option<String>,
}

/// `POST /v1/sign-in`: a username with a password, a device's id, or `passkey: true`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    /// The username (a password sign-in).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub username: Option<String>,
    /// The password.
    #[serde(default)]
    pub password: Option<String>,
    /// An enrolled device: a device sign-in (`device_signature`).
    #[serde(default)]
    pub device_id: Option<String>,
    /// The assurance wanted (RFC 9470, as `POST /v1/step-up`): `aal2` makes a password sign-in
    /// ask for a second factor of a class that gives it, or set one up, whatever the policy's
    /// `mfa.mode`. Values Latchkey does not know are ignored (OpenID Connect's are voluntary).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 256))]
    pub acr_values: Option<String>,
    /// Accepted for symmetry with `POST /v1/step-up`: a sign-in always authenticates now, so
    /// any value is met. At most 2,147,483,647.
    #[serde(default, deserialize_with = "whole_seconds")]
    #[cfg_attr(feature = "openapi", schema(maximum = 2147483647))]
    pub max_age: Option<u64>,
    /// `true`: a passkey sign-in (no username; the next step is `passkey`, and the account is
    /// whoever's the passkey is). Needs `[policy.passkeys]`.
    #[serde(default)]
    pub passkey: bool,
    /// A client this account remembered (`POST /v1/me/remembered-clients`): with the right
    /// password, the next step is `remembered_client` instead of the second factor.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 36))]
    pub remembered_client: Option<String>,
}

/// `POST /v1/forgot-password`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ForgotPasswordRequest {
    /// The username whose password is to be reset.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub username: String,
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
    /// Sign the nonce of `remembered_client` with the remembered client's key: the second
    /// factor is skipped.
    RememberedClient {
        /// The signature over the remembered-client message (DER or `r‖s`, Base64url).
        signature: String,
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
    /// The answer to the operator's own challenge (`custom_challenge`), in whatever shape the
    /// app's backend asked for; at most 4 KiB of JSON.
    CustomChallenge {
        /// The answer, passed to the `custom_challenge` hook as it is.
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        answer: serde_json::Value,
    },
    /// The platform's answer to the `passkey` step: the `PublicKeyCredential` as JSON
    /// (`credential.toJSON()` in a browser; Android Credential Manager's
    /// `registrationResponseJson` / `authenticationResponseJson`; on iOS, built from
    /// `ASAuthorizationPlatformPublicKeyCredential…`), byte fields Base64url without padding.
    Passkey {
        /// `{"id","rawId","type":"public-key","response":{…},"clientExtensionResults":{…}}`.
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        credential: serde_json::Value,
        /// At registration: a name for the new passkey (default: the authenticator's name,
        /// else "Passkey"). Ignored when signing in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", schema(max_length = 64))]
        name: Option<String>,
    },
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
            StepAnswer::RememberedClient { .. } => "remembered_client",
            StepAnswer::RekeyBiometric { .. } => "rekey_biometric",
            StepAnswer::PushApproval {} => "push_approval",
            StepAnswer::RecoveryWait {} => "recovery_wait",
            StepAnswer::CustomChallenge { .. } => "custom_challenge",
            StepAnswer::Passkey { .. } => "passkey",
        }
    }
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
    /// The operator's own challenge, created and checked by the app's backend
    /// (`custom_challenge`; `[hooks.custom_challenge]`).
    CustomChallenge,
    /// A passkey of the account (`passkey`, an assertion).
    Passkey,
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
            MfaMethod::CustomChallenge => "custom_challenge",
            MfaMethod::Passkey => "passkey",
            MfaMethod::Unknown => "unknown",
        }
    }

    /// Whether the method resists phishing: a signature bound to the relying party or to the
    /// enrolled device (a push approval, a passkey), never a code the user could be tricked into
    /// typing elsewhere.
    pub fn phishing_resistant(self) -> bool {
        matches!(self, MfaMethod::PushApproval | MfaMethod::Passkey)
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
    /// The sign-in named a remembered client (`remembered_client`): sign the remembered-client
    /// message with its key and answer `remembered_client`; the second factor is skipped. A
    /// signature that does not verify leads to the second-factor step, and the client is
    /// forgotten.
    RememberedClient {
        /// Single-use (256 bits), part of the signed message.
        nonce: String,
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
    /// The operator's own challenge: show what `parameters` asks (the app's backend decides
    /// its shape) and answer `custom_challenge` with the user's response.
    CustomChallenge {
        /// The challenge's public parameters, as the `custom_challenge` hook made them.
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        parameters: serde_json::Value,
        /// When the challenge stops being accepted (RFC 3339).
        expires_at: String,
        /// Wrong answers left before the flow is denied.
        attempts_left: u32,
        /// Methods the user may switch to with `select_mfa`.
        #[serde(default)]
        other_methods: Vec<MfaMethod>,
    },
    /// Run a WebAuthn ceremony with `options` (`ceremony` `create`: register a passkey, as
    /// `navigator.credentials.create({publicKey: options})`; `get`: sign with one, as
    /// `navigator.credentials.get({publicKey: options})`) and answer `passkey` with the
    /// credential the platform returns. Byte fields are Base64url without padding.
    Passkey {
        /// `create` or `get`.
        ceremony: String,
        /// `PublicKeyCredentialCreationOptionsJSON` or `PublicKeyCredentialRequestOptionsJSON`
        /// (WebAuthn Level 3), for Android Credential Manager's `requestJson` as it is.
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        options: serde_json::Value,
        /// Wrong answers left before the flow is denied.
        attempts_left: u32,
        /// Methods the user may switch to with `select_mfa`.
        #[serde(default)]
        other_methods: Vec<MfaMethod>,
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
            NextStep::RememberedClient { .. } => "remembered_client",
            NextStep::PushApproval { .. } => "push_approval",
            NextStep::RekeyBiometric { .. } => "rekey_biometric",
            NextStep::RecoveryWait { .. } => "recovery_wait",
            NextStep::CustomChallenge { .. } => "custom_challenge",
            NextStep::Passkey { .. } => "passkey",
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
    /// Only in the `done` that completed a step-up with an `action`: a short-lived JWT
    /// (`typ: approval+jwt`, verifiable with the JWKS) binding `sub`, `sid`, the action's hash,
    /// `acr`, `amr` and the time, for the app's backend to check before it executes the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
}
