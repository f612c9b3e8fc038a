//! Android Key Attestation: the evidence that a device's biometric key is hardware-backed and
//! released only after a biometric check (checklist DEV-4). No I/O: the chain arrives in the
//! enrolment answer, the trusted roots come from configuration.
//!
//! What is checked, in order (Android's "Verify hardware-backed key pairs with key attestation"):
//! 1. The chain (leaf first) verifies certificate by certificate, and its last certificate's
//!    public key is one of the configured roots (Google's attestation roots in production).
//!    Every certificate but the leaf is within its validity period; the leaf's dates come from
//!    the phone's clock and are not checked.
//! 2. The leaf certifies exactly the biometric key being enrolled.
//! 3. The leaf's KeyDescription (OID 1.3.6.1.4.1.11129.2.1.17) says the key lives in a TEE or
//!    StrongBox, carries this enrolment's challenge, and its *hardware-enforced* list requires
//!    user authentication by biometric only (`userAuthType` = 2, not the device PIN or pattern,
//!    which a thief watching over a shoulder has), for every use (no `authTimeout`).
//!
//! Not checked: the revocation status list (it lives on the network) and the root of trust
//! (bootloader state). Both are documented in `docs/devices.md`.

use x509_parser::asn1_rs::{Any, Class, FromDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::Oid;
use x509_parser::time::ASN1Time;

/// The KeyDescription extension's OID.
const KEY_DESCRIPTION: &[u64] = &[1, 3, 6, 1, 4, 1, 11129, 2, 1, 17];
/// AuthorizationList tags (context-specific, explicit).
const NO_AUTH_REQUIRED: u32 = 503;
const USER_AUTH_TYPE: u32 = 504;
const AUTH_TIMEOUT: u32 = 505;
/// `HardwareAuthenticatorType::FINGERPRINT` — any class-3 biometric on current Android.
const HW_AUTH_BIOMETRIC: u64 = 2;
/// Longest chain accepted (Google's are 3 to 5 certificates).
const MAX_CHAIN: usize = 8;

/// Where the key lives, from `attestationSecurityLevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityLevel {
    /// A trusted execution environment.
    TrustedEnvironment,
    /// A discrete secure element.
    StrongBox,
}

impl SecurityLevel {
    /// The name stored with the device.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityLevel::TrustedEnvironment => "tee",
            SecurityLevel::StrongBox => "strongbox",
        }
    }
}

/// Why an attestation was refused. The message is safe to show the app's developer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    /// Not DER certificates, an empty or overlong chain, or no KeyDescription.
    #[error("the attestation is malformed: {0}")]
    Malformed(&'static str),
    /// A certificate's signature does not verify with the next one's key, or one has expired.
    #[error("the certificate chain does not verify")]
    Chain,
    /// The chain ends at a root that is not configured as trusted.
    #[error("the certificate chain does not end at a trusted attestation root")]
    UntrustedRoot,
    /// The leaf certifies another key.
    #[error("the attestation is for another key")]
    WrongKey,
    /// The challenge is not this enrolment's.
    #[error("the attestation challenge is not this flow's nonce")]
    WrongChallenge,
    /// A software key.
    #[error("the key is not in a TEE or StrongBox")]
    NotHardware,
    /// The key is usable without a biometric check for each use.
    #[error("the key does not require a biometric for every use: {0}")]
    NotBiometric(&'static str),
}

/// The evidence an accepted attestation gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AndroidKeyVerdict {
    /// Where the key lives.
    pub security_level: SecurityLevel,
}

/// Verify an Android Key Attestation `chain` (DER, leaf first) for the P-256 key `point`
/// (uncompressed, 65 bytes) against the trusted roots' SubjectPublicKeyInfo DER, with
/// `challenge` as the expected `attestationChallenge` and `now` as the time.
pub fn verify_android_key(
    chain: &[Vec<u8>],
    roots: &[Vec<u8>],
    point: &[u8],
    challenge: &[u8],
    now: time::OffsetDateTime,
) -> Result<AndroidKeyVerdict, AttestationError> {
    if chain.is_empty() || chain.len() > MAX_CHAIN {
        return Err(AttestationError::Malformed("the chain must hold 1 to 8 certificates"));
    }
    let mut certs = Vec::with_capacity(chain.len());
    for der in chain {
        match X509Certificate::from_der(der) {
            Ok(([], cert)) => certs.push(cert),
            _ => return Err(AttestationError::Malformed("a certificate is not DER X.509")),
        }
    }
    let at = ASN1Time::from_timestamp(now.unix_timestamp()).map_err(|_| AttestationError::Chain)?;
    for pair in certs.windows(2) {
        pair[0].verify_signature(Some(pair[1].public_key())).map_err(|_| AttestationError::Chain)?;
        if !pair[1].validity().is_valid_at(at) {
            return Err(AttestationError::Chain);
        }
    }
    let (leaf, last) = (&certs[0], &certs[certs.len() - 1]);
    if !roots.iter().any(|r| r.as_slice() == last.public_key().raw) {
        return Err(AttestationError::UntrustedRoot);
    }
    let mut expected = crate::factors::device::P256_SPKI_PREFIX.to_vec();
    expected.extend_from_slice(point);
    if leaf.public_key().raw != expected.as_slice() {
        return Err(AttestationError::WrongKey);
    }
    let oid = Oid::from(KEY_DESCRIPTION).map_err(|_| AttestationError::Malformed("oid"))?;
    let ext = leaf
        .get_extension_unique(&oid)
        .ok()
        .flatten()
        .ok_or(AttestationError::Malformed("the leaf has no KeyDescription extension"))?;
    check_key_description(ext.value, challenge)
}

/// The SubjectPublicKeyInfo DER of every certificate in `pems` (each a PEM bundle), as
/// [`verify_android_key`] takes trusted roots. An error names the entry that does not parse.
pub fn root_keys(pems: &[String]) -> Result<Vec<Vec<u8>>, String> {
    let mut keys = vec![];
    for (i, pem) in pems.iter().enumerate() {
        let before = keys.len();
        for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
            let block = block.map_err(|e| format!("entry {i}: not PEM: {e}"))?;
            let cert = block.parse_x509().map_err(|e| format!("entry {i}: not an X.509 certificate: {e}"))?;
            keys.push(cert.public_key().raw.to_vec());
        }
        if keys.len() == before {
            return Err(format!("entry {i}: no PEM certificate"));
        }
    }
    Ok(keys)
}

/// The fields of a KeyDescription that matter here.
fn check_key_description(der: &[u8], challenge: &[u8]) -> Result<AndroidKeyVerdict, AttestationError> {
    let bad = AttestationError::Malformed("the KeyDescription is not the expected ASN.1");
    let (_, seq) = Any::from_der(der).map_err(|_| bad.clone())?;
    let fields = children(seq.data).ok_or(bad.clone())?;
    // attestationVersion, attestationSecurityLevel, keyMintVersion, keyMintSecurityLevel,
    // attestationChallenge, uniqueId, softwareEnforced, hardwareEnforced.
    let [_, level, _, keymint_level, given, _, _, hardware] = fields.as_slice() else {
        return Err(bad);
    };
    let security_level = match (small_uint(level), small_uint(keymint_level)) {
        (Some(1), Some(1)) => SecurityLevel::TrustedEnvironment,
        (Some(2), Some(2)) => SecurityLevel::StrongBox,
        _ => return Err(AttestationError::NotHardware),
    };
    if given.data != challenge {
        return Err(AttestationError::WrongChallenge);
    }
    let enforced = children(hardware.data).ok_or(bad)?;
    let tagged =
        |tag: u32| enforced.iter().find(|a| a.header.class() == Class::ContextSpecific && a.header.tag().0 == tag);
    if tagged(NO_AUTH_REQUIRED).is_some() {
        return Err(AttestationError::NotBiometric("noAuthRequired is set"));
    }
    let auth_type = tagged(USER_AUTH_TYPE).and_then(|t| explicit_uint(t.data));
    if auth_type != Some(HW_AUTH_BIOMETRIC) {
        return Err(AttestationError::NotBiometric("userAuthType must be biometric only"));
    }
    if tagged(AUTH_TIMEOUT).and_then(|t| explicit_uint(t.data)).is_some_and(|secs| secs > 0) {
        return Err(AttestationError::NotBiometric("authTimeout lets one check unlock the key for a while"));
    }
    Ok(AndroidKeyVerdict { security_level })
}

/// The DER elements inside a constructed element's content.
fn children(mut data: &[u8]) -> Option<Vec<Any<'_>>> {
    let mut out = vec![];
    while !data.is_empty() {
        let (rest, any) = Any::from_der(data).ok()?;
        out.push(any);
        data = rest;
    }
    Some(out)
}

/// A non-negative INTEGER or ENUMERATED that fits 64 bits.
fn small_uint(a: &Any<'_>) -> Option<u64> {
    let bytes = a.data;
    if bytes.is_empty() || bytes.len() > 9 || bytes[0] & 0x80 != 0 {
        return None;
    }
    let bytes = if bytes.len() == 9 { bytes.strip_prefix(&[0])? } else { bytes };
    Some(bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
}

/// The INTEGER inside an explicitly tagged element.
fn explicit_uint(content: &[u8]) -> Option<u64> {
    let (rest, inner) = Any::from_der(content).ok()?;
    if rest.is_empty() { small_uint(&inner) } else { None }
}

/// Test-only: mint Android attestation chains under a throwaway root, as a phone's keystore
/// would produce them, for unit tests and the end-to-end suite.
#[cfg(any(test, feature = "attestation-testing"))]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
pub mod testing {
    use super::*;
    use rcgen::{CertificateParams, CustomExtension, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};

    /// A minimal DER writer for the test KeyDescription.
    fn tlv(tag: &[u8], content: &[u8]) -> Vec<u8> {
        let mut out = tag.to_vec();
        let n = content.len();
        if n < 128 {
            out.push(n as u8);
        } else {
            out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    fn int(v: u64) -> Vec<u8> {
        let mut b: Vec<u8> = v.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        if b.first().is_none_or(|x| x & 0x80 != 0) {
            b.insert(0, 0);
        }
        tlv(&[0x02], &b)
    }

    /// A context-specific explicit tag ≥ 31, as the AuthorizationList uses.
    fn ctx(tag: u32, inner: &[u8]) -> Vec<u8> {
        tlv(&[0xbf, 0x80 | (tag >> 7) as u8, (tag & 0x7f) as u8], inner)
    }

    /// What the test phone's keystore claims about a key.
    #[derive(Clone)]
    pub struct Claims {
        /// `attestationSecurityLevel`: 0 software, 1 TEE, 2 StrongBox.
        pub level: u64,
        /// `attestationChallenge`.
        pub challenge: Vec<u8>,
        /// `userAuthType` (2 = biometric, 1 = device credential, 3 = either).
        pub user_auth_type: Option<u64>,
        /// `authTimeout` in seconds.
        pub auth_timeout: Option<u64>,
        /// `noAuthRequired`.
        pub no_auth_required: bool,
        /// Put the biometric requirement in the software list instead (not enforced).
        pub in_software_list: bool,
    }

    impl Claims {
        /// A TEE key that needs a biometric for every use.
        pub fn good(challenge: &[u8]) -> Self {
            Claims {
                level: 1,
                challenge: challenge.to_vec(),
                user_auth_type: Some(2),
                auth_timeout: None,
                no_auth_required: false,
                in_software_list: false,
            }
        }
    }

    /// The KeyDescription DER for `c`.
    pub fn key_description(c: &Claims) -> Vec<u8> {
        let mut list = vec![];
        if c.no_auth_required {
            list.extend(ctx(NO_AUTH_REQUIRED, &[0x05, 0x00]));
        }
        if let Some(t) = c.user_auth_type {
            list.extend(ctx(USER_AUTH_TYPE, &int(t)));
        }
        if let Some(t) = c.auth_timeout {
            list.extend(ctx(AUTH_TIMEOUT, &int(t)));
        }
        let (software, hardware) = if c.in_software_list { (list, vec![]) } else { (vec![], list) };
        let body = [
            int(200),
            tlv(&[0x0a], &[c.level as u8]),
            int(200),
            tlv(&[0x0a], &[c.level as u8]),
            tlv(&[0x04], &c.challenge),
            tlv(&[0x04], &[]),
            tlv(&[0x30], &software),
            tlv(&[0x30], &hardware),
        ]
        .concat();
        tlv(&[0x30], &body)
    }

    /// An attestation root and an intermediate, like Google's.
    pub struct TestRoot {
        root: rcgen::CertifiedIssuer<'static, KeyPair>,
        intermediate: rcgen::CertifiedIssuer<'static, KeyPair>,
    }

    struct Point(Vec<u8>);
    impl rcgen::PublicKeyData for Point {
        fn der_bytes(&self) -> &[u8] {
            &self.0
        }
        fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
            &PKCS_ECDSA_P256_SHA256
        }
    }

    impl Default for TestRoot {
        fn default() -> Self {
            Self::new()
        }
    }

    impl TestRoot {
        /// A fresh root and intermediate.
        pub fn new() -> Self {
            let ca = |name: &str| {
                let mut p = CertificateParams::new(vec![]).unwrap();
                p.distinguished_name.push(rcgen::DnType::CommonName, name);
                p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
                p.not_before = rcgen::date_time_ymd(2020, 1, 1);
                p.not_after = rcgen::date_time_ymd(2060, 1, 1);
                p
            };
            let root =
                rcgen::CertifiedIssuer::self_signed(ca("Test Attestation Root"), KeyPair::generate().unwrap()).unwrap();
            let intermediate =
                rcgen::CertifiedIssuer::signed_by(ca("Test Attestation CA"), KeyPair::generate().unwrap(), &root)
                    .unwrap();
            TestRoot { root, intermediate }
        }

        /// The root's SubjectPublicKeyInfo DER, as configuration holds it.
        pub fn spki(&self) -> Vec<u8> {
            let (_, c) = X509Certificate::from_der(self.root.der()).unwrap();
            c.public_key().raw.to_vec()
        }

        /// The root certificate (PEM), as an operator would configure it.
        pub fn pem(&self) -> String {
            self.root.pem()
        }

        /// A chain (leaf first) for the P-256 `point` with `claims`.
        pub fn chain(&self, point: &[u8], claims: &Claims) -> Vec<Vec<u8>> {
            self.chain_with(point, "Android Keystore Key", KEY_DESCRIPTION, key_description(claims))
        }

        /// A chain (leaf, intermediate, root) for the P-256 `point` whose leaf carries the
        /// extension `oid` with `content` (DER).
        pub fn chain_with(&self, point: &[u8], name: &str, oid: &[u64], content: Vec<u8>) -> Vec<Vec<u8>> {
            let mut p = CertificateParams::new(vec![]).unwrap();
            p.distinguished_name.push(rcgen::DnType::CommonName, name);
            p.custom_extensions.push(CustomExtension::from_oid_content(oid, content));
            let leaf = p.signed_by(&Point(point.to_vec()), &self.intermediate).unwrap();
            vec![leaf.der().to_vec(), self.intermediate.der().to_vec(), self.root.der().to_vec()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn device_point() -> Vec<u8> {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let k = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref()).unwrap();
        k.public_key().as_ref().to_vec()
    }

    const NOW: time::OffsetDateTime = time::macros::datetime!(2026-11-22 10:00 UTC);

    #[test]
    fn roots_are_read_from_pem_and_bad_entries_are_named() {
        let (a, b) = (TestRoot::new(), TestRoot::new());
        let bundle = format!("{}\n{}", a.pem(), b.pem());
        assert_eq!(root_keys(std::slice::from_ref(&bundle)).unwrap(), vec![a.spki(), b.spki()]);
        assert!(root_keys(&[a.pem(), "/etc/missing.pem".into()]).unwrap_err().starts_with("entry 1"));
    }

    #[test]
    fn dev_4_a_biometric_only_hardware_key_with_this_challenge_is_accepted() {
        let (ca, point) = (TestRoot::new(), device_point());
        let chain = ca.chain(&point, &Claims::good(b"nonce-1"));
        let v = verify_android_key(&chain, &[ca.spki()], &point, b"nonce-1", NOW).unwrap();
        assert_eq!(v.security_level, SecurityLevel::TrustedEnvironment);
        let strongbox = ca.chain(&point, &Claims { level: 2, ..Claims::good(b"nonce-1") });
        let v = verify_android_key(&strongbox, &[ca.spki()], &point, b"nonce-1", NOW).unwrap();
        assert_eq!(v.security_level, SecurityLevel::StrongBox);
    }

    #[test]
    fn dev_4_anything_short_of_a_biometric_per_use_hardware_key_is_refused() {
        let (ca, point) = (TestRoot::new(), device_point());
        let good = Claims::good(b"nonce-1");
        let check = |chain: &[Vec<u8>]| verify_android_key(chain, &[ca.spki()], &point, b"nonce-1", NOW);
        let claims = |c: Claims| ca.chain(&point, &c);
        use AttestationError::*;
        assert_eq!(check(&claims(Claims { challenge: b"nonce-2".to_vec(), ..good.clone() })), Err(WrongChallenge));
        assert_eq!(check(&claims(Claims { level: 0, ..good.clone() })), Err(NotHardware), "software keystore");
        for (c, why) in [
            (Claims { user_auth_type: Some(3), ..good.clone() }, "biometric or device PIN"),
            (Claims { user_auth_type: Some(1), ..good.clone() }, "device PIN only"),
            (Claims { user_auth_type: None, ..good.clone() }, "no user authentication"),
            (Claims { auth_timeout: Some(30), ..good.clone() }, "one check unlocks it for 30 s"),
            (Claims { no_auth_required: true, ..good.clone() }, "noAuthRequired"),
            (Claims { in_software_list: true, ..good.clone() }, "claimed by software, not enforced"),
        ] {
            assert!(matches!(check(&claims(c)), Err(NotBiometric(_))), "{why}");
        }
        assert_eq!(check(&ca.chain(&device_point(), &good)), Err(WrongKey), "another key's certificate");
        let other = TestRoot::new();
        assert_eq!(check(&other.chain(&point, &good)), Err(UntrustedRoot));
        let mut chain = claims(good.clone());
        let n = chain[0].len();
        chain[0][n - 5] ^= 1;
        assert_eq!(check(&chain), Err(Chain), "a tampered leaf signature");
        // A leaf presented alone, or with the real root swapped in after a forged intermediate.
        let forged = other.chain(&point, &good);
        let spliced = vec![forged[0].clone(), forged[1].clone(), claims(good.clone())[2].clone()];
        assert_eq!(check(&spliced), Err(Chain));
        assert_eq!(check(&claims(good.clone())[..1]), Err(UntrustedRoot));
        assert!(matches!(check(&[]), Err(Malformed(_))));
        assert!(matches!(check(&[b"not a certificate".to_vec()]), Err(Malformed(_))));
        let late = time::macros::datetime!(2061-01-01 0:00 UTC);
        let chain = claims(good);
        assert_eq!(verify_android_key(&chain, &[ca.spki()], &point, b"nonce-1", late), Err(Chain), "expired CA");
    }
}
