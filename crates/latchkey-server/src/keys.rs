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
    /// Keys published in the JWKS and accepted, but not signing: a staged next key and the
    /// retired previous one (see [`rotate_jwt`]).
    pub published: Vec<SigningKey>,
    /// Pepper and data key.
    pub keys: Keys,
    /// Each file's fingerprint, as recorded in the database.
    pub fingerprints: Vec<(String, String)>,
}

const SIGNING: &str = "jwt-signing-key.p8";
/// A staged token-signing key: published, not yet signing.
const NEXT: &str = "jwt-signing-key.next.p8";
/// The previous token-signing key: published until its tokens have expired.
const RETIRED: &str = "jwt-signing-key.retired.p8";
const DATA: &str = "data-key";
const PEPPER: &str = "pepper";

/// The key files present in `dir`, by name: what a backup must hold.
pub fn key_files(dir: &Path) -> Vec<&'static str> {
    [SIGNING, NEXT, RETIRED, DATA, PEPPER].into_iter().filter(|n| dir.join(n).exists()).collect()
}

/// Whether `name` is one of the key files (a restore writes only these and the database).
pub fn is_key_file(name: &str) -> bool {
    [SIGNING, NEXT, RETIRED, DATA, PEPPER].contains(&name)
}

/// Write a file only its owner can read; refuses to replace one.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_private(path, bytes)
}

/// Load the keys for a server whose database is `store`: new keys only for a database that has
/// none recorded and no accounts; otherwise every file must be there and match the fingerprints
/// the database recorded, or the server refuses to start and says what to restore (a fresh
/// pepper or data key would silently break every password, PIN and sealed secret).
pub async fn load_checked(
    dir: &Path,
    store: &dyn latchkey_core::store::Store,
    now: time::OffsetDateTime,
) -> anyhow::Result<(KeyRing, Vec<String>)> {
    let recorded = store.key_fingerprints().await.map_err(|e| anyhow::anyhow!("cannot read key fingerprints: {e}"))?;
    let fresh = recorded.is_empty() && !store.has_users().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let (ring, created) = load(dir, fresh)?;
    if recorded.is_empty() {
        store
            .record_key_fingerprints(&ring.fingerprints, now)
            .await
            .map_err(|e| anyhow::anyhow!("cannot record key fingerprints: {e}"))?;
    }
    // Re-read: another replica may have recorded first, with other files.
    let recorded = store.key_fingerprints().await.map_err(|e| anyhow::anyhow!("cannot read key fingerprints: {e}"))?;
    check_fingerprints(dir, &ring, &recorded)?;
    Ok((ring, created))
}

fn check_fingerprints(dir: &Path, ring: &KeyRing, recorded: &[(String, String)]) -> anyhow::Result<()> {
    for (name, fp) in recorded {
        let ours = ring.fingerprints.iter().find(|(n, _)| n == name).map(|(_, f)| f.as_str());
        if ours != Some(fp.as_str()) {
            anyhow::bail!(
                "{} in {} is not the key this database was set up with (fingerprint {} expected, {} found). \
                 Restore the right file from your backup (or point data_dir at it); every replica of one \
                 database needs the same key files",
                name,
                dir.display(),
                fp,
                ours.unwrap_or("none"),
            );
        }
    }
    Ok(())
}

/// Load the keys, creating any that are missing when `create`; otherwise a missing file is an
/// error that says what to restore. `created` lists the files written.
pub fn load(dir: &Path, create: bool) -> anyhow::Result<(KeyRing, Vec<String>)> {
    if create {
        create_data_dir(dir)?;
    } else if !dir.is_dir() {
        anyhow::bail!(
            "no Latchkey data in {}: run this where `latchkey serve` keeps its data, or pass --data-dir",
            dir.display()
        );
    }
    let mut created = vec![];
    let pkcs8 = read_or_write(dir, SIGNING, create, &mut created, new_signing_key)?;
    let data_key = read_or_write(dir, DATA, create, &mut created, || Ok(random32()))?;
    let pepper = read_or_write(dir, PEPPER, create, &mut created, || Ok(random32()))?;
    if data_key.len() != 32 || pepper.len() != 32 {
        anyhow::bail!("{DATA} and {PEPPER} in {} must be 32 bytes", dir.display());
    }
    let signing = signing_key(SIGNING, pkcs8)?;
    let mut published = vec![];
    for name in [NEXT, RETIRED] {
        let path = dir.join(name);
        if path.exists() {
            let der = std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            published.push(signing_key(name, der)?);
        }
    }
    let data_key_id = sha256_b64(&data_key).chars().take(8).collect();
    let fingerprints = vec![
        (SIGNING.to_owned(), fingerprint(SIGNING, &signing.public)),
        (DATA.to_owned(), fingerprint(DATA, &data_key)),
        (PEPPER.to_owned(), fingerprint(PEPPER, &pepper)),
    ];
    Ok((
        KeyRing {
            signing,
            published,
            keys: Keys { pepper: SecretBytes::new(pepper), data_key_id, data_key: SecretBytes::new(data_key) },
            fingerprints,
        },
        created,
    ))
}

/// A P-256 PKCS#8 signing key read from the file `name`.
fn signing_key(name: &str, pkcs8: Vec<u8>) -> anyhow::Result<SigningKey> {
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
        .map_err(|_| anyhow::anyhow!("{name} is not a P-256 PKCS#8 key"))?;
    let public = pair.public_key().as_ref().to_vec();
    let kid = sha256_b64(&public).chars().take(16).collect();
    Ok(SigningKey { pkcs8: SecretBytes::new(pkcs8), kid, public })
}

fn new_signing_key() -> anyhow::Result<Vec<u8>> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| anyhow::anyhow!("cannot generate a signing key"))
}

/// A step of the token-signing key's rotation (docs/operations.md, "Rotating keys").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtRotation {
    /// Write a new key beside the current one: published in the JWKS and accepted, not signing.
    Stage,
    /// Sign with the staged key; the current one is kept, published and accepted, as retired.
    Activate,
    /// Remove the retired key: tokens it signed are refused from the next start.
    Retire,
}

/// Take one step of the token-signing key's rotation in `dir`, for the database `store` (which
/// records the signing key's fingerprint). Returns what was done, for the operator. Every
/// replica must be restarted (with the same files) after each step.
pub async fn rotate_jwt(
    dir: &Path,
    store: &dyn latchkey_core::store::Store,
    step: JwtRotation,
    now: time::OffsetDateTime,
) -> anyhow::Result<String> {
    let (ring, _) = load_checked_existing(dir, store).await?;
    let (next, retired) = (dir.join(NEXT), dir.join(RETIRED));
    match step {
        JwtRotation::Stage => {
            if next.exists() {
                anyhow::bail!("a key is staged already ({}): activate it first", next.display());
            }
            let der = new_signing_key()?;
            let kid = signing_key(NEXT, der.clone())?.kid;
            write_private(&next, &der)?;
            Ok(format!(
                "staged signing key {kid} in {}. Restart every replica so the JWKS publishes it; once resource \
                 servers have refreshed their JWKS cache, run `latchkey keys rotate --jwt --activate`",
                next.display()
            ))
        }
        JwtRotation::Activate => {
            if !next.exists() {
                anyhow::bail!("no key is staged: run `latchkey keys rotate --jwt` first");
            }
            if retired.exists() {
                anyhow::bail!(
                    "a retired key is still published ({}): run `latchkey keys rotate --jwt --retire` once the tokens \
                     it signed have expired, then activate",
                    retired.display()
                );
            }
            let der = std::fs::read(&next)?;
            let new = signing_key(NEXT, der)?;
            // The current key is copied to the retired slot first and the staged one renamed over
            // it: at every moment there is a signing key on disk.
            write_private(&retired, ring.signing.pkcs8.expose())?;
            std::fs::rename(&next, dir.join(SIGNING))?;
            let (old_fp, new_fp) = (fingerprint(SIGNING, &ring.signing.public), fingerprint(SIGNING, &new.public));
            let recorded = store
                .replace_key_fingerprint(SIGNING, &old_fp, &new_fp, now)
                .await
                .map_err(|e| anyhow::anyhow!("the files are rotated but the database could not record it: {e}"))?;
            if !recorded {
                anyhow::bail!(
                    "the files are rotated but the database records another signing key: was it rotated twice?"
                );
            }
            Ok(format!(
                "now signing with {} (the previous key {} stays published and accepted). Restart every replica; \
                 once the tokens it signed have expired (policy.tokens.access_ttl_secs), run \
                 `latchkey keys rotate --jwt --retire`",
                new.kid, ring.signing.kid
            ))
        }
        JwtRotation::Retire => {
            if !retired.exists() {
                anyhow::bail!("no retired key to remove");
            }
            let kid = signing_key(RETIRED, std::fs::read(&retired)?)?.kid;
            std::fs::remove_file(&retired)?;
            Ok(format!("removed the retired key {kid}. Restart every replica: tokens it signed are refused from then"))
        }
    }
}

/// Keys of an existing data directory, checked against the database's record (read only).
pub async fn load_checked_existing(
    dir: &Path,
    store: &dyn latchkey_core::store::Store,
) -> anyhow::Result<(KeyRing, Vec<String>)> {
    let (ring, created) = load(dir, false)?;
    let recorded = store.key_fingerprints().await.map_err(|e| anyhow::anyhow!("cannot read key fingerprints: {e}"))?;
    check_fingerprints(dir, &ring, &recorded)?;
    Ok((ring, created))
}

/// A key file's fingerprint: 96 bits of SHA-256 over a label and the key (the public key for the
/// signing key), enough to tell files apart and nothing to learn a 256-bit secret from.
fn fingerprint(name: &str, bytes: &[u8]) -> String {
    let mut input = format!("latchkey key fingerprint\0{name}\0").into_bytes();
    input.extend_from_slice(bytes);
    sha256_b64(&input).chars().take(16).collect()
}

/// The data directory (if missing), which only its owner can enter.
pub fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", dir.display()))
}

fn random32() -> Vec<u8> {
    let mut b = vec![0u8; 32];
    latchkey_core::secret::Random::fill(&latchkey_core::secret::OsRandom, &mut b);
    b
}

fn read_or_write(
    dir: &Path,
    name: &str,
    create: bool,
    created: &mut Vec<String>,
    make: impl FnOnce() -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(name);
    if path.exists() {
        return std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()));
    }
    if !create {
        anyhow::bail!(
            "{} is missing, but this data already has keys. Restore {name} (and the other key files) \
             from your backup into {}, or point data_dir at them; new keys would make every password, \
             PIN and sealed secret stop working",
            path.display(),
            dir.display()
        );
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
