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
use std::sync::Mutex;

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
    /// An ECDSA P-256/SHA-256 signature (DER) over `message`. For a user-verified key the OS shows
    /// its biometric prompt first.
    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, KeystoreError>;
    /// Delete the key (no error if there is none).
    fn delete_key(&self, alias: &str) -> Result<(), KeystoreError>;
    /// Whether the OS invalidated the key.
    fn is_invalidated(&self, alias: &str) -> bool;
}

struct SoftKey {
    pkcs8: Vec<u8>,
    invalidated: bool,
}

/// Software keys in memory (aws-lc-rs): for desktops, the CLI device emulator and tests. A
/// biometric check always "succeeds"; [`SoftwareKeystore::invalidate`] plays the OS invalidating
/// a key when a new fingerprint is enrolled.
#[derive(Default)]
pub struct SoftwareKeystore {
    keys: Mutex<HashMap<String, SoftKey>>,
}

impl SoftwareKeystore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the OS does to a user-verified key when biometrics change.
    pub fn invalidate(&self, alias: &str) {
        if let Ok(mut keys) = self.keys.lock()
            && let Some(k) = keys.get_mut(alias)
        {
            k.invalidated = true;
        }
    }

    /// The PKCS#8 documents, for saving a software device between runs (the CLI emulator).
    pub fn export(&self) -> Vec<(String, Vec<u8>)> {
        self.keys.lock().map(|k| k.iter().map(|(a, v)| (a.clone(), v.pkcs8.clone())).collect()).unwrap_or_default()
    }

    /// Load keys saved with [`SoftwareKeystore::export`].
    pub fn import(&self, alias: &str, pkcs8: Vec<u8>) -> Result<(), KeystoreError> {
        pair(&pkcs8)?;
        let mut keys = self.keys.lock().map_err(|_| KeystoreError::Platform("poisoned".into()))?;
        keys.insert(alias.into(), SoftKey { pkcs8, invalidated: false });
        Ok(())
    }
}

fn pair(pkcs8: &[u8]) -> Result<aws_lc_rs::signature::EcdsaKeyPair, KeystoreError> {
    aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8)
        .map_err(|e| KeystoreError::Platform(e.to_string()))
}

impl Keystore for SoftwareKeystore {
    fn create_key(&self, alias: &str, _user_verification: bool) -> Result<Vec<u8>, KeystoreError> {
        use aws_lc_rs::signature::KeyPair;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .map_err(|e| KeystoreError::Platform(e.to_string()))?;
        let public = pair(doc.as_ref())?.public_key().as_ref().to_vec();
        let mut keys = self.keys.lock().map_err(|_| KeystoreError::Platform("poisoned".into()))?;
        keys.insert(alias.into(), SoftKey { pkcs8: doc.as_ref().to_vec(), invalidated: false });
        Ok(public)
    }

    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, KeystoreError> {
        let keys = self.keys.lock().map_err(|_| KeystoreError::Platform("poisoned".into()))?;
        let k = keys.get(alias).ok_or_else(|| KeystoreError::NotFound(alias.into()))?;
        if k.invalidated {
            return Err(KeystoreError::Invalidated(alias.into()));
        }
        let sig = pair(&k.pkcs8)?
            .sign(&aws_lc_rs::rand::SystemRandom::new(), message)
            .map_err(|e| KeystoreError::Platform(e.to_string()))?;
        Ok(sig.as_ref().to_vec())
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
