//! Device keys: the public-key formats phones produce, the exact message a device signs, and the
//! app-PIN rules. No I/O here; the service stores keys and counts PIN failures.
//!
//! A device holds two P-256 keys (DESIGN.md, "the hard questions"): the *possession key*, usable
//! without user verification, and the *biometric key*, which the OS releases only after a
//! biometric check and invalidates when the enrolled biometrics change.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use base64::Engine;

/// Which of a device's keys signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// The key that needs no user verification (used with the app PIN).
    Possession,
    /// The key the OS releases only after a biometric check.
    Biometric,
}

impl KeyRole {
    /// The wire and message name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Possession => "possession",
            KeyRole::Biometric => "biometric",
        }
    }
}

/// What a signature is for. Part of the signed message, so a signature for one purpose is
/// worthless for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Proving possession of the keys while enrolling the device.
    Enroll,
    /// Signing in with the device.
    SignIn,
    /// Registering a fresh biometric key for an enrolled device.
    Rekey,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Enroll => "enroll",
            Purpose::SignIn => "sign_in",
            Purpose::Rekey => "rekey",
        }
    }
}

/// Why a public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not Base64 or Base64url.
    #[error("the key is not Base64")]
    Encoding,
    /// Neither a P-256 SubjectPublicKeyInfo (DER) nor an uncompressed X9.63 point.
    #[error("the key must be a P-256 public key: SubjectPublicKeyInfo DER or an uncompressed X9.63 point")]
    Format,
}

/// The DER prefix of a P-256 SubjectPublicKeyInfo with an uncompressed point: SEQUENCE {
/// SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (66 bytes: no unused bits, 0x04, X, Y) }.
pub(crate) const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Base64url or standard Base64, padded or not, as phones' libraries produce it.
pub fn decode_base64(s: &str) -> Result<Vec<u8>, KeyError> {
    b64(s)
}

fn b64(s: &str) -> Result<Vec<u8>, KeyError> {
    let s = s.trim();
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let std = base64::engine::general_purpose::STANDARD;
    url.decode(s.trim_end_matches('=')).or_else(|_| std.decode(s)).map_err(|_| KeyError::Encoding)
}

/// Parse a P-256 public key as Android Keystore (`getEncoded()`: SubjectPublicKeyInfo DER) or iOS
/// (`SecKeyCopyExternalRepresentation`: X9.63 `04‖X‖Y`) produce it, Base64 or Base64url. Returns
/// the 65-byte uncompressed point. Whether the point is on the curve is checked by
/// [`verify`], which enrolment calls with a proof-of-possession signature.
pub fn parse_public_key(encoded: &str) -> Result<Vec<u8>, KeyError> {
    let bytes = b64(encoded)?;
    let point = match bytes.len() {
        65 => bytes,
        91 if bytes[..26] == P256_SPKI_PREFIX => bytes[26..].to_vec(),
        _ => return Err(KeyError::Format),
    };
    if point[0] != 0x04 {
        return Err(KeyError::Format);
    }
    Ok(point)
}

/// The exact bytes a device signs ([`latchkey_proto::device_message`]): purpose, flow, nonce, key
/// role and device, so a signature cannot be replayed into another flow, for another purpose, or
/// as the other key.
pub fn signed_message(purpose: Purpose, flow_id: &str, nonce: &str, role: KeyRole, device_id: &str) -> String {
    let key = match role {
        KeyRole::Possession => latchkey_proto::DeviceKey::Possession,
        KeyRole::Biometric => latchkey_proto::DeviceKey::Biometric,
    };
    latchkey_proto::device_message(purpose.as_str(), flow_id, nonce, key, device_id)
}

/// Verify an ECDSA P-256/SHA-256 signature by `point` over `message`. The signature may be DER
/// (what Android and iOS return) or the 64-byte `r‖s` form, Base64 or Base64url.
pub fn verify(point: &[u8], message: &[u8], signature: &str) -> bool {
    let Ok(sig) = b64(signature) else { return false };
    let alg = if sig.len() == 64 { &ECDSA_P256_SHA256_FIXED } else { &ECDSA_P256_SHA256_ASN1 };
    UnparsedPublicKey::new(alg, point).verify(message, &sig).is_ok()
}

/// The app PIN: at least 6 digits, and none of the PINs people pick first (repeated digits,
/// straight runs, a few well-known ones) — Latchkey checks this, never the phone.
pub fn check_pin(pin: &str) -> Result<(), &'static str> {
    if pin.len() < 6 || pin.len() > 12 || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the PIN must be 6 to 12 digits");
    }
    let d: Vec<i16> = pin.bytes().map(|b| i16::from(b - b'0')).collect();
    let same = d.windows(2).all(|w| w[0] == w[1]);
    let up = d.windows(2).all(|w| (w[1] - w[0]).rem_euclid(10) == 1);
    let down = d.windows(2).all(|w| (w[0] - w[1]).rem_euclid(10) == 1);
    // Two digits or a three-digit block repeated (121212, 123123), and the usual suspects.
    let period = |p: usize| d.len().is_multiple_of(p) && d.iter().enumerate().all(|(i, x)| *x == d[i % p]);
    const COMMON: [&str; 8] = ["696969", "112233", "159753", "147258", "131313", "102030", "520520", "789456"];
    if same || up || down || period(2) || period(3) || COMMON.contains(&pin) {
        return Err("this PIN is too easy to guess");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    fn key() -> EcdsaKeyPair {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new()).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref()).unwrap()
    }

    fn url(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    #[test]
    fn both_phone_key_formats_parse_to_the_same_point() {
        let k = key();
        let point = k.public_key().as_ref().to_vec();
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&point);
        assert_eq!(parse_public_key(&url(&point)).unwrap(), point, "X9.63 (iOS)");
        assert_eq!(parse_public_key(&url(&spki)).unwrap(), point, "SPKI DER (Android)");
        let std = base64::engine::general_purpose::STANDARD.encode(&spki);
        assert_eq!(parse_public_key(&std).unwrap(), point, "standard Base64 with padding");
        assert_eq!(parse_public_key("not base64!"), Err(KeyError::Encoding));
        assert_eq!(parse_public_key(&url(&point[1..])), Err(KeyError::Format), "compressed or truncated");
        let mut p384ish = spki.clone();
        p384ish[20] ^= 1;
        assert_eq!(parse_public_key(&url(&p384ish)), Err(KeyError::Format), "another curve's OID");
    }

    #[test]
    fn a_signature_verifies_only_over_its_exact_message() {
        let k = key();
        let rng = SystemRandom::new();
        let msg = signed_message(Purpose::SignIn, "flow-1", "nonce-1", KeyRole::Biometric, "dev-1");
        assert_eq!(msg, "latchkey-device-v1\nsign_in\nflow-1\nnonce-1\nbiometric\ndev-1");
        let sig = url(k.sign(&rng, msg.as_bytes()).unwrap().as_ref());
        let point = k.public_key().as_ref();
        assert!(verify(point, msg.as_bytes(), &sig), "DER signature");
        for other in [
            signed_message(Purpose::Enroll, "flow-1", "nonce-1", KeyRole::Biometric, "dev-1"),
            signed_message(Purpose::SignIn, "flow-2", "nonce-1", KeyRole::Biometric, "dev-1"),
            signed_message(Purpose::SignIn, "flow-1", "nonce-2", KeyRole::Biometric, "dev-1"),
            signed_message(Purpose::SignIn, "flow-1", "nonce-1", KeyRole::Possession, "dev-1"),
            signed_message(Purpose::SignIn, "flow-1", "nonce-1", KeyRole::Biometric, "dev-2"),
        ] {
            assert!(!verify(point, other.as_bytes(), &sig), "{other:?}");
        }
        assert!(!verify(key().public_key().as_ref(), msg.as_bytes(), &sig), "another key");
        assert!(!verify(point, msg.as_bytes(), "AAAA"), "garbage");
        // The fixed-width r‖s form (some libraries return it) verifies too.
        let fixed = EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            EcdsaKeyPair::generate_pkcs8(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .unwrap()
                .as_ref(),
        )
        .unwrap();
        let sig = url(fixed.sign(&rng, msg.as_bytes()).unwrap().as_ref());
        assert!(verify(fixed.public_key().as_ref(), msg.as_bytes(), &sig));
    }

    #[test]
    fn easy_pins_are_refused() {
        for bad in
            ["12345", "1234567a", "000000", "123456", "654321", "890123", "121212", "123123", "696969", "1111111"]
        {
            assert!(check_pin(bad).is_err(), "{bad}");
        }
        for good in ["371946", "48201957", "902817"] {
            assert_eq!(check_pin(good), Ok(()), "{good}");
        }
    }
}
