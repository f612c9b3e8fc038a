//! Recovery codes: ten single-use codes of 120 bits each, shown once, stored as MACs.

use crate::secret::{Random, random_bytes};

/// Ten codes of 15 random bytes: 24 Base32 characters, 120 bits (checklist REC-1 asks ≥ 64).
pub const RECOVERY_CODE_COUNT: usize = 10;
const RECOVERY_CODE_BYTES: usize = 15;

/// A fresh recovery code: 120 bits from the CSPRNG as 24 Base32 characters in groups of four.
pub fn new_recovery_code(rng: &dyn Random) -> String {
    let raw = data_encoding::BASE32_NOPAD.encode(&random_bytes(rng, RECOVERY_CODE_BYTES));
    raw.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-")
}

/// A recovery code as typed: case, spaces and dashes do not matter.
pub fn normalize_recovery_code(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::OsRandom;

    #[test]
    fn rec_1_recovery_codes_carry_120_bits_and_10k_of_them_never_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let code = new_recovery_code(&OsRandom);
            let raw = normalize_recovery_code(&code);
            assert_eq!((code.len(), raw.len()), (29, 24), "{code}");
            assert_eq!(data_encoding::BASE32_NOPAD.decode(raw.as_bytes()).unwrap().len(), 15, "120 bits");
            assert!(seen.insert(raw), "a duplicate among 10k codes");
        }
        assert_eq!(normalize_recovery_code(" abcd-efgh ijkl "), "ABCDEFGHIJKL", "case, dashes, spaces");
    }
}
