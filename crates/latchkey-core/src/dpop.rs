//! DPoP (RFC 9449): what a proof whose signature the server has verified says, and the key
//! thumbprint that binds a device session to the device's possession key.
//!
//! The HTTP layer verifies the proof's JWS (it is JOSE, done with `jsonwebtoken`) and hands the
//! domain a [`DpopProof`]; the domain checks what needs its clock, its store and its settings:
//! method and URL, `iat` within [`IAT_WINDOW_SECS`], single use of `jti`, the access-token hash
//! `ath`, and that the key is the one the session is bound to.

use crate::crypto::sha256_b64;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// How far a proof's `iat` may be from the server's clock, either way (SES-4: ±60 s).
pub const IAT_WINDOW_SECS: i64 = 60;

/// A DPoP proof whose signature checked out against the public key in its own header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopProof {
    /// RFC 7638 SHA-256 thumbprint of the proof's public key (base64url).
    pub jkt: String,
    /// The proof's unique id.
    pub jti: String,
    /// The HTTP method it was made for.
    pub htm: String,
    /// The URL it was made for (query and fragment are ignored).
    pub htu: String,
    /// When it was made (Unix seconds).
    pub iat: i64,
    /// Base64url SHA-256 of the access token it accompanies, on resource requests.
    pub ath: Option<String>,
}

/// The thumbprint (RFC 7638, SHA-256, base64url) of a P-256 public key given as its 65-byte
/// uncompressed point; `None` for anything else. The same value as `cnf.jkt` (RFC 9449 §6.1).
pub fn thumbprint(point: &[u8]) -> Option<String> {
    if point.len() != 65 || point[0] != 4 {
        return None;
    }
    let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..]));
    // Members in lexicographic order, no whitespace (RFC 7638 §3.2).
    Some(sha256_b64(format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#).as_bytes()))
}

/// `ath`: the base64url SHA-256 of an access token (RFC 9449 §4.2).
pub fn access_token_hash(token: &str) -> String {
    sha256_b64(token.as_bytes())
}

/// `htu` without its query and fragment (RFC 9449 §4.3 compares those parts only).
pub fn target_uri(htu: &str) -> &str {
    let end = htu.find(['?', '#']).unwrap_or(htu.len());
    &htu[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc_7638_construction() {
        // The P-256 key of RFC 7515 Appendix A.3, whose JWK members are:
        let x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
        let y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
        let mut point = vec![4u8];
        point.extend(URL_SAFE_NO_PAD.decode(x).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(y).unwrap());
        let expected = sha256_b64(format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#).as_bytes());
        assert_eq!(thumbprint(&point).as_deref(), Some(expected.as_str()));
        assert_eq!(thumbprint(&point[1..]), None);
    }

    #[test]
    fn target_uri_drops_query_and_fragment() {
        assert_eq!(target_uri("https://a.example/v1/token?x=1#f"), "https://a.example/v1/token");
        assert_eq!(target_uri("https://a.example/v1/token"), "https://a.example/v1/token");
    }
}
