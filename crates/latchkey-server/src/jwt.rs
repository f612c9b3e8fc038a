//! ES256 access tokens (`typ: at+jwt`, RFC 9068): verified with jsonwebtoken on aws-lc-rs, and
//! signed with aws-lc-rs's key pair parsed once (jsonwebtoken's `encode` parses the PKCS#8 key
//! again for every token: 40 % of a signature's cost).

use crate::keys::SigningKey;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use latchkey_core::tokens::{AccessClaims, AccessTokenSigner, ApprovalClaims, TokenError};

/// Signs with the data directory's key; verifies only tokens of the keys it publishes (the
/// signing key, a staged next key and the retired previous one), its issuer and audience.
pub struct JwtSigner {
    /// The signing key, parsed once.
    key_pair: EcdsaKeyPair,
    rng: aws_lc_rs::rand::SystemRandom,
    /// The base64url JWS headers of access and approval tokens, written once: only `typ` differs.
    access_header: String,
    approval_header: String,
    /// Every published key: its id, its verifier and its JWK. The signing key comes first.
    published: Vec<(String, DecodingKey, serde_json::Value)>,
    validation: Validation,
}

/// The base64url form of an ES256 JWS header of type `typ` for key `kid`, as
/// `jsonwebtoken::encode` writes it.
fn encoded_header(kid: &str, typ: &str) -> anyhow::Result<String> {
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some(typ.into());
    header.kid = Some(kid.into());
    Ok(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?))
}

fn decoding(key: &SigningKey) -> anyhow::Result<(String, DecodingKey, serde_json::Value)> {
    let jwk = key.jwk();
    let (Some(x), Some(y)) = (jwk["x"].as_str(), jwk["y"].as_str()) else { anyhow::bail!("bad public key") };
    Ok((key.kid.clone(), DecodingKey::from_ec_components(x, y)?, jwk))
}

impl JwtSigner {
    /// A signer for `key` that also accepts and publishes `others`, issuing for `issuer` and
    /// `audience`.
    pub fn new(key: &SigningKey, others: &[SigningKey], issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let published = std::iter::once(key).chain(others).map(decoding).collect::<anyhow::Result<Vec<_>>>()?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        // Expiry is checked by the domain against its injected clock.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "iss", "aud", "sub"].iter().map(|s| (*s).to_owned()).collect();
        let key_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.pkcs8.expose())
            .map_err(|e| anyhow::anyhow!("the signing key is not a P-256 PKCS#8 key: {e}"))?;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let access_header = encoded_header(&key.kid, "at+jwt")?;
        let approval_header = encoded_header(&key.kid, "approval+jwt")?;
        Ok(Self { key_pair, rng, access_header, approval_header, published, validation })
    }

    /// The JWS compact serialization (RFC 7515 §7.1) of `claims` under `header` (one of the
    /// encoded headers above): what `jsonwebtoken::encode` makes, the signature as R || S.
    fn jws(&self, header: &str, claims: &impl serde::Serialize) -> Result<String, TokenError> {
        let claims = serde_json::to_vec(claims).map_err(|e| TokenError::Signing(e.to_string()))?;
        let mut token = String::with_capacity(header.len() + claims.len() * 4 / 3 + 100);
        token.push_str(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut token);
        let signature = self
            .key_pair
            .sign(&self.rng, token.as_bytes())
            .map_err(|_| TokenError::Signing("ECDSA signing failed".into()))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }

    /// `/.well-known/jwks.json`: the signing key first.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<&serde_json::Value> = self.published.iter().map(|(_, _, jwk)| jwk).collect();
        serde_json::json!({ "keys": keys })
    }
}

impl AccessTokenSigner for JwtSigner {
    fn sign(&self, claims: &AccessClaims) -> Result<String, TokenError> {
        self.jws(&self.access_header, claims)
    }

    fn sign_approval(&self, claims: &ApprovalClaims) -> Result<String, TokenError> {
        self.jws(&self.approval_header, claims)
    }

    fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        // RFC 9068 §4: the type must be at+jwt, so an ID token or other JWT is never accepted.
        if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some("at+jwt") {
            return Err(TokenError::Invalid);
        }
        // Checklist TOK-3: only a published key verifies; a removed key's tokens are refused.
        let Some((_, key, _)) = self.published.iter().find(|(kid, _, _)| Some(kid.as_str()) == header.kid.as_deref())
        else {
            return Err(TokenError::Invalid);
        };
        if header.jwk.is_some() || header.jku.is_some() || header.x5u.is_some() || header.x5c.is_some() {
            return Err(TokenError::Invalid);
        }
        jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map(|d| d.claims)
            .map_err(|_| TokenError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::KeyPair as _;
    use latchkey_core::secret::SecretBytes;

    fn key() -> SigningKey {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let public = pair.public_key().as_ref().to_vec();
        SigningKey { pkcs8: SecretBytes::new(pkcs8.as_ref().to_vec()), kid: "k1".into(), public }
    }

    /// A token signed with the kept key pair is what `jsonwebtoken::encode` makes (the same
    /// header and claims, byte for byte; ECDSA's signature differs each time) and verifies with
    /// jsonwebtoken against the published key, as the token checks and every SDK do.
    #[test]
    fn tokens_are_jsonwebtokens_and_verify_with_the_published_key() {
        let key = key();
        let signer = JwtSigner::new(&key, &[], "https://issuer.test", "app").unwrap();
        let claims =
            serde_json::json!({"iss": "https://issuer.test", "aud": "app", "sub": "u1", "exp": 4_000_000_000u64});
        let ours = signer.jws(&signer.access_header, &claims).unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".into());
        header.kid = Some("k1".into());
        let theirs =
            jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_der(key.pkcs8.expose()))
                .unwrap();
        let signed_part = |t: &str| t.rsplit_once('.').map(|(m, _)| m.to_owned()).unwrap();
        assert_eq!(signed_part(&ours), signed_part(&theirs));
        let (_, decoding, _) = decoding(&key).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&["https://issuer.test"]);
        validation.set_audience(&["app"]);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(&ours, &decoding, &validation).unwrap();
        assert_eq!(decoded.claims, claims);
        // Another key's signature over the same header and claims does not verify.
        let other = JwtSigner::new(&self::key(), &[], "https://issuer.test", "app").unwrap();
        let forged = other.jws(&other.access_header, &claims).unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(&forged, &decoding, &validation).is_err());
    }
}
