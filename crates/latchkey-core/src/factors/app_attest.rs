//! Apple App Attest (`docs/attestation.md`), verified offline: an app's key is registered once
//! with an attestation object (a certificate chain to Apple's App Attest root whose leaf binds the
//! key to this server's challenge, and authenticator data bound to the app id), and each later
//! request carries an assertion by that key over a fresh challenge, with a counter that must grow.
//! Apple's "Validating apps that connect to your server", steps as numbered there.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use ciborium::Value;
use serde::{Deserialize, Serialize};
use x509_parser::asn1_rs::{Any, FromDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::Oid;
use x509_parser::time::ASN1Time;

/// The leaf's extension holding the nonce (Apple's OID 1.2.840.113635.100.8.2).
pub const NONCE_EXTENSION: &[u64] = &[1, 2, 840, 113635, 100, 8, 2];
const AAGUID_PRODUCTION: &[u8; 16] = b"appattest\0\0\0\0\0\0\0";
const AAGUID_DEVELOPMENT: &[u8; 16] = b"appattestdevelop";

/// `[policy.app_integrity.apple]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppAttest {
    /// The apps, `<team id>.<bundle id>`.
    pub app_ids: Vec<String>,
    /// The trusted roots, PEM (in production Apple's App Attestation Root CA).
    pub roots: Vec<String>,
    /// Accept keys from the development environment (`appattestdevelop`) instead of production.
    #[serde(default)]
    pub development: bool,
}

/// A key that passed its attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedKey {
    /// The key's uncompressed P-256 point.
    pub point: Vec<u8>,
    /// The app it belongs to.
    pub app_id: String,
}

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let all: Vec<u8> = parts.concat();
    digest(&SHA256, &all).as_ref().to_vec()
}

fn cbor_map(bytes: &[u8]) -> Result<Vec<(Value, Value)>, String> {
    match ciborium::de::from_reader::<Value, _>(bytes).map_err(|_| "not CBOR")? {
        Value::Map(m) => Ok(m),
        _ => Err("not a CBOR map".into()),
    }
}

fn field<'a>(m: &'a [(Value, Value)], name: &str) -> Option<&'a Value> {
    m.iter().find(|(k, _)| k.as_text() == Some(name)).map(|(_, v)| v)
}

fn bytes_field(m: &[(Value, Value)], name: &str) -> Result<Vec<u8>, String> {
    field(m, name).and_then(Value::as_bytes).cloned().ok_or_else(|| format!("no {name}"))
}

/// The app id whose SHA-256 is this authenticator data's rpIdHash.
fn app_of<'a>(cfg: &'a AppAttest, auth_data: &[u8]) -> Result<&'a String, String> {
    let rp = auth_data.get(..32).ok_or("short authenticator data")?;
    cfg.app_ids.iter().find(|a| sha256(&[a.as_bytes()]) == rp).ok_or_else(|| "not one of the configured apps".into())
}

/// The DER of each certificate in the PEM `roots`.
pub fn root_certificates(roots: &[String]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = vec![];
    for (i, pem) in roots.iter().enumerate() {
        let before = out.len();
        for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
            let block = block.map_err(|e| format!("root {i}: not PEM: {e}"))?;
            block.parse_x509().map_err(|e| format!("root {i}: not an X.509 certificate: {e}"))?;
            out.push(block.contents);
        }
        if out.len() == before {
            return Err(format!("root {i}: no PEM certificate"));
        }
    }
    Ok(out)
}

/// Register a key: verify its attestation object (`attestation`, CBOR) for `key_id` (SHA-256 of
/// the key's point) and `challenge` (the client data Apple hashed), at `now`.
pub fn verify_attestation(
    cfg: &AppAttest,
    key_id: &[u8],
    attestation: &[u8],
    challenge: &[u8],
    now: time::OffsetDateTime,
) -> Result<AttestedKey, String> {
    let m = cbor_map(attestation)?;
    if field(&m, "fmt").and_then(Value::as_text) != Some("apple-appattest") {
        return Err("not an apple-appattest attestation".into());
    }
    let stmt = match field(&m, "attStmt") {
        Some(Value::Map(s)) => s.clone(),
        _ => return Err("no attStmt".into()),
    };
    let x5c: Vec<Vec<u8>> = match field(&stmt, "x5c") {
        Some(Value::Array(a)) => a.iter().filter_map(|c| c.as_bytes().cloned()).collect(),
        _ => return Err("no x5c".into()),
    };
    let auth_data = bytes_field(&m, "authData")?;
    // 1. The chain, leaf first, ends in a configured root.
    let roots = root_certificates(&cfg.roots)?;
    let leaf_point = verify_chain(&x5c, &roots, now)?;
    // 2–4. The leaf's nonce extension is SHA-256(authData ‖ SHA-256(challenge)).
    let nonce = sha256(&[&auth_data, &sha256(&[challenge])]);
    let (_, leaf) = X509Certificate::from_der(&x5c[0]).map_err(|_| "a certificate is not DER X.509")?;
    let oid = Oid::from(NONCE_EXTENSION).map_err(|_| "oid")?;
    let ext = leaf.get_extension_unique(&oid).ok().flatten().ok_or("the leaf has no nonce extension")?;
    if nonce_in(ext.value) != Some(nonce) {
        return Err("the attestation is not for this challenge".into());
    }
    // 5. The key id is the SHA-256 of the leaf's key.
    if sha256(&[&leaf_point]) != key_id {
        return Err("the key id is not the certified key's".into());
    }
    // 6–9. Authenticator data: this app, counter 0, the environment's AAGUID, this credential.
    let app_id = app_of(cfg, &auth_data)?.clone();
    let counter = auth_data.get(33..37).ok_or("short authenticator data")?;
    if counter != [0, 0, 0, 0] {
        return Err("an attestation's counter must be 0".into());
    }
    let aaguid = if cfg.development { AAGUID_DEVELOPMENT } else { AAGUID_PRODUCTION };
    if auth_data.get(37..53) != Some(&aaguid[..]) {
        return Err("the key is from another App Attest environment".into());
    }
    let len = usize::from(u16::from_be_bytes([
        *auth_data.get(53).ok_or("short authenticator data")?,
        *auth_data.get(54).ok_or("short authenticator data")?,
    ]));
    if auth_data.get(55..55 + len) != Some(key_id) {
        return Err("the credential id is not the key id".into());
    }
    Ok(AttestedKey { point: leaf_point, app_id })
}

/// Check an assertion (CBOR `{signature, authenticatorData}`) by a registered key over
/// `client_data`; `Ok(counter)` when its counter is above `last_counter`.
pub fn verify_assertion(
    cfg: &AppAttest,
    key: &AttestedKey,
    last_counter: u32,
    assertion: &[u8],
    client_data: &[u8],
) -> Result<u32, String> {
    let m = cbor_map(assertion)?;
    let signature = bytes_field(&m, "signature")?;
    let auth_data = bytes_field(&m, "authenticatorData")?;
    // 1–3. The signature is the key's over SHA-256(authenticatorData ‖ SHA-256(clientData)).
    let nonce = sha256(&[&auth_data, &sha256(&[client_data])]);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key.point)
        .verify(&nonce, &signature)
        .map_err(|_| "the assertion's signature does not verify")?;
    // 4. The app id.
    if app_of(cfg, &auth_data)? != &key.app_id {
        return Err("the assertion is for another app".into());
    }
    // 5. The counter grows.
    let c = auth_data.get(33..37).ok_or("short authenticator data")?;
    let counter = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
    if counter <= last_counter {
        return Err("the assertion's counter did not grow (a replay)".into());
    }
    Ok(counter)
}

/// The nonce in the leaf's extension: `SEQUENCE { [1] EXPLICIT OCTET STRING }`.
fn nonce_in(der: &[u8]) -> Option<Vec<u8>> {
    let (_, seq) = Any::from_der(der).ok()?;
    let (_, tagged) = Any::from_der(seq.data).ok()?;
    let (_, octets) = Any::from_der(tagged.data).ok()?;
    Some(octets.data.to_vec())
}

fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], c)) => Ok(c),
        _ => Err("a certificate is not DER X.509".to_owned()),
    }
}

/// Verify `chain` (leaf first; a trailing root is allowed) to one of `roots` (DER) at `now`: the
/// leaf's P-256 point.
fn verify_chain(chain: &[Vec<u8>], roots: &[Vec<u8>], now: time::OffsetDateTime) -> Result<Vec<u8>, String> {
    if chain.is_empty() || chain.len() > 4 {
        return Err("the chain must hold 1 to 4 certificates".into());
    }
    let certs = chain.iter().map(|d| parse_certificate(d)).collect::<Result<Vec<_>, _>>()?;
    let roots = roots.iter().map(|d| parse_certificate(d)).collect::<Result<Vec<_>, _>>()?;
    let at = ASN1Time::from_timestamp(now.unix_timestamp()).map_err(|_| "time")?;
    for c in &certs {
        if !c.validity().is_valid_at(at) {
            return Err("a certificate of the chain is not valid now".into());
        }
    }
    for pair in certs.windows(2) {
        pair[0].verify_signature(Some(pair[1].public_key())).map_err(|_| "the chain does not verify")?;
    }
    let last = &certs[certs.len() - 1];
    let anchored = roots
        .iter()
        .any(|r| r.public_key().raw == last.public_key().raw || last.verify_signature(Some(r.public_key())).is_ok());
    if !anchored {
        return Err("the chain does not end in a configured root".into());
    }
    let spki = certs[0].public_key().raw;
    let prefix = crate::factors::device::P256_SPKI_PREFIX;
    if spki.len() != 91 || spki[..26] != prefix {
        return Err("the certified key is not P-256".into());
    }
    Ok(spki[26..].to_vec())
}
