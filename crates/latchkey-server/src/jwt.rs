//! ES256 access tokens (`typ: at+jwt`, RFC 9068) with jsonwebtoken on aws-lc-rs.

use crate::keys::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use latchkey_core::tokens::{AccessClaims, AccessTokenSigner, ApprovalClaims, TokenError};

/// Signs with the data directory's key; verifies only tokens of the keys it publishes (the
/// signing key, a staged next key and the retired previous one), its issuer and audience.
pub struct JwtSigner {
    encoding: EncodingKey,
    kid: String,
    /// Every published key: its id, its verifier and its JWK. The signing key comes first.
    published: Vec<(String, DecodingKey, serde_json::Value)>,
    validation: Validation,
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
        Ok(Self { encoding: EncodingKey::from_ec_der(key.pkcs8.expose()), kid: key.kid.clone(), published, validation })
    }

    /// `/.well-known/jwks.json`: the signing key first.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<&serde_json::Value> = self.published.iter().map(|(_, _, jwk)| jwk).collect();
        serde_json::json!({ "keys": keys })
    }
}

impl AccessTokenSigner for JwtSigner {
    fn sign(&self, claims: &AccessClaims) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| TokenError::Signing(e.to_string()))
    }

    fn sign_approval(&self, claims: &ApprovalClaims) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("approval+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| TokenError::Signing(e.to_string()))
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
