//! The factors themselves, without flows: what each kind is and how it is checked — passwords
//! (Argon2id and the policy), TOTP (RFC 6238 and its enrolment URI), recovery codes, device keys
//! and the messages they sign, and Android key attestation. The flows that use them are in
//! `flows/`.

pub mod app_attest;
pub mod app_integrity;
pub mod attestation;
pub mod device;
pub mod legacy;
pub mod passkey;
pub mod password;
pub mod play_dev;
pub mod recovery_codes;
pub mod totp;

/// Factor kinds, as stored.
pub const TOTP: &str = "totp";
/// An SMS code to a verified phone.
pub const SMS: &str = "sms";
/// An email code to a verified address.
pub const EMAIL: &str = "email";
/// A set of recovery codes.
pub const RECOVERY_CODES: &str = "recovery_codes";
/// A factor's states.
pub const PENDING: &str = "pending";
/// An enrolled factor in use.
pub const ACTIVE: &str = "active";

/// A factor kind that proves possession on its own (email does not, NIST SP 800-63B-4 §3.1.3.1).
pub fn is_strong(kind: &str) -> bool {
    kind == TOTP || kind == SMS
}
