//! DPoP proofs (RFC 9449 §4) signed by the device's possession key in the platform key store.
//!
//! The key never leaves the store, so the JWS is put together here: the header names the public
//! key (`jwk`), and the store's DER signature is turned into the JWS `r‖s` form (RFC 7518 §3.4).

use crate::{ClientError, Keystore, KeystoreError, Result, b64url};
use base64::Engine;
use std::sync::Arc;

/// The possession key a device proves its requests with.
pub(crate) struct DpopKey {
    keystore: Arc<dyn Keystore>,
    alias: String,
    /// The protected header, base64url, the same for every proof.
    header: String,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey").field("alias", &self.alias).finish_non_exhaustive()
    }
}

impl DpopKey {
    /// The key store holding this device's keys.
    pub(crate) fn keystore(&self) -> &Arc<dyn Keystore> {
        &self.keystore
    }

    pub(crate) fn new(keystore: Arc<dyn Keystore>, alias: String) -> Result<Self> {
        let public = keystore.public_key(&alias)?;
        let point = uncompressed_point(&public)
            .ok_or_else(|| KeystoreError::Platform(format!("`{alias}` is not a P-256 public key")))?;
        let header = serde_json::json!({
            "typ": "dpop+jwt",
            "alg": "ES256",
            "jwk": {"kty": "EC", "crv": "P-256", "x": b64url(&point[1..33]), "y": b64url(&point[33..])},
        });
        Ok(Self { keystore, alias, header: b64url(header.to_string().as_bytes()) })
    }

    /// A proof for one request: `htm`, `htu` (the URL without query), `iat` (the server's time as
    /// the client knows it), a fresh `jti`, and `ath` when an access token goes with it.
    pub(crate) fn proof(&self, method: &str, url: &str, access_token: Option<&str>, iat: i64) -> Result<String> {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| KeystoreError::Platform("no randomness".into()))?;
        let htu = url.split(['?', '#']).next().unwrap_or(url);
        let mut claims = serde_json::json!({"jti": b64url(&jti), "htm": method, "htu": htu, "iat": iat});
        if let Some(token) = access_token {
            let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
            claims["ath"] = b64url(hash.as_ref()).into();
        }
        let input = format!("{}.{}", self.header, b64url(claims.to_string().as_bytes()));
        let der = self.keystore.sign(&self.alias, input.as_bytes())?;
        let raw = der_to_raw(&der).ok_or_else(|| ClientError::Decode("the key store's signature is not DER".into()))?;
        Ok(format!("{input}.{}", b64url(&raw)))
    }
}

/// Whether an access token is bound to a key (`cnf` in its claims). The token is not verified:
/// this only picks the `Authorization` scheme; the server decides.
pub(crate) fn is_bound(access_token: &str) -> bool {
    claims(access_token).is_some_and(|c| c.get("cnf").is_some())
}

/// An access token's claims, unverified (the client reads what the server put in its own token).
pub(crate) fn claims(access_token: &str) -> Option<serde_json::Value> {
    let payload = access_token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Seconds since the epoch by this device's clock.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The 65-byte point of a P-256 public key given as an X9.63 point or as SubjectPublicKeyInfo DER
/// (whose last 65 bytes are the point).
fn uncompressed_point(public: &[u8]) -> Option<&[u8]> {
    let point = match public.len() {
        65 => public,
        91 if public[0] == 0x30 => &public[26..],
        _ => return None,
    };
    (point[0] == 4).then_some(point)
}

/// An ECDSA signature `SEQUENCE { INTEGER r, INTEGER s }` as the 64-byte `r‖s` of JWS ES256.
fn der_to_raw(der: &[u8]) -> Option<[u8; 64]> {
    let (&tag, rest) = der.split_first()?;
    let (&len, body) = rest.split_first()?;
    if tag != 0x30 || usize::from(len) != body.len() {
        return None;
    }
    let mut raw = [0u8; 64];
    let mut body = body;
    for half in raw.chunks_exact_mut(32) {
        let (&tag, rest) = body.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let len = usize::from(len);
        if tag != 0x02 || rest.len() < len {
            return None;
        }
        let int = &rest[..len];
        let int = &int[int.iter().take_while(|b| **b == 0).count()..];
        if int.len() > 32 {
            return None;
        }
        half[32 - int.len()..].copy_from_slice(int);
        body = &rest[len..];
    }
    body.is_empty().then_some(raw)
}
