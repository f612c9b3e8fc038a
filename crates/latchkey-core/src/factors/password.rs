//! Passwords: the NIST SP 800-63B-4 §3.1.1.2 policy, and Argon2id hashing with a server pepper on
//! the blocking pool behind a semaphore (each hash in flight holds 19 MiB).
//!
//! Every hash and verification reuses its Argon2 memory from a pool (one buffer per permit):
//! allocating and zeroing 19 MiB per sign-in cost ~20 ms of kernel time in page faults, as much
//! as the hash; and a new hash on a fresh 19 MiB of its own, freed on whichever blocking thread
//! ran it, stayed in that thread's malloc arena — resident memory grew with every sign-up
//! (issue 17: 22 MB idle, 454 MB after 80 sign-ups). With the pool it is bounded by the
//! permits.

use crate::secret::{Random, SecretBytes, SecretString, random_bytes};
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Semaphore;
use unicode_normalization::UnicodeNormalization;

/// NIST §3.1.1.2: at least 8 characters when a password is the only factor.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// We accept well over NIST's 64 and never truncate.
pub const MAX_PASSWORD_CHARS: usize = 256;

const COMMON: &str = include_str!("common-passwords.txt");

fn common_passwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| COMMON.lines().filter(|l| !l.is_empty()).collect())
}

/// Why a password was refused. The message is shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejection {
    /// Fewer than 8 characters (code points, after NFKC).
    #[error("password must be at least 8 characters")]
    TooShort,
    /// More than 256 characters.
    #[error("password must be at most 256 characters")]
    TooLong,
    /// On the list of commonly used or breached passwords.
    #[error("password is too common; choose another")]
    Common,
    /// Same as the username.
    #[error("password must not be the username")]
    SameAsUsername,
}

/// Normalise a password (NFKC, NIST §3.1.1.2) so that "ü" typed as NFC or NFD is one password.
pub fn normalize(password: &str) -> SecretString {
    SecretString::new(password.nfkc().collect::<String>())
}

/// Check a (normalised) password against the policy. No composition rules, by design.
pub fn check_policy(password: &SecretString, canonical_username: &str) -> Result<(), PasswordRejection> {
    let pw = password.expose();
    let chars = pw.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordRejection::TooShort);
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(PasswordRejection::TooLong);
    }
    let lowered = pw.to_lowercase();
    if common_passwords().contains(lowered.as_str()) {
        return Err(PasswordRejection::Common);
    }
    if lowered == canonical_username {
        return Err(PasswordRejection::SameAsUsername);
    }
    Ok(())
}

/// Hashing failed for a reason other than a wrong password (a bug or resource exhaustion).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Argon2id parameters. Defaults: OWASP's m=19 MiB, t=2, p=1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self { m_kib: 19 * 1024, t: 2, p: 1 }
    }
}

/// Where hashing runs: a function that runs each job on a thread of its own choosing. The server
/// passes threads of a lower scheduling priority than the async runtime's (issue 17, item 3);
/// without one, jobs go to tokio's blocking pool.
pub type Runner = Arc<dyn Fn(Box<dyn FnOnce() + Send>) + Send + Sync>;

/// Hashes and verifies secrets (passwords now; PINs and recovery codes later) with Argon2id and
/// the pepper, off the async runtime, at most `concurrency` at a time.
#[derive(Clone)]
pub struct SecretHasher {
    pepper: Arc<SecretBytes>,
    params: Params,
    permits: Arc<Semaphore>,
    runner: Option<Runner>,
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
    dummy: Arc<OnceLock<String>>,
    rng: Arc<dyn Random>,
}

impl SecretHasher {
    /// A hasher with this pepper and parameters.
    pub fn new(
        pepper: SecretBytes,
        params: HashParams,
        concurrency: usize,
        rng: Arc<dyn Random>,
    ) -> Result<Self, HashError> {
        let params = Params::new(params.m_kib, params.t, params.p, None).map_err(|e| HashError(e.to_string()))?;
        Ok(Self {
            pepper: Arc::new(pepper),
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            runner: None,
            memory: Arc::new(Mutex::new(Vec::new())),
            dummy: Arc::new(OnceLock::new()),
            rng,
        })
    }

    /// The same hasher, its jobs run by `runner` (at most `concurrency` at a time, as before).
    #[must_use]
    pub fn with_runner(mut self, runner: Runner) -> Self {
        self.runner = Some(runner);
        self
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) with a fresh 128-bit salt.
    pub async fn hash(&self, secret: &SecretString) -> Result<String, HashError> {
        let salt = random_bytes(self.rng.as_ref(), 16);
        let secret = secret.clone();
        let this = self.clone();
        self.run(move || this.hash_blocking(secret.expose().as_bytes(), &salt)).await
    }

    /// What `hash_password_with_salt` does, on pooled memory: the PHC string of Argon2id with the
    /// configured parameters and the pepper as secret.
    fn hash_blocking(&self, password: &[u8], salt: &[u8]) -> Result<String, HashError> {
        use base64::Engine as _;
        let argon = self.argon()?;
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        self.with_memory(self.params.block_count(), |memory| {
            argon.hash_password_into_with_memory(password, salt, &mut out, memory)
        })?;
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        let p = &self.params;
        Ok(format!(
            "$argon2id$v=19$m={},t={},p={}${}${}",
            p.m_cost(),
            p.t_cost(),
            p.p_cost(),
            b64.encode(salt),
            b64.encode(out)
        ))
    }

    /// Run `f` on a buffer of at least `blocks` Argon2 blocks from the pool, and put it back.
    fn with_memory(&self, blocks: usize, f: impl FnOnce(&mut [Block]) -> argon2::Result<()>) -> Result<(), HashError> {
        let mut memory = self.memory.lock().ok().and_then(|mut pool| pool.pop()).unwrap_or_default();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        let result = f(&mut memory[..blocks]);
        if let Ok(mut pool) = self.memory.lock() {
            pool.push(memory);
        }
        result.map_err(|e| HashError(e.to_string()))
    }

    /// Whether `secret` matches `phc`. With `None` (unknown user) a dummy hash is checked so the
    /// time taken does not reveal whether the account exists; the answer is then always `false`.
    pub async fn verify(&self, secret: &SecretString, phc: Option<&str>) -> Result<bool, HashError> {
        let (phc, real) = match phc {
            Some(p) => (p.to_owned(), true),
            None => (self.dummy_hash().await?, false),
        };
        let secret = secret.clone();
        let this = self.clone();
        let matched = self
            .run(move || match super::legacy::from_stored(&phc) {
                // Imported Argon2 (no pepper): on pooled memory like Latchkey's own.
                Some(Ok(super::legacy::Legacy::Argon2(h))) => {
                    this.verify_blocking(secret.expose().as_bytes(), &h, None)
                }
                // Imported from another system: verified its way (the sign-in then upgrades it).
                Some(legacy) => Ok(legacy.is_ok_and(|l| l.verify(secret.expose().as_bytes()))),
                None => this.verify_blocking(secret.expose().as_bytes(), &phc, Some(this.pepper.expose())),
            })
            .await?;
        Ok(matched && real)
    }

    /// What argon2's `PasswordVerifier` does (parameters from the stored hash, the pepper as
    /// secret when there is one, constant-time comparison), on pooled memory.
    fn verify_blocking(&self, password: &[u8], phc: &str, pepper: Option<&[u8]>) -> Result<bool, HashError> {
        let parsed = PasswordHash::new(phc).map_err(|e| HashError(e.to_string()))?;
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else { return Ok(false) };
        let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).map_err(|e| HashError(e.to_string()))?;
        let version = parsed
            .version
            .map(Version::try_from)
            .transpose()
            .map_err(|e| HashError(e.to_string()))?
            .unwrap_or_default();
        let params = Params::try_from(&parsed).map_err(|e| HashError(e.to_string()))?;
        let blocks = params.block_count();
        let argon = match pepper {
            Some(pepper) => Argon2::new_with_secret(pepper, algorithm, version, params),
            None => Ok(Argon2::new(algorithm, version, params)),
        }
        .map_err(|e| HashError(e.to_string()))?;
        let mut out = vec![0u8; expected.len()];
        self.with_memory(blocks, |memory| argon.hash_password_into_with_memory(password, salt, &mut out, memory))?;
        Ok(crate::secret::ct_eq(&out, expected.as_ref()))
    }

    async fn dummy_hash(&self) -> Result<String, HashError> {
        if let Some(h) = self.dummy.get() {
            return Ok(h.clone());
        }
        let h = self.hash(&SecretString::new("latchkey-dummy-password-for-timing")).await?;
        Ok(self.dummy.get_or_init(|| h).clone())
    }

    fn argon(&self) -> Result<Argon2<'_>, HashError> {
        Argon2::new_with_secret(self.pepper.expose(), Algorithm::Argon2id, Version::V0x13, self.params.clone())
            .map_err(|e| HashError(e.to_string()))
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let _permit = self.permits.acquire().await.map_err(|e| HashError(e.to_string()))?;
        let Some(runner) = &self.runner else {
            return tokio::task::spawn_blocking(f).await.map_err(|e| HashError(e.to_string()))?;
        };
        let (done, outcome) = tokio::sync::oneshot::channel();
        runner(Box::new(move || {
            let _ = done.send(f());
        }));
        outcome.await.map_err(|_| HashError("the hashing thread dropped the job".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::OsRandom;

    fn check(pw: &str) -> Result<(), PasswordRejection> {
        check_policy(&normalize(pw), "alice")
    }

    #[test]
    fn pwd_1_length_and_common_password_rules() {
        assert_eq!(check("Zq7!kd2"), Err(PasswordRejection::TooShort));
        assert_eq!(check("Zq7!kd2x"), Ok(()));
        assert_eq!(check(&"correct horse battery ".repeat(3)[..64]), Ok(()));
        assert_eq!(check(&"a1".repeat(128)), Ok(()));
        assert_eq!(check(&"a".repeat(257)), Err(PasswordRejection::TooLong));
        assert_eq!(check("allloweronly"), Ok(()), "no composition rules");
        assert_eq!(check("password1"), Err(PasswordRejection::Common));
        assert_eq!(check("PASSWORD1"), Err(PasswordRejection::Common));
        assert_eq!(check("12345678"), Err(PasswordRejection::Common));
        assert_eq!(check_policy(&normalize("alice.smith"), "alice.smith"), Err(PasswordRejection::SameAsUsername));
    }

    #[test]
    fn pwd_2_length_counts_code_points_after_nfkc() {
        // Seven "ü" in NFD are 14 code points before normalisation but 7 after: too short.
        let nfd = "u\u{308}".repeat(7);
        assert_eq!(check(&nfd), Err(PasswordRejection::TooShort));
        assert_eq!(normalize(&"u\u{308}".repeat(8)).expose(), normalize(&"\u{fc}".repeat(8)).expose());
    }

    #[tokio::test]
    async fn a_hash_verifies_only_its_own_password_and_never_truncates() {
        let h = SecretHasher::new(
            SecretBytes::new(vec![1; 32]),
            HashParams { m_kib: 1024, t: 1, p: 1 },
            2,
            Arc::new(OsRandom),
        )
        .unwrap();
        let a = format!("{}A", "A".repeat(199));
        let b = format!("{}B", "A".repeat(199));
        let phc = h.hash(&SecretString::new(a.clone())).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$"));
        assert!(h.verify(&SecretString::new(a), Some(&phc)).await.unwrap());
        assert!(!h.verify(&SecretString::new(b), Some(&phc)).await.unwrap());
        assert!(!h.verify(&SecretString::new("anything"), None).await.unwrap());
    }

    #[tokio::test]
    async fn a_hash_on_pooled_memory_is_the_one_the_argon2_crate_makes() {
        use argon2::PasswordHasher as _;
        let h = SecretHasher::new(
            SecretBytes::new(vec![9; 32]),
            HashParams { m_kib: 2048, t: 2, p: 1 },
            1,
            Arc::new(OsRandom),
        )
        .unwrap();
        let salt = [5u8; 16];
        let ours = h.hash_blocking(b"a passphrase here", &salt).unwrap();
        let theirs = h.argon().unwrap().hash_password_with_salt(b"a passphrase here", &salt).unwrap().to_string();
        assert_eq!(ours, theirs);
        // A buffer left larger by a bigger hash is used in part, and the answer is the same.
        h.with_memory(4096, |_| Ok(())).unwrap();
        assert_eq!(h.hash_blocking(b"a passphrase here", &salt).unwrap(), theirs);
    }

    #[tokio::test]
    async fn an_imported_argon2_hash_verifies_on_pooled_memory_without_the_pepper() {
        // argon2-cffi: PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
        //   .hash("correct horse battery", salt=b"0123456789abcdef")
        let imported = crate::factors::legacy::stored(
            "$argon2id$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$69I7qCjDTsQwhQqFvpQJiqEI0lGQvxC84fXE0Ktxca4",
        );
        let h = SecretHasher::new(SecretBytes::new(vec![1; 32]), HashParams::default(), 1, Arc::new(OsRandom)).unwrap();
        let pw = SecretString::new("correct horse battery");
        assert!(h.verify(&pw, Some(&imported)).await.unwrap());
        assert!(!h.verify(&SecretString::new("correct horse battery!"), Some(&imported)).await.unwrap());
    }

    #[tokio::test]
    async fn the_pepper_is_part_of_the_hash() {
        let rng: Arc<dyn Random> = Arc::new(OsRandom);
        let p = HashParams { m_kib: 1024, t: 1, p: 1 };
        let h1 = SecretHasher::new(SecretBytes::new(vec![1; 32]), p, 1, rng.clone()).unwrap();
        let h2 = SecretHasher::new(SecretBytes::new(vec![2; 32]), p, 1, rng).unwrap();
        let phc = h1.hash(&SecretString::new("pepper test pw")).await.unwrap();
        assert!(!h2.verify(&SecretString::new("pepper test pw"), Some(&phc)).await.unwrap());
    }
}
