//! The device's keys. A phone app implements [`Keystore`] over its platform store (Android
//! Keystore, the iOS Secure Enclave); [`SoftwareKeystore`] is the implementation for desktops,
//! the CLI emulator and tests.
//!
//! What the platform keys must be (see `docs/devices.md`): P-256, ECDSA with SHA-256; the
//! *possession* key without user authentication; the *biometric* key with user authentication
//! required for every use and invalidated when biometrics change (Android
//! `setUserAuthenticationRequired(true)` + `setInvalidatedByBiometricEnrollment(true)`, iOS
//! `.biometryCurrentSet`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why the key store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeystoreError {
    /// No key under this alias.
    #[error("no key `{0}`")]
    NotFound(String),
    /// The OS invalidated the key (biometrics changed): sign in with the PIN and enrol again.
    #[error("the key `{0}` was invalidated by the OS")]
    Invalidated(String),
    /// The platform refused (user cancelled the prompt, hardware error, …).
    #[error("key store: {0}")]
    Platform(String),
}

/// What an app's platform key store provides. Keys never leave it; the SDK only asks for public
/// keys and signatures.
pub trait Keystore: Send + Sync {
    /// Create (or replace) a P-256 key under `alias`. With `user_verification`, the OS releases it
    /// only after a biometric check and invalidates it when biometrics change. Returns the public
    /// key as SubjectPublicKeyInfo DER or an X9.63 point.
    fn create_key(&self, alias: &str, user_verification: bool) -> Result<Vec<u8>, KeystoreError>;
    /// Create the biometric key as `create_key(alias, true)` does, with the platform's
    /// attestation of it for `challenge`. Android: `setAttestationChallenge(challenge)` on the
    /// `KeyGenParameterSpec` (with `setUserAuthenticationRequired(true)`, biometric only, for
    /// every use), then `getCertificateChain(alias)`, with the biometric it offers (`fpt`,
    /// `face`, `iris`). Platforms without key attestation (iOS, the software store) return
    /// `None`, the default; the server then counts the key as possession only.
    fn create_attested_key(
        &self,
        alias: &str,
        challenge: &[u8],
    ) -> Result<(Vec<u8>, Option<latchkey_proto::DeviceAttestation>), KeystoreError> {
        let _ = challenge;
        Ok((self.create_key(alias, true)?, None))
    }
    /// An ECDSA P-256/SHA-256 signature (DER) over `message`. For a user-verified key the OS shows
    /// its biometric prompt first.
    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, KeystoreError>;
    /// Encrypt `plaintext` under the symmetric (or, on iOS, Secure Enclave ECIES) key `alias`,
    /// which the OS releases only after a biometric check and invalidates when biometrics
    /// change. Creates the key when there is none, or replaces an invalidated one.
    fn seal(&self, alias: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeystoreError>;
    /// Decrypt what [`Keystore::seal`] sealed (the OS shows its biometric prompt first).
    fn open(&self, alias: &str, sealed: &[u8]) -> Result<Vec<u8>, KeystoreError>;
    /// The public key of the key under `alias` (SubjectPublicKeyInfo DER or an X9.63 point).
    fn public_key(&self, alias: &str) -> Result<Vec<u8>, KeystoreError>;
    /// Delete the key (no error if there is none).
    fn delete_key(&self, alias: &str) -> Result<(), KeystoreError>;
    /// Whether the OS invalidated the key.
    fn is_invalidated(&self, alias: &str) -> bool;
}

struct SoftKey {
    /// PKCS#8 of a P-256 key, or 32 bytes of an AES-256-GCM key.
    material: Vec<u8>,
    user_verification: bool,
    invalidated: bool,
}

const AES_KEY_LEN: usize = 32;

/// Software keys in memory (aws-lc-rs): for desktops, the CLI device emulator and tests. A
/// biometric check always "succeeds"; [`SoftwareKeystore::invalidate`] plays the OS invalidating
/// a key when a new fingerprint is enrolled. Clones share their keys, like handles to one
/// platform store.
#[derive(Default, Clone)]
pub struct SoftwareKeystore {
    keys: Arc<Mutex<HashMap<String, SoftKey>>>,
}

impl SoftwareKeystore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the OS does when a new fingerprint or face is enrolled: every key created with user
    /// verification is invalidated.
    pub fn enroll_new_biometrics(&self) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.values_mut().filter(|k| k.user_verification).for_each(|k| k.invalidated = true);
        }
    }

    /// What the OS does to a user-verified key when biometrics change.
    pub fn invalidate(&self, alias: &str) {
        if let Ok(mut keys) = self.keys.lock()
            && let Some(k) = keys.get_mut(alias)
        {
            k.invalidated = true;
        }
    }

    /// The key material (PKCS#8 documents, AES keys), for saving a software device between runs
    /// (the CLI emulator).
    pub fn export(&self) -> Vec<(String, Vec<u8>)> {
        self.keys.lock().map(|k| k.iter().map(|(a, v)| (a.clone(), v.material.clone())).collect()).unwrap_or_default()
    }

    /// Load a key saved with [`SoftwareKeystore::export`].
    pub fn import(&self, alias: &str, material: Vec<u8>) -> Result<(), KeystoreError> {
        if material.len() != AES_KEY_LEN {
            pair(&material)?;
        }
        let mut keys = self.keys.lock().map_err(|_| KeystoreError::Platform("poisoned".into()))?;
        keys.insert(alias.into(), SoftKey { material, user_verification: false, invalidated: false });
        Ok(())
    }

    /// A live key of `alias`, or why not.
    fn with_key<T>(
        &self,
        alias: &str,
        f: impl FnOnce(&SoftKey) -> Result<T, KeystoreError>,
    ) -> Result<T, KeystoreError> {
        let keys = self.keys.lock().map_err(|_| KeystoreError::Platform("poisoned".into()))?;
        let k = keys.get(alias).ok_or_else(|| KeystoreError::NotFound(alias.into()))?;
        if k.invalidated {
            return Err(KeystoreError::Invalidated(alias.into()));
        }
        f(k)
    }
}

fn pair(pkcs8: &[u8]) -> Result<aws_lc_rs::signature::EcdsaKeyPair, KeystoreError> {
    aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8)
        .map_err(|e| KeystoreError::Platform(e.to_string()))
}

fn aead(material: &[u8]) -> Result<aws_lc_rs::aead::LessSafeKey, KeystoreError> {
    let key = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, material)
        .map_err(|_| KeystoreError::Platform("not an AES-256 key".into()))?;
    Ok(aws_lc_rs::aead::LessSafeKey::new(key))
}

fn platform(e: impl std::fmt::Display) -> KeystoreError {
    KeystoreError::Platform(e.to_string())
}

impl Keystore for SoftwareKeystore {
    fn create_key(&self, alias: &str, user_verification: bool) -> Result<Vec<u8>, KeystoreError> {
        use aws_lc_rs::signature::KeyPair;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .map_err(platform)?;
        let public = pair(doc.as_ref())?.public_key().as_ref().to_vec();
        let mut keys = self.keys.lock().map_err(|_| KeystoreError::Platform("poisoned".into()))?;
        let key = SoftKey { material: doc.as_ref().to_vec(), user_verification, invalidated: false };
        keys.insert(alias.into(), key);
        Ok(public)
    }

    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, KeystoreError> {
        self.with_key(alias, |k| {
            let sig = pair(&k.material)?.sign(&aws_lc_rs::rand::SystemRandom::new(), message).map_err(platform)?;
            Ok(sig.as_ref().to_vec())
        })
    }

    fn seal(&self, alias: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeystoreError> {
        let usable = self.with_key(alias, |k| Ok(k.material.len() == AES_KEY_LEN));
        if !matches!(usable, Ok(true)) {
            let mut material = vec![0u8; AES_KEY_LEN];
            aws_lc_rs::rand::fill(&mut material).map_err(platform)?;
            let mut keys = self.keys.lock().map_err(|_| KeystoreError::Platform("poisoned".into()))?;
            keys.insert(alias.into(), SoftKey { material, user_verification: true, invalidated: false });
        }
        self.with_key(alias, |k| {
            let mut nonce = [0u8; aws_lc_rs::aead::NONCE_LEN];
            aws_lc_rs::rand::fill(&mut nonce).map_err(platform)?;
            let mut sealed = plaintext.to_vec();
            aead(&k.material)?
                .seal_in_place_append_tag(
                    aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                    aws_lc_rs::aead::Aad::from(alias.as_bytes()),
                    &mut sealed,
                )
                .map_err(platform)?;
            Ok([nonce.as_slice(), &sealed].concat())
        })
    }

    fn open(&self, alias: &str, sealed: &[u8]) -> Result<Vec<u8>, KeystoreError> {
        self.with_key(alias, |k| {
            if sealed.len() < aws_lc_rs::aead::NONCE_LEN {
                return Err(KeystoreError::Platform("not sealed data".into()));
            }
            let (nonce, body) = sealed.split_at(aws_lc_rs::aead::NONCE_LEN);
            let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce).map_err(platform)?;
            let mut body = body.to_vec();
            let plain = aead(&k.material)?
                .open_in_place(nonce, aws_lc_rs::aead::Aad::from(alias.as_bytes()), &mut body)
                .map_err(|_| KeystoreError::Platform("the sealed data does not open under this key".into()))?;
            Ok(plain.to_vec())
        })
    }

    fn public_key(&self, alias: &str) -> Result<Vec<u8>, KeystoreError> {
        use aws_lc_rs::signature::KeyPair;
        let keys = self.keys.lock().map_err(|_| KeystoreError::Platform("poisoned".into()))?;
        let k = keys.get(alias).ok_or_else(|| KeystoreError::NotFound(alias.into()))?;
        Ok(pair(&k.material)?.public_key().as_ref().to_vec())
    }

    fn delete_key(&self, alias: &str) -> Result<(), KeystoreError> {
        let mut keys = self.keys.lock().map_err(|_| KeystoreError::Platform("poisoned".into()))?;
        keys.remove(alias);
        Ok(())
    }

    fn is_invalidated(&self, alias: &str) -> bool {
        self.keys.lock().map(|k| k.get(alias).is_some_and(|k| k.invalidated)).unwrap_or(false)
    }
}
