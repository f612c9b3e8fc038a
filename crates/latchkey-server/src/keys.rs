//! Key files in the data directory, created on first start: the ES256 token-signing key
//! (PKCS#8 DER), the AES-256 data key and the pepper (32 random bytes each). Replicas that share a
//! PostgreSQL database must share these files too (see docs/operations.md).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_core::crypto::{Keys, sha256_b64};
use latchkey_core::secret::SecretBytes;
use std::path::Path;

/// The token-signing key.
pub struct SigningKey {
    /// PKCS#8 DER.
    pub pkcs8: SecretBytes,
    /// The key id: a hash of the public key.
    pub kid: String,
    /// Uncompressed public point (65 bytes: 0x04 || x || y).
    pub public: Vec<u8>,
}

/// Everything loaded from the data directory.
pub struct KeyRing {
    /// Token signing.
    pub signing: SigningKey,
    /// Pepper and data key.
    pub keys: Keys,
}

const SIGNING: &str = "jwt-signing-key.p8";
const DATA: &str = "data-key";
const PEPPER: &str = "pepper";

/// Load the keys, creating any that are missing. `created` lists the files written.
pub fn load_or_create(dir: &Path) -> anyhow::Result<(KeyRing, Vec<String>)> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", dir.display()))?;
    let mut created = vec![];
    let pkcs8 = read_or_write(dir, SIGNING, &mut created, || {
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| anyhow::anyhow!("cannot generate a signing key"))
    })?;
    let data_key = read_or_write(dir, DATA, &mut created, || Ok(random32()))?;
    let pepper = read_or_write(dir, PEPPER, &mut created, || Ok(random32()))?;
    if data_key.len() != 32 || pepper.len() != 32 {
        anyhow::bail!("{DATA} and {PEPPER} in {} must be 32 bytes", dir.display());
    }
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
        .map_err(|_| anyhow::anyhow!("{SIGNING} is not a P-256 PKCS#8 key"))?;
    let public = pair.public_key().as_ref().to_vec();
    let kid = sha256_b64(&public).chars().take(16).collect();
    let data_key_id = sha256_b64(&data_key).chars().take(8).collect();
    Ok((
        KeyRing {
            signing: SigningKey { pkcs8: SecretBytes::new(pkcs8), kid, public },
            keys: Keys { pepper: SecretBytes::new(pepper), data_key_id, data_key: SecretBytes::new(data_key) },
        },
        created,
    ))
}

fn random32() -> Vec<u8> {
    let mut b = vec![0u8; 32];
    latchkey_core::secret::Random::fill(&latchkey_core::secret::OsRandom, &mut b);
    b
}

fn read_or_write(
    dir: &Path,
    name: &str,
    created: &mut Vec<String>,
    make: impl FnOnce() -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(name);
    if path.exists() {
        return std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()));
    }
    let bytes = make()?;
    write_private(&path, &bytes)?;
    created.push(path.display().to_string());
    Ok(bytes)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

impl SigningKey {
    /// The public JWK.
    pub fn jwk(&self) -> serde_json::Value {
        let (x, y) = self.public.get(1..33).zip(self.public.get(33..65)).unwrap_or((&[], &[]));
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        })
    }
}
