//! HOTP (RFC 4226) and TOTP (RFC 6238), hand-written because they are small and core.
//!
//! Verification follows RFC 6238 §5.2 and Latchkey's policy: accept the current step and the one
//! before it (network delay), never a step at or below the last one accepted — so a code works
//! once, and after step T is used a still-valid code for T−1 does not. The caller stores the
//! returned step atomically (compare-and-swap on the last step) to make that hold under concurrency.

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// The HMAC of the one-time password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum TotpAlgorithm {
    /// HMAC-SHA-1: what every authenticator app honours (the default).
    #[default]
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

/// TOTP parameters. The defaults (SHA-1, 6 digits, 30 s) are the only ones Google Authenticator
/// honours; the others exist for the RFC vectors and hardware tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpParams {
    /// The HMAC.
    pub algorithm: TotpAlgorithm,
    /// 6 to 8.
    pub digits: u32,
    /// The time step in seconds.
    pub period: u64,
}

impl Default for TotpParams {
    fn default() -> Self {
        Self { algorithm: TotpAlgorithm::Sha1, digits: 6, period: 30 }
    }
}

/// The HOTP value of `counter` (RFC 4226 §5.3: dynamic truncation, modulo 10^digits).
pub fn hotp(secret: &[u8], counter: u64, digits: u32, algorithm: TotpAlgorithm) -> String {
    let alg = match algorithm {
        TotpAlgorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        TotpAlgorithm::Sha256 => hmac::HMAC_SHA256,
        TotpAlgorithm::Sha512 => hmac::HMAC_SHA512,
    };
    let tag = hmac::sign(&hmac::Key::new(alg, secret), &counter.to_be_bytes());
    let mac = tag.as_ref();
    // The low nibble of the last byte picks 4 bytes; the MAC is at least 20 bytes, so offset+3 < len.
    let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
    let word = mac.get(offset..offset + 4).map(|b| u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]])).unwrap_or(0);
    let modulus = 10u64.pow(digits.clamp(1, 9));
    format!("{:0width$}", u64::from(word) % modulus, width = digits.clamp(1, 9) as usize)
}

/// The time step containing `unix_seconds` (T0 = 0). `u64`, so year 2603 does not overflow.
pub fn step_at(unix_seconds: u64, params: &TotpParams) -> u64 {
    unix_seconds / params.period.max(1)
}

/// The TOTP code at `unix_seconds`.
pub fn totp_at(secret: &[u8], unix_seconds: u64, params: &TotpParams) -> String {
    hotp(secret, step_at(unix_seconds, params), params.digits, params.algorithm)
}

/// The step a code matches: the current step or the one before, strictly after `last_step`.
/// `None` for a wrong, replayed, too old or malformed code (one and the same refusal).
pub fn verify(
    secret: &[u8],
    code: &str,
    unix_seconds: u64,
    last_step: Option<u64>,
    params: &TotpParams,
) -> Option<u64> {
    let code = code.trim();
    if code.len() != params.digits as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_at(unix_seconds, params);
    // Check both candidates every time, so timing does not tell which one matched.
    let mut matched = None;
    for step in [now, now.saturating_sub(1)] {
        let fresh = last_step.is_none_or(|last| step > last);
        let equal: bool = hotp(secret, step, params.digits, params.algorithm).as_bytes().ct_eq(code.as_bytes()).into();
        if equal && fresh && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

/// What an authenticator app needs, from the secret.
pub struct TotpEnrolment {
    /// The secret in Base32, for typing in.
    pub secret: String,
    /// The `otpauth://` URI.
    pub uri: String,
    /// Its QR code, as SVG.
    pub qr_svg: String,
}

/// The Key URI Format (`otpauth://totp/Issuer:account?secret=…&issuer=…`) with SHA1, 6 digits,
/// 30 s spelled out, and the QR code of it as SVG.
pub fn totp_enrolment(issuer: &str, account: &str, secret: &[u8]) -> Result<TotpEnrolment, qrcode::types::QrError> {
    let b32 = data_encoding::BASE32_NOPAD.encode(secret);
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let uri = format!(
        "otpauth://totp/{}:{}?secret={b32}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer),
        enc(account),
        enc(issuer)
    );
    let qr = qrcode::QrCode::new(uri.as_bytes())?;
    let qr_svg = qr.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).build();
    Ok(TotpEnrolment { secret: b32, uri, qr_svg })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED20: &[u8] = b"12345678901234567890";
    const SEED32: &[u8] = b"12345678901234567890123456789012";
    const SEED64: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    #[test]
    fn totp_1_rfc_4226_appendix_d_hotp_values() {
        let expected =
            ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"];
        for (count, want) in expected.iter().enumerate() {
            assert_eq!(hotp(SEED20, count as u64, 6, TotpAlgorithm::Sha1), *want, "count {count}");
        }
    }

    #[test]
    fn totp_1_rfc_6238_appendix_b_vectors_for_all_three_hashes() {
        let rows: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (t, sha1, sha256, sha512) in rows {
            let p = |algorithm| TotpParams { algorithm, digits: 8, period: 30 };
            assert_eq!(totp_at(SEED20, t, &p(TotpAlgorithm::Sha1)), sha1, "SHA1 at {t}");
            assert_eq!(totp_at(SEED32, t, &p(TotpAlgorithm::Sha256)), sha256, "SHA256 at {t}");
            assert_eq!(totp_at(SEED64, t, &p(TotpAlgorithm::Sha512)), sha512, "SHA512 at {t}");
            assert_eq!(totp_at(SEED20, t, &TotpParams::default()), sha1[2..], "6-digit SHA1 at {t}");
        }
    }

    #[test]
    fn totp_4_and_5_the_window_is_t_and_t_minus_1_and_steps_only_move_forward() {
        let p = TotpParams::default();
        let t = 1_700_000_000u64;
        let now = step_at(t, &p);
        let at = |step: u64| hotp(SEED20, step, 6, TotpAlgorithm::Sha1);
        assert_eq!(verify(SEED20, &at(now), t, None, &p), Some(now));
        assert_eq!(verify(SEED20, &at(now - 1), t, None, &p), Some(now - 1), "T-1 accepted");
        assert_eq!(verify(SEED20, &at(now - 2), t, None, &p), None, "T-2 refused");
        assert_eq!(verify(SEED20, &at(now + 1), t, None, &p), None, "T+1 refused");
        assert_eq!(verify(SEED20, &at(now + 2), t, None, &p), None, "T+2 refused");
        assert_eq!(verify(SEED20, &at(now), t, Some(now), &p), None, "the same step twice");
        assert_eq!(verify(SEED20, &at(now - 1), t, Some(now), &p), None, "an earlier step after a later one");
        assert_eq!(verify(SEED20, &at(now), t + 60, None, &p), None, "two steps later the code is dead");
        for bad in ["", "12345", "1234567", "12345a", " 123 45"] {
            assert_eq!(verify(SEED20, bad, t, None, &p), None, "{bad:?}");
        }
        assert_eq!(verify(SEED20, &format!(" {} ", at(now)), t, None, &p), Some(now), "surrounding spaces are fine");
    }

    #[test]
    fn steps_are_counted_in_u64_from_the_unix_epoch() {
        let p = TotpParams::default();
        assert_eq!(step_at(59, &p), 1);
        assert_eq!(step_at(60, &p), 2);
        assert_eq!(step_at(20_000_000_000, &p), 666_666_666);
    }
}
