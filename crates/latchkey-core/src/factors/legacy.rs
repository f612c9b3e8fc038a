//! Password hashes brought from another system (issue 15, item 3): verified as that system
//! verifies them, and replaced by Latchkey's own Argon2id with the pepper on the next sign-in
//! that proves the password. Stored with the prefix [`PREFIX`], so they never pass for a native
//! hash (a `$argon2id$` from elsewhere has no pepper).
//!
//! Formats:
//! - bcrypt (`$2a$`, `$2b$`, `$2y$`): Supabase, Auth0, most Rails and Node systems;
//! - Argon2 (`$argon2id$`, `$argon2i$`) PHC strings;
//! - PBKDF2-SHA256: passlib's `$pbkdf2-sha256$<rounds>$<salt>$<hash>`, the PHC
//!   `$pbkdf2-sha256$i=<rounds>[,l=<len>]$<salt>$<hash>` (Keycloak's credential maps to it,
//!   docs/migration.md), and Django's `pbkdf2_sha256$<rounds>$<salt>$<hash>`;
//! - scrypt PHC `$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<hash>` (passlib, RustCrypto);
//! - Firebase Authentication's modified scrypt:
//!   `$firebase-scrypt$rounds=<r>,mem_cost=<m>,salt_separator=<b64>,signer_key=<b64>$<salt b64>$<hash b64>`,
//!   the project's hash parameters (Firebase console → Authentication → password hash
//!   parameters) and the user's `salt` and `passwordHash` from `firebase auth:export`.
//!
//! Costs are bounded, so an imported hash cannot make a sign-in hang or exhaust memory.

use aws_lc_rs::cipher::{AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use std::num::NonZeroU32;

/// The stored prefix of an imported hash.
pub const PREFIX: &str = "legacy:";

/// A parsed imported hash.
#[derive(Clone, PartialEq, Eq)]
pub enum Legacy {
    /// A bcrypt modular-crypt string.
    Bcrypt(String),
    /// An Argon2 PHC string (no pepper).
    Argon2(String),
    /// PBKDF2-HMAC-SHA256.
    Pbkdf2 {
        /// Iterations.
        rounds: u32,
        /// Salt.
        salt: Vec<u8>,
        /// Derived key.
        hash: Vec<u8>,
    },
    /// scrypt.
    Scrypt {
        /// log2 of N.
        log_n: u8,
        /// Block size.
        r: u32,
        /// Parallelism.
        p: u32,
        /// Salt.
        salt: Vec<u8>,
        /// Derived key.
        hash: Vec<u8>,
    },
    /// Firebase's modified scrypt.
    Firebase {
        /// scrypt's r.
        rounds: u32,
        /// log2 of scrypt's N.
        mem_cost: u8,
        /// Appended to the salt.
        salt_separator: Vec<u8>,
        /// Encrypted with the derived key; the result is the hash.
        signer_key: Vec<u8>,
        /// The user's salt.
        salt: Vec<u8>,
        /// The user's hash.
        hash: Vec<u8>,
    },
}

impl std::fmt::Debug for Legacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.scheme())
    }
}

/// Base64 as these systems write it: standard, URL-safe, or passlib's adapted alphabet (`.` for
/// `+`), with or without padding.
fn b64(s: &str) -> Result<Vec<u8>, String> {
    let s = s.replace(['.', '-'], "+").replace('_', "/");
    STANDARD_NO_PAD.decode(s.trim_end_matches('=')).map_err(|_| "not base64".to_owned())
}

fn number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("{what} is not a number"))
}

/// `k=v,k=v` parameters.
fn params(s: &str) -> Vec<(&str, &str)> {
    s.split(',').filter_map(|kv| kv.split_once('=')).collect()
}

fn param<'a>(p: &[(&str, &'a str)], k: &str) -> Result<&'a str, String> {
    p.iter().find(|(n, _)| *n == k).map(|(_, v)| *v).ok_or_else(|| format!("no {k}"))
}

const MAX_PBKDF2_ROUNDS: u32 = 10_000_000;
const MAX_SCRYPT_MEMORY: u64 = 1 << 30;

fn check_scrypt(log_n: u8, r: u32, p: u32) -> Result<(), String> {
    let memory = 128u64.saturating_mul(u64::from(r)).saturating_mul(1u64 << log_n.min(63));
    if log_n == 0 || log_n > 22 || r == 0 || p == 0 || p > 16 || memory > MAX_SCRYPT_MEMORY {
        return Err("scrypt parameters out of range (N up to 2^22, 1 GiB of memory, p up to 16)".into());
    }
    Ok(())
}

impl Legacy {
    /// Recognise a hash as the import file gives it (without [`PREFIX`]). The error says what is
    /// wrong without repeating the hash.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.starts_with("$2a$") || s.starts_with("$2b$") || s.starts_with("$2y$") {
            let cost: u32 = s.get(4..6).ok_or("bcrypt: no cost")?.parse().map_err(|_| "bcrypt: no cost")?;
            if !(4..=16).contains(&cost) || s.len() != 60 {
                return Err("bcrypt: cost 4 to 16 and 60 characters".into());
            }
            return Ok(Legacy::Bcrypt(s.to_owned()));
        }
        if s.starts_with("$argon2id$") || s.starts_with("$argon2i$") {
            let h = argon2::PasswordHash::new(s).map_err(|e| format!("argon2: {e}"))?;
            let p = argon2::Params::try_from(&h).map_err(|e| format!("argon2: {e}"))?;
            if p.m_cost() > 1 << 20 || p.t_cost() > 10 || h.hash.is_none() || h.salt.is_none() {
                return Err("argon2: at most 1 GiB and 10 passes, with salt and hash".into());
            }
            return Ok(Legacy::Argon2(s.to_owned()));
        }
        let parts: Vec<&str> = s.split('$').collect();
        let pbkdf2 = |rounds: u32, salt: Vec<u8>, hash: Vec<u8>| {
            if rounds == 0 || rounds > MAX_PBKDF2_ROUNDS || hash.len() < 16 || salt.is_empty() {
                return Err("pbkdf2-sha256: 1 to 10,000,000 rounds, a salt and a 16+ byte hash".to_owned());
            }
            Ok(Legacy::Pbkdf2 { rounds, salt, hash })
        };
        match parts.as_slice() {
            ["", "pbkdf2-sha256", rounds, salt, hash] => {
                let rounds = match rounds.strip_prefix("i=") {
                    Some(_) => number(param(&params(rounds), "i")?, "i")?,
                    None => number(rounds, "rounds")?,
                };
                pbkdf2(rounds, b64(salt)?, b64(hash)?)
            }
            ["pbkdf2_sha256", rounds, salt, hash] => pbkdf2(
                number(rounds, "rounds")?,
                salt.as_bytes().to_vec(),
                STANDARD.decode(hash).map_err(|_| "not base64")?,
            ),
            ["", "scrypt", p, salt, hash] => {
                let p = params(p);
                let (log_n, r, par) =
                    (number(param(&p, "ln")?, "ln")?, number(param(&p, "r")?, "r")?, number(param(&p, "p")?, "p")?);
                check_scrypt(log_n, r, par)?;
                let hash = b64(hash)?;
                if hash.len() < 16 {
                    return Err("scrypt: a 16+ byte hash".into());
                }
                Ok(Legacy::Scrypt { log_n, r, p: par, salt: b64(salt)?, hash })
            }
            ["", "firebase-scrypt", p, salt, hash] => {
                let p = params(p);
                let (rounds, mem_cost) =
                    (number(param(&p, "rounds")?, "rounds")?, number(param(&p, "mem_cost")?, "mem_cost")?);
                check_scrypt(mem_cost, rounds, 1)?;
                let signer_key = b64(param(&p, "signer_key")?)?;
                let hash = b64(hash)?;
                if signer_key.is_empty() || hash.len() != signer_key.len() {
                    return Err("firebase-scrypt: the hash is as long as the signer key".into());
                }
                Ok(Legacy::Firebase {
                    rounds,
                    mem_cost,
                    salt_separator: b64(param(&p, "salt_separator")?)?,
                    signer_key,
                    salt: b64(salt)?,
                    hash,
                })
            }
            _ => Err("not a recognised password hash (bcrypt, argon2, pbkdf2-sha256, scrypt, firebase-scrypt)".into()),
        }
    }

    /// The scheme's name, for the audit log and reports (never the hash).
    pub fn scheme(&self) -> &'static str {
        match self {
            Legacy::Bcrypt(_) => "bcrypt",
            Legacy::Argon2(_) => "argon2",
            Legacy::Pbkdf2 { .. } => "pbkdf2-sha256",
            Legacy::Scrypt { .. } => "scrypt",
            Legacy::Firebase { .. } => "firebase-scrypt",
        }
    }

    /// Whether `password` is the one this hash was made from (blocking: run it off the async
    /// runtime). Comparisons are constant-time.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Legacy::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Legacy::Argon2(h) => {
                use argon2::PasswordVerifier as _;
                argon2::PasswordHash::new(h)
                    .is_ok_and(|parsed| argon2::Argon2::default().verify_password(password, &parsed).is_ok())
            }
            Legacy::Pbkdf2 { rounds, salt, hash } => NonZeroU32::new(*rounds).is_some_and(|n| {
                aws_lc_rs::pbkdf2::verify(aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256, n, salt, password, hash).is_ok()
            }),
            Legacy::Scrypt { log_n, r, p, salt, hash } => {
                let mut out = vec![0u8; hash.len()];
                scrypt::Params::new(*log_n, *r, *p)
                    .ok()
                    .and_then(|params| scrypt::scrypt(password, salt, &params, &mut out).ok())
                    .is_some_and(|()| crate::secret::ct_eq(&out, hash))
            }
            Legacy::Firebase { rounds, mem_cost, salt_separator, signer_key, salt, hash } => {
                let mut key = [0u8; 32];
                let mut salted = salt.clone();
                salted.extend_from_slice(salt_separator);
                let derived = scrypt::Params::new(*mem_cost, *rounds, 1)
                    .ok()
                    .and_then(|params| scrypt::scrypt(password, &salted, &params, &mut key).ok());
                if derived.is_none() {
                    return false;
                }
                let mut out = signer_key.clone();
                let encrypted = UnboundCipherKey::new(&AES_256, &key).and_then(EncryptingKey::ctr).and_then(|k| {
                    k.less_safe_encrypt(&mut out, EncryptionContext::Iv128(FixedLength::from([0u8; 16])))
                });
                encrypted.is_ok() && crate::secret::ct_eq(&out, hash)
            }
        }
    }
}

/// The stored form of an imported hash.
pub fn stored(original: &str) -> String {
    format!("{PREFIX}{original}")
}

/// An imported hash as stored, if `stored` is one.
pub fn from_stored(stored: &str) -> Option<Result<Legacy, String>> {
    stored.strip_prefix(PREFIX).map(Legacy::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &[u8] = b"correct horse battery";

    fn check(hash: &str, password: &[u8], scheme: &str) {
        let l = Legacy::parse(hash).unwrap_or_else(|e| panic!("{hash}: {e}"));
        assert_eq!(l.scheme(), scheme);
        assert!(l.verify(password), "{scheme} verifies its own password");
        assert!(!l.verify(b"correct horse batterz"), "{scheme} refuses another");
    }

    // Vectors made by each system's own library (pip install django==5.2.19 passlib==1.7.4
    // bcrypt==5.0.0 argon2-cffi==25.1.0), password "correct horse battery":
    //   django make_password(pw, salt="Zr4bKwlD1mYcYoV3nTqX0a", hasher="pbkdf2_sha256")
    //   passlib pbkdf2_sha256.using(rounds=29000, salt=b"0123456789abcdef").hash(pw)
    //   passlib scrypt.using(rounds=14, salt=b"0123456789abcdef").hash(pw)
    //   bcrypt.hashpw(pw, bcrypt.gensalt(rounds=10, prefix=b"2a" / b"2b"))
    //   argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1[, type=Type.I]).hash(pw, salt=b"0123456789abcdef")
    #[test]
    fn known_answers_from_each_systems_own_library() {
        check("$2a$10$1vBhSCeglo/T0bmZ/XTUEueb55LJvcfwaR0BdFmy2oBkfsAMMwHge", PW, "bcrypt");
        check("$2b$10$RD3O9tErYQGB/MB2j.c43e3Pm.yFiobf.8zfQ8Z.W5QhM8VdHtO8C", PW, "bcrypt");
        check(
            "$argon2id$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$69I7qCjDTsQwhQqFvpQJiqEI0lGQvxC84fXE0Ktxca4",
            PW,
            "argon2",
        );
        check(
            "$argon2i$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$O87CbnMk7IlfDfBn0JoIpSmqi8BlTfQLhvL33gdIypU",
            PW,
            "argon2",
        );
        check(
            "pbkdf2_sha256$1000000$Zr4bKwlD1mYcYoV3nTqX0a$fJKm5ak8/KlBgOsySFuCPXzYl//WgaKPfl6jszeIIBw=",
            PW,
            "pbkdf2-sha256",
        );
        check(
            "$pbkdf2-sha256$29000$MDEyMzQ1Njc4OWFiY2RlZg$HwysB.Ke0YuzHEd/zzqZI6iTbuC8ephxy6jSfQdwV8M",
            PW,
            "pbkdf2-sha256",
        );
        check("$scrypt$ln=14,r=8,p=1$MDEyMzQ1Njc4OWFiY2RlZg$ebnHHTApWa0oNoXTYCCHxLXDaejcvcTRQhZaD1OJNCE", PW, "scrypt");
    }

    /// The PHC form of PBKDF2 (Keycloak's credential mapped as docs/migration.md says): the same
    /// derived key as passlib's above, written with `i=` and standard base64.
    #[test]
    fn the_phc_form_of_pbkdf2_is_the_same_key() {
        check(
            "$pbkdf2-sha256$i=29000,l=32$MDEyMzQ1Njc4OWFiY2RlZg$HwysB+Ke0YuzHEd/zzqZI6iTbuC8ephxy6jSfQdwV8M",
            PW,
            "pbkdf2-sha256",
        );
    }

    /// Firebase's own documented example (github.com/firebase/scrypt, README): project
    /// parameters and a user exported with `firebase auth:export`.
    #[test]
    fn firebase_scrypt_verifies_firebases_documented_example() {
        let hash = concat!(
            "$firebase-scrypt$rounds=8,mem_cost=14,salt_separator=Bw==,",
            "signer_key=jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA==",
            "$42xEC+ixf3L2lw==",
            "$lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198JAdRuid5lQ=="
        );
        check(hash, b"user1password", "firebase-scrypt");
    }

    #[test]
    fn unknown_formats_and_ruinous_costs_are_refused_without_echoing_the_hash() {
        for bad in [
            "5f4dcc3b5aa765d61d8327deb882cf99",
            "$1$saltsalt$hash",
            "$2b$31$RD3O9tErYQGB/MB2j.c43e3Pm.yFiobf.8zfQ8Z.W5QhM8VdHtO8C",
            "$scrypt$ln=30,r=8,p=1$MDEy$ebnHHTApWa0oNoXTYCCHxLXDaejcvcTRQhZaD1OJNCE",
            "$pbkdf2-sha256$4000000000$MDEy$HwysB.Ke0YuzHEd/zzqZI6iTbuC8ephxy6jSfQdwV8M",
            "$argon2id$v=19$m=4194304,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$69I7qCjDTsQwhQqFvpQJiqEI0lGQvxC84fXE0Ktxca4",
        ] {
            let e = Legacy::parse(bad).unwrap_err();
            assert!(!e.contains(bad), "{e}");
        }
        assert!(from_stored("$argon2id$v=19$…").is_none(), "a native hash is not a legacy one");
        assert_eq!(
            from_stored(&stored("$2b$10$RD3O9tErYQGB/MB2j.c43e3Pm.yFiobf.8zfQ8Z.W5QhM8VdHtO8C")).map(|l| l.is_ok()),
            Some(true)
        );
    }
}
