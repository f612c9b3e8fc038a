//! The server's keys and what they do: peppered hashes of short codes and tokens, and
//! authenticated encryption of secrets at rest (with a key id, so the key can be rotated).

use crate::secret::{Random, SecretBytes, random_bytes};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::{digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Key material loaded at start-up from the data directory or configuration.
#[derive(Clone)]
pub struct Keys {
    /// Mixed into every password, code and token hash, so a database dump alone cannot be brute-forced.
    pub pepper: SecretBytes,
    /// The id of `data_key`, written in front of every ciphertext.
    pub data_key_id: String,
    /// AES-256-GCM key for secrets at rest (outbox bodies, TOTP seeds).
    pub data_key: SecretBytes,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("data_key_id", &self.data_key_id).finish_non_exhaustive()
    }
}

/// Errors from sealing and opening.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The ciphertext is malformed, was made with another key, or was tampered with.
    #[error("ciphertext cannot be opened")]
    Open,
    /// The key is unusable.
    #[error("key unusable")]
    Key,
}

impl Keys {
    /// HMAC-SHA-256 under the pepper of `purpose || 0 || context || 0 || value`, base64url.
    /// Used for one-time codes (keyed by their flow) and opaque tokens.
    pub fn mac(&self, purpose: &str, context: &str, value: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.pepper.expose());
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(purpose.as_bytes());
        ctx.update(&[0]);
        ctx.update(context.as_bytes());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        URL_SAFE_NO_PAD.encode(ctx.sign().as_ref())
    }

    /// Encrypt `plaintext`; the result is `kid.nonce.ciphertext` in base64url, bound to `aad`.
    pub fn seal(&self, rng: &dyn Random, aad: &str, plaintext: &[u8]) -> Result<String, CryptoError> {
        let key = self.aead_key()?;
        let nonce_bytes = random_bytes(rng, 12);
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&nonce_bytes);
        let mut buf = plaintext.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| CryptoError::Key)?;
        Ok(format!("{}.{}.{}", self.data_key_id, URL_SAFE_NO_PAD.encode(nonce), URL_SAFE_NO_PAD.encode(buf)))
    }

    /// Decrypt what [`Keys::seal`] made with the same `aad`.
    pub fn open(&self, aad: &str, sealed: &str) -> Result<Vec<u8>, CryptoError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(kid), Some(nonce), Some(ct)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CryptoError::Open);
        };
        if kid != self.data_key_id {
            return Err(CryptoError::Open);
        }
        let nonce = URL_SAFE_NO_PAD.decode(nonce).map_err(|_| CryptoError::Open)?;
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| CryptoError::Open)?;
        let mut buf = URL_SAFE_NO_PAD.decode(ct).map_err(|_| CryptoError::Open)?;
        let key = self.aead_key()?;
        let plain = key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| CryptoError::Open)?;
        Ok(plain.to_vec())
    }

    fn aead_key(&self) -> Result<LessSafeKey, CryptoError> {
        UnboundKey::new(&AES_256_GCM, self.data_key.expose()).map(LessSafeKey::new).map_err(|_| CryptoError::Key)
    }
}

/// SHA-256 of `value`, base64url. For high-entropy tokens where a pepper adds nothing.
pub fn sha256_b64(value: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, value).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::OsRandom;

    fn keys() -> Keys {
        Keys {
            pepper: SecretBytes::new(vec![7; 32]),
            data_key_id: "k1".into(),
            data_key: SecretBytes::new(vec![9; 32]),
        }
    }

    #[test]
    fn sealed_data_opens_only_with_the_same_aad_and_key() {
        let k = keys();
        let sealed = k.seal(&OsRandom, "outbox", b"code 123456").unwrap();
        assert!(!sealed.contains("123456"));
        assert_eq!(k.open("outbox", &sealed).unwrap(), b"code 123456");
        assert!(k.open("other", &sealed).is_err());
        let mut other = keys();
        other.data_key = SecretBytes::new(vec![1; 32]);
        assert!(other.open("outbox", &sealed).is_err());
    }

    #[test]
    fn a_mac_depends_on_purpose_context_and_value() {
        let k = keys();
        let a = k.mac("code", "flow1", "123456");
        assert_eq!(a, k.mac("code", "flow1", "123456"));
        assert_ne!(a, k.mac("code", "flow2", "123456"));
        assert_ne!(a, k.mac("code", "flow1", "123457"));
        assert_ne!(a, k.mac("other", "flow1", "123456"));
    }
}
