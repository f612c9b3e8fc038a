//! Proof that a request comes from the operator's genuine app (`[policy.app_integrity]`,
//! `docs/attestation.md`): Google Play Integrity verdicts, decrypted and verified locally with
//! the app's own keys (Play Console's "manage responses yourself": no call to Google), bound to a
//! single-use challenge Latchkey issued. Which requests need one is the policy's; the check
//! itself is `flow/genuine.rs`.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrap};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

/// The requests a policy can require a genuine app for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatedAction {
    /// `POST /v1/sign-up`.
    SignUp,
    /// Every request that sends an SMS or email code (sign-up, sign-in, resend, recovery,
    /// adding a phone or address): the defence against SMS pumping.
    CodeSends,
    /// Enrolling a device (`POST /v1/me/devices`, `enroll_device`).
    DeviceEnrollment,
    /// Starting a recovery (`POST /v1/recovery`, `POST /v1/forgot-password`).
    Recovery,
}

impl GatedAction {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            GatedAction::SignUp => "sign_up",
            GatedAction::CodeSends => "code_sends",
            GatedAction::DeviceEnrollment => "device_enrollment",
            GatedAction::Recovery => "recovery",
        }
    }
}

/// `[policy.app_integrity]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppIntegrityPolicy {
    /// The requests that need a proof (none by default).
    pub require: Vec<GatedAction>,
    /// How long a challenge from `POST /v1/app-integrity/challenge` may be used (seconds).
    pub challenge_ttl_secs: u64,
    /// Android: Google Play Integrity.
    pub play: Option<PlayIntegrity>,
    /// iOS: Apple App Attest.
    pub apple: Option<crate::factors::app_attest::AppAttest>,
}

impl Default for AppIntegrityPolicy {
    fn default() -> Self {
        Self { require: vec![], challenge_ttl_secs: 300, play: None, apple: None }
    }
}

/// The Android app's Play Integrity settings (Play Console → App integrity → Play Integrity API →
/// Response encryption: "Manage and download my response encryption keys").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayIntegrity {
    /// The app's package name; the verdict must be for it.
    pub package_name: String,
    /// The decryption key (Base64, 32 bytes: AES-256).
    pub decryption_key: String,
    /// The verification key (Base64 DER SubjectPublicKeyInfo, EC P-256).
    pub verification_key: String,
    /// Require `deviceRecognitionVerdict` to hold `MEETS_DEVICE_INTEGRITY` (default true).
    #[serde(default = "yes")]
    pub require_device_integrity: bool,
    /// Require `appRecognitionVerdict` `PLAY_RECOGNIZED`: the binary Play knows (default true).
    #[serde(default = "yes")]
    pub require_app_recognized: bool,
    /// Require `appLicensingVerdict` `LICENSED` (default false).
    #[serde(default)]
    pub require_licensed: bool,
}

fn yes() -> bool {
    true
}

impl AppIntegrityPolicy {
    /// What is wrong with the configuration, if anything.
    pub fn problem(&self) -> Option<String> {
        if !self.require.is_empty() && self.play.is_none() && self.apple.is_none() {
            return Some(
                "policy.app_integrity.require needs a verifier: [policy.app_integrity.play] or [policy.app_integrity.apple]"
                    .into(),
            );
        }
        if !(30..=3600).contains(&self.challenge_ttl_secs) {
            return Some("policy.app_integrity.challenge_ttl_secs: 30 to 3600".into());
        }
        if let Some(a) = &self.apple {
            if a.app_ids.is_empty() || !a.app_ids.iter().all(|id| crate::factors::passkey::valid_apple_app_id(id)) {
                return Some("policy.app_integrity.apple.app_ids: one or more <team id>.<bundle id>".into());
            }
            match crate::factors::app_attest::root_certificates(&a.roots) {
                Ok(r) if !r.is_empty() => {}
                Ok(_) => return Some("policy.app_integrity.apple.roots: Apple's App Attestation Root CA (PEM)".into()),
                Err(e) => return Some(format!("policy.app_integrity.apple.roots: {e}")),
            }
        }
        let p = self.play.as_ref()?;
        if p.package_name.is_empty() {
            return Some("policy.app_integrity.play.package_name is required".into());
        }
        if decryption_key(p).is_none() {
            return Some("policy.app_integrity.play.decryption_key: Base64 of 32 bytes (AES-256)".into());
        }
        if verification_point(p).is_none() {
            return Some("policy.app_integrity.play.verification_key: Base64 DER of an EC P-256 public key".into());
        }
        None
    }
}

fn decryption_key(p: &PlayIntegrity) -> Option<Vec<u8>> {
    STANDARD.decode(p.decryption_key.trim()).ok().filter(|k| k.len() == 32)
}

/// The DER SubjectPublicKeyInfo prefix of an uncompressed P-256 key.
pub(crate) const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

fn verification_point(p: &PlayIntegrity) -> Option<Vec<u8>> {
    let der = STANDARD.decode(p.verification_key.trim()).ok()?;
    (der.len() == 91 && der[..26] == P256_SPKI_PREFIX).then(|| der[26..].to_vec())
}

/// A Play Integrity verdict that passed the policy: the nonce it was requested with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayVerdict {
    /// `requestDetails.nonce` (classic requests) or `requestHash` (standard requests).
    pub nonce: String,
    /// `requestDetails.timestampMillis`.
    pub requested_at_ms: i64,
}

/// Decrypt (JWE: `A256KW` + `A256GCM`) and verify (JWS: `ES256`) a Play Integrity token, then
/// check the verdicts the policy requires. `Err`: why it is refused.
pub fn verify_play(p: &PlayIntegrity, token: &str) -> Result<PlayVerdict, String> {
    let key = decryption_key(p).ok_or("no decryption key")?;
    let point = verification_point(p).ok_or("no verification key")?;
    let jws = decrypt_jwe(&key, token)?;
    let payload = verify_jws(&point, &jws)?;
    let v: serde_json::Value = serde_json::from_slice(&payload).map_err(|_| "the verdict is not JSON")?;
    let details = &v["requestDetails"];
    if details["requestPackageName"].as_str() != Some(p.package_name.as_str()) {
        return Err("the verdict was requested by another package".into());
    }
    if p.require_app_recognized {
        let app = &v["appIntegrity"];
        if app["appRecognitionVerdict"].as_str() != Some("PLAY_RECOGNIZED")
            || app["packageName"].as_str() != Some(p.package_name.as_str())
        {
            return Err("the app is not the one Play recognises".into());
        }
    }
    if p.require_device_integrity {
        let verdicts = v["deviceIntegrity"]["deviceRecognitionVerdict"].as_array().cloned().unwrap_or_default();
        if !verdicts.iter().any(|x| x == "MEETS_DEVICE_INTEGRITY" || x == "MEETS_STRONG_INTEGRITY") {
            return Err("the device does not meet device integrity".into());
        }
    }
    if p.require_licensed && v["accountDetails"]["appLicensingVerdict"].as_str() != Some("LICENSED") {
        return Err("the app is not licensed to this account".into());
    }
    let nonce =
        details["nonce"].as_str().or_else(|| details["requestHash"].as_str()).ok_or("the verdict has no nonce")?;
    let requested_at_ms = match &details["timestampMillis"] {
        serde_json::Value::String(s) => s.parse().ok(),
        other => other.as_i64(),
    }
    .ok_or("the verdict has no timestamp")?;
    Ok(PlayVerdict { nonce: nonce.to_owned(), requested_at_ms })
}

fn part(s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| "malformed token".to_owned())
}

/// RFC 7516 compact JWE with `alg` `A256KW` and `enc` `A256GCM`: the plaintext.
fn decrypt_jwe(kek: &[u8], token: &str) -> Result<String, String> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    let [header, wrapped, iv, ciphertext, tag] = parts[..] else { return Err("not a JWE".into()) };
    let h: serde_json::Value = serde_json::from_slice(&part(header)?).map_err(|_| "malformed JWE header")?;
    if h["alg"] != "A256KW" || h["enc"] != "A256GCM" {
        return Err("the token is not A256KW/A256GCM".into());
    }
    let kek = AesKek::new(&AES_256, kek).map_err(|_| "bad decryption key")?;
    let mut cek = [0u8; 32];
    let cek = kek.unwrap(&part(wrapped)?, &mut cek).map_err(|_| "the token is not for this app's key")?;
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, cek).map_err(|_| "bad content key")?);
    let nonce = Nonce::try_assume_unique_for_key(&part(iv)?).map_err(|_| "bad IV")?;
    let mut data = part(ciphertext)?;
    data.extend_from_slice(&part(tag)?);
    let plain =
        key.open_in_place(nonce, Aad::from(header.as_bytes()), &mut data).map_err(|_| "the token does not decrypt")?;
    String::from_utf8(plain.to_vec()).map_err(|_| "the token does not decrypt".into())
}

/// RFC 7515 compact JWS with `alg` `ES256`: the payload.
fn verify_jws(point: &[u8], jws: &str) -> Result<Vec<u8>, String> {
    let parts: Vec<&str> = jws.trim().split('.').collect();
    let [header, payload, signature] = parts[..] else { return Err("the verdict is not a JWS".into()) };
    let h: serde_json::Value = serde_json::from_slice(&part(header)?).map_err(|_| "malformed JWS header")?;
    if h["alg"] != "ES256" {
        return Err("the verdict is not ES256".into());
    }
    let signed = format!("{header}.{payload}");
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(signed.as_bytes(), &part(signature)?)
        .map_err(|_| "the verdict's signature does not verify")?;
    part(payload)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn configuration_is_checked() {
        let mut p = AppIntegrityPolicy { require: vec![GatedAction::CodeSends], ..Default::default() };
        assert!(p.problem().unwrap().contains("needs a verifier"));
        p.play = Some(PlayIntegrity {
            package_name: "com.example".into(),
            decryption_key: STANDARD.encode([7u8; 32]),
            verification_key: STANDARD.encode([1u8; 10]),
            require_device_integrity: true,
            require_app_recognized: true,
            require_licensed: false,
        });
        assert!(p.problem().unwrap().contains("verification_key"));
    }

    #[test]
    fn tokens_that_are_not_jwe_are_refused() {
        let p = PlayIntegrity {
            package_name: "com.example".into(),
            decryption_key: STANDARD.encode([7u8; 32]),
            verification_key: String::new(),
            require_device_integrity: true,
            require_app_recognized: true,
            require_licensed: false,
        };
        assert!(verify_play(&p, "a.b.c").is_err());
    }
}
