//! Development Play Integrity: a key pair like the one Play Console hands an app team (a
//! decryption key, and a verification key whose signing half Google keeps), and verdict tokens
//! minted with it exactly as Google's servers mint them for "manage responses yourself" — an
//! `ES256` JWS inside an `A256KW`/`A256GCM` JWE. For `latchkey app-integrity` and the tests:
//! whoever holds these keys can mint any verdict, so they never belong in production.

use super::app_integrity::{P256_SPKI_PREFIX, PlayIntegrity};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrap};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Both halves of a development app's Play Integrity keys (Base64).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevPlayKeys {
    /// The app's package name.
    pub package_name: String,
    /// The signing key (PKCS#8), Google's half.
    pub signing_key: String,
    /// The decryption key (32 bytes), as Play Console shows it.
    pub decryption_key: String,
}

impl DevPlayKeys {
    /// New random keys for `package_name`.
    pub fn generate(package_name: &str) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|e| e.to_string())?;
        let mut kek = [0u8; 32];
        rng.fill(&mut kek).map_err(|e| e.to_string())?;
        Ok(Self {
            package_name: package_name.to_owned(),
            signing_key: STANDARD.encode(pkcs8.as_ref()),
            decryption_key: STANDARD.encode(kek),
        })
    }

    fn signer(&self) -> Result<EcdsaKeyPair, String> {
        let der = STANDARD.decode(&self.signing_key).map_err(|_| "signing_key is not Base64")?;
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).map_err(|e| e.to_string())
    }

    /// The server's side: `[policy.app_integrity.play]` trusting these keys.
    pub fn config(&self) -> Result<PlayIntegrity, String> {
        let spki = [&P256_SPKI_PREFIX[..], self.signer()?.public_key().as_ref()].concat();
        Ok(PlayIntegrity {
            package_name: self.package_name.clone(),
            decryption_key: self.decryption_key.clone(),
            verification_key: STANDARD.encode(spki),
            require_device_integrity: true,
            require_app_recognized: true,
            require_licensed: false,
        })
    }

    /// The integrity token for `payload`: JWS (`ES256`), then JWE (`A256KW`, `A256GCM`).
    pub fn token(&self, payload: &serde_json::Value) -> Result<String, String> {
        let rng = SystemRandom::new();
        let err = |e: aws_lc_rs::error::Unspecified| e.to_string();
        let input = format!("{}.{}", B64.encode(json!({"alg": "ES256"}).to_string()), B64.encode(payload.to_string()));
        let sig = self.signer()?.sign(&rng, input.as_bytes()).map_err(err)?;
        let jws = format!("{input}.{}", B64.encode(sig.as_ref()));
        let kek = STANDARD.decode(&self.decryption_key).map_err(|_| "decryption_key is not Base64")?;
        let protected = B64.encode(json!({"alg": "A256KW", "enc": "A256GCM"}).to_string());
        let mut cek = [0u8; 32];
        rng.fill(&mut cek).map_err(err)?;
        let mut out = [0u8; 40];
        let wrapped = AesKek::new(&AES_256, &kek).map_err(err)?.wrap(&cek, &mut out).map_err(err)?.to_vec();
        let mut iv = [0u8; 12];
        rng.fill(&mut iv).map_err(err)?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).map_err(err)?);
        let mut data = jws.into_bytes();
        let tag = key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(protected.as_bytes()), &mut data)
            .map_err(err)?;
        Ok([protected, B64.encode(wrapped), B64.encode(iv), B64.encode(data), B64.encode(tag.as_ref())].join("."))
    }
}

/// The verdict Play returns for `package`, the genuine app on a genuine device, requested with
/// `nonce` at `at_ms` (Unix milliseconds).
pub fn genuine_verdict(package: &str, nonce: &str, at_ms: i64) -> serde_json::Value {
    json!({
        "requestDetails": {"requestPackageName": package, "timestampMillis": at_ms.to_string(), "nonce": nonce},
        "appIntegrity": {"appRecognitionVerdict": "PLAY_RECOGNIZED", "packageName": package,
            "certificateSha256Digest": ["6a6a1474b5cbbb2b1aa57e0bc3"], "versionCode": "42"},
        "deviceIntegrity": {"deviceRecognitionVerdict": ["MEETS_DEVICE_INTEGRITY"]},
        "accountDetails": {"appLicensingVerdict": "LICENSED"}
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::factors::app_integrity::verify_play;

    #[test]
    fn a_minted_verdict_verifies_under_the_keys_config_and_no_other() {
        let keys = DevPlayKeys::generate("com.example.app").unwrap();
        let token = keys.token(&genuine_verdict("com.example.app", "n-1", 1_700_000_000_000)).unwrap();
        let v = verify_play(&keys.config().unwrap(), &token).unwrap();
        assert_eq!((v.nonce.as_str(), v.requested_at_ms), ("n-1", 1_700_000_000_000));
        let other = DevPlayKeys::generate("com.example.app").unwrap();
        assert!(verify_play(&other.config().unwrap(), &token).is_err());
    }
}
