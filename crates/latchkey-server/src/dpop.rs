//! DPoP proof JWTs (RFC 9449 §4): the signature, checked against the public key in the proof's
//! own header, and the claims the domain goes on to check ([`DpopProof`]).

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use latchkey_core::dpop::DpopProof;
use serde::Deserialize;

/// Longest proof accepted, and longest `jti`: nothing legitimate comes near them.
const MAX_PROOF_LEN: usize = 4096;
const MAX_JTI_LEN: usize = 128;

#[derive(Deserialize)]
struct Claims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    #[serde(default)]
    ath: Option<String>,
}

/// Verify a `DPoP` header value: a compact JWS with `typ: dpop+jwt`, `alg: ES256` and a public
/// P-256 `jwk` (never a private one) that verifies its signature. Returns what it claims, with
/// the key's thumbprint; the reason otherwise.
pub fn verify(proof: &str) -> Result<DpopProof, &'static str> {
    if proof.len() > MAX_PROOF_LEN {
        return Err("the proof is too long");
    }
    let header = jsonwebtoken::decode_header(proof).map_err(|_| "the proof is not a JWT")?;
    if header.typ.as_deref() != Some("dpop+jwt") {
        return Err("typ must be dpop+jwt");
    }
    if header.alg != Algorithm::ES256 {
        return Err("alg must be ES256");
    }
    let Some(jwk) = header.jwk else { return Err("the header must carry the public key as jwk") };
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {}
        _ => return Err("jwk must be a P-256 key"),
    }
    // jsonwebtoken's Jwk has no field for a private key, so look at the header itself (§4.2).
    if has_private_key(proof) {
        return Err("jwk must not contain a private key");
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "jwk is not a usable key")?;
    let mut validation = Validation::new(Algorithm::ES256);
    // Freshness is `iat` against the server's clock, checked by the domain; there is no exp/aud.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims =
        jsonwebtoken::decode::<Claims>(proof, &key, &validation).map_err(|_| "the signature does not verify")?.claims;
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err("jti must be 1–128 characters");
    }
    let jkt = jwk.thumbprint(ThumbprintHash::SHA256).map_err(|_| "jwk has no thumbprint")?;
    Ok(DpopProof { jkt, jti: claims.jti, htm: claims.htm, htu: claims.htu, iat: claims.iat, ath: claims.ath })
}

fn has_private_key(proof: &str) -> bool {
    use base64::Engine;
    let Some(encoded) = proof.split('.').next() else { return true };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded) else { return true };
    let Ok(header) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return true };
    header.get("jwk").and_then(|j| j.get("d")).is_some()
}
