//! The token vault (seed 002: biometrics as cryptographic binding, not a boolean). The refresh
//! token is kept only sealed under a key the OS releases after a biometric check; when new
//! biometrics are enrolled the OS invalidates that key and the sealed token is gone for good, so
//! whoever enrolled their finger on the phone finds no session to resume.

use crate::{Client, Keystore, KeystoreError, Result};
use latchkey_proto::Tokens;
use std::sync::Arc;

/// Seals a device's refresh token under its biometric-released vault key.
#[derive(Clone)]
pub struct TokenVault {
    keystore: Arc<dyn Keystore>,
    alias: String,
}

impl std::fmt::Debug for TokenVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVault").field("alias", &self.alias).finish_non_exhaustive()
    }
}

impl TokenVault {
    /// The vault of `device_id` in `keystore` (alias `latchkey.<device_id>.vault`).
    pub fn new(keystore: Arc<dyn Keystore>, device_id: &str) -> Self {
        Self { keystore, alias: format!("latchkey.{device_id}.vault") }
    }

    /// Seal a refresh token; store the bytes anywhere (they are useless without the unlock).
    /// Creates the vault key, or replaces an invalidated one.
    pub fn seal(&self, refresh_token: &str) -> Result<Vec<u8>> {
        Ok(self.keystore.seal(&self.alias, refresh_token.as_bytes())?)
    }

    /// Open a sealed refresh token (the OS shows its biometric prompt). When the OS invalidated
    /// the key, the key is deleted and [`KeystoreError::Invalidated`] returned: discard the sealed
    /// bytes, sign in with the PIN and seal the new session's token.
    pub fn open(&self, sealed: &[u8]) -> Result<String> {
        match self.keystore.open(&self.alias, sealed) {
            Ok(plain) => String::from_utf8(plain)
                .map_err(|_| KeystoreError::Platform("the vault held something other than a token".into()).into()),
            Err(e @ KeystoreError::Invalidated(_)) => {
                self.clear()?;
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Delete the vault key: every token sealed under it is gone (sign-out).
    pub fn clear(&self) -> Result<()> {
        Ok(self.keystore.delete_key(&self.alias)?)
    }
}

impl Client {
    /// Resume a device session from the vault: open the sealed refresh token (biometric prompt),
    /// refresh it with a DPoP proof, seal the new one. Returns the tokens and the bytes to store
    /// in place of `sealed`.
    pub async fn refresh_sealed(&self, vault: &TokenVault, sealed: &[u8]) -> Result<(Tokens, Vec<u8>)> {
        let refresh_token = vault.open(sealed)?;
        let tokens = self.refresh(&refresh_token).await?;
        let sealed = vault.seal(&tokens.refresh_token)?;
        Ok((tokens, sealed))
    }
}
