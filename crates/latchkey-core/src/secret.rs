//! Secret values and randomness: redacted `Debug`, zeroized on drop, constant-time comparison.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret string (password, code, token). Its `Debug` never shows the value.
#[derive(Clone, Zeroize, ZeroizeOnDrop, Default)]
pub struct SecretString(String);

impl SecretString {
    /// Wrap a value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The value, for hashing or sending. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// Secret key material. Its `Debug` never shows the bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wrap bytes.
    pub fn new(b: Vec<u8>) -> Self {
        Self(b)
    }
    /// The bytes. Never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

/// Constant-time equality of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Where randomness comes from; injected so tests could replace it.
pub trait Random: Send + Sync + 'static {
    /// Fill `buf` with cryptographically secure random bytes.
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's CSPRNG (through aws-lc).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        // aws-lc's RNG only fails if the OS has no entropy source; fail closed by leaving an
        // all-zero buffer would be dangerous, so abort instead: there is no safe way to continue.
        if aws_lc_rs::rand::fill(buf).is_err() {
            std::process::abort();
        }
    }
}

/// `n` random bytes.
pub fn random_bytes(rng: &dyn Random, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill(&mut v);
    v
}

/// A URL-safe opaque token of `bytes` random bytes (32 bytes = 256 bits).
pub fn random_token(rng: &dyn Random, bytes: usize) -> SecretString {
    SecretString::new(URL_SAFE_NO_PAD.encode(random_bytes(rng, bytes)))
}

/// A uniformly random decimal code of `digits` digits (rejection sampling, no modulo bias).
pub fn random_digits(rng: &dyn Random, digits: u32) -> SecretString {
    let modulus = 10u64.pow(digits);
    // The largest multiple of `modulus` that fits in u64; values above it are rejected.
    let limit = u64::MAX - (u64::MAX % modulus);
    loop {
        let mut b = [0u8; 8];
        rng.fill(&mut b);
        let v = u64::from_le_bytes(b);
        if v < limit {
            return SecretString::new(format!("{:0width$}", v % modulus, width = digits as usize));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_requested_number_of_digits_and_vary() {
        let codes: std::collections::HashSet<String> =
            (0..200).map(|_| random_digits(&OsRandom, 6).expose().to_owned()).collect();
        assert!(codes.iter().all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit())));
        assert!(codes.len() > 190, "200 codes should be almost all distinct");
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let s = SecretString::new("hunter2hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
