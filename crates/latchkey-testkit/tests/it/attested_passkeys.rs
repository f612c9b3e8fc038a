//! `aal3` (issue 16, checklist decision 5 and WA-5): a device-bound passkey whose attestation
//! chains to an authenticator the policy trusts. The security key here is a small FIDO2
//! authenticator written for the test — a P-256 credential key, `packed` attestation by a
//! certificate minted under a test vendor root — because the software authenticators at hand
//! make only synced passkeys with `none` attestation.

use super::devices::aal2_user_and_secret;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ciborium::Value as Cbor;
use latchkey_core::factors::passkey::{PasskeyPolicy, TrustedAuthenticator};
use latchkey_testkit::proto::{MfaMethod, NextStep, StepUpRequest, codes};
use latchkey_testkit::{Backend, TestServer, jwt_claims};
use rcgen::{CertificateParams, CertifiedIssuer, CustomExtension, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::json;

const RP: &str = "example.com";
const PW: &str = "correct horse battery";
const ORIGIN: &str = "https://example.com";
const MODEL: &str = "6d44ba9b-f6ec-2e49-b930-0c8fe920cb73";
const OTHER_MODEL: &str = "0bb43545-fd2c-4185-87dd-feb0b2916ace";
/// id-fido-gen-ce-aaguid: the model, in the attestation certificate.
const AAGUID_EXTENSION: &[u64] = &[1, 3, 6, 1, 4, 1, 45724, 1, 1, 4];

/// An authenticator vendor: its attestation root, which signs each model's attestation
/// certificates.
struct Vendor {
    root: CertifiedIssuer<'static, KeyPair>,
}

impl Vendor {
    fn new() -> Self {
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "Test Vendor Attestation Root");
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2060, 1, 1);
        Self { root: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap() }
    }

    fn trusted(&self, name: &str, models: &[&str]) -> TrustedAuthenticator {
        TrustedAuthenticator {
            name: name.into(),
            ca: self.root.pem(),
            aaguids: models.iter().map(|m| (*m).to_owned()).collect(),
        }
    }

    /// A security key of `model`, with its own attestation certificate as WebAuthn's
    /// `packed` format requires (C, O, OU "Authenticator Attestation", CN; not a CA).
    fn key(&self, model: &str, synced: bool) -> SecurityKey {
        self.key_with(model, synced, Tamper::None)
    }

    /// As [`Self::key`], spoilt as `tamper` says.
    fn key_with(&self, model: &str, synced: bool, tamper: Tamper) -> SecurityKey {
        let attestation = KeyPair::generate().unwrap();
        let aaguid = *uuid::Uuid::parse_str(model).unwrap().as_bytes();
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.distinguished_name.push(DnType::CountryName, "SE");
        p.distinguished_name.push(DnType::OrganizationName, "Test Vendor AB");
        let unit = if tamper == Tamper::OrganizationalUnit { "Sales" } else { "Authenticator Attestation" };
        p.distinguished_name.push(DnType::OrganizationalUnitName, unit);
        p.distinguished_name.push(DnType::CommonName, "Test Key Attestation");
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2060, 1, 1);
        // The model the certificate names: another one than the authenticator data's, when spoilt.
        let mut named = aaguid;
        if tamper == Tamper::CertificateModel {
            named[0] ^= 0xff;
        }
        let mut ext = CustomExtension::from_oid_content(AAGUID_EXTENSION, [&[0x04, 16][..], &named].concat());
        ext.set_criticality(tamper == Tamper::CriticalModel);
        p.custom_extensions.push(ext);
        let certificate = p.signed_by(&attestation, &self.root).unwrap().der().to_vec();
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let mut id = [0u8; 32];
        rng.fill(&mut id).unwrap();
        SecurityKey {
            aaguid,
            attestation: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &attestation.serialize_der())
                .unwrap(),
            certificate,
            key: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap(),
            id: id.to_vec(),
            user_handle: String::new(),
            counter: 0,
            synced,
            tamper,
        }
    }
}

/// How a test spoils an attestation (checklist WA-6: the verifier's bad fixtures).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tamper {
    None,
    /// The attestation object is not CBOR.
    Cbor,
    /// The attestation signature is over other data.
    Signature,
    /// The certificate's `id-fido-gen-ce-aaguid` names another model.
    CertificateModel,
    /// That extension is marked critical, which `packed` forbids.
    CriticalModel,
    /// The certificate's OU is not "Authenticator Attestation".
    OrganizationalUnit,
}

/// A FIDO2 authenticator holding one credential; it verifies its user (a PIN) every time.
struct SecurityKey {
    aaguid: [u8; 16],
    attestation: EcdsaKeyPair,
    certificate: Vec<u8>,
    key: EcdsaKeyPair,
    id: Vec<u8>,
    user_handle: String,
    counter: u32,
    /// Claim to be backup-eligible and backed up, as a synced passkey does.
    synced: bool,
    tamper: Tamper,
}

impl SecurityKey {
    fn flags(&self, attested_data: bool) -> u8 {
        // UP, UV; BE and BS when synced; AT with a new credential.
        let mut f = 0x01 | 0x04;
        if self.synced {
            f |= 0x08 | 0x10;
        }
        if attested_data {
            f |= 0x40;
        }
        f
    }

    fn sign(k: &EcdsaKeyPair, data: &[u8]) -> Vec<u8> {
        k.sign(&SystemRandom::new(), data).unwrap().as_ref().to_vec()
    }

    fn client_data(kind: &str, options: &serde_json::Value) -> Vec<u8> {
        json!({"type": kind, "challenge": options["challenge"], "origin": ORIGIN, "crossOrigin": false})
            .to_string()
            .into_bytes()
    }

    fn hash(data: &[u8]) -> Vec<u8> {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref().to_vec()
    }

    /// `navigator.credentials.create()`: the credential with `packed` attestation.
    fn create(&mut self, step: &NextStep) -> serde_json::Value {
        let NextStep::Passkey { ceremony, options, .. } = step else { panic!("{step:?}") };
        assert_eq!(ceremony, "create");
        self.user_handle = options["user"]["id"].as_str().unwrap().to_owned();
        let point = self.key.public_key().as_ref();
        let cose = Cbor::Map(vec![
            (1.into(), 2.into()),
            (3.into(), (-7).into()),
            ((-1).into(), 1.into()),
            ((-2).into(), Cbor::Bytes(point[1..33].to_vec())),
            ((-3).into(), Cbor::Bytes(point[33..65].to_vec())),
        ]);
        let mut auth_data = Self::hash(RP.as_bytes());
        auth_data.push(self.flags(true));
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        auth_data.extend_from_slice(&self.aaguid);
        auth_data.extend_from_slice(&u16::try_from(self.id.len()).unwrap().to_be_bytes());
        auth_data.extend_from_slice(&self.id);
        ciborium::into_writer(&cose, &mut auth_data).unwrap();
        let client_data = Self::client_data("webauthn.create", options);
        let mut signed = [auth_data.as_slice(), &Self::hash(&client_data)].concat();
        if self.tamper == Tamper::Signature {
            signed.push(0);
        }
        let statement = Cbor::Map(vec![
            ("alg".into(), (-7).into()),
            ("sig".into(), Cbor::Bytes(Self::sign(&self.attestation, &signed))),
            ("x5c".into(), Cbor::Array(vec![Cbor::Bytes(self.certificate.clone())])),
        ]);
        let object = Cbor::Map(vec![
            ("fmt".into(), "packed".into()),
            ("attStmt".into(), statement),
            ("authData".into(), Cbor::Bytes(auth_data)),
        ]);
        let mut attestation_object = vec![];
        ciborium::into_writer(&object, &mut attestation_object).unwrap();
        if self.tamper == Tamper::Cbor {
            attestation_object.truncate(attestation_object.len() / 2);
        }
        json!({
            "id": B64.encode(&self.id), "rawId": B64.encode(&self.id), "type": "public-key",
            "response": {"clientDataJSON": B64.encode(client_data), "attestationObject": B64.encode(attestation_object),
                "transports": ["usb"]},
            "clientExtensionResults": {}
        })
    }

    /// `navigator.credentials.get()`: an assertion, the counter one higher.
    fn get(&mut self, step: &NextStep) -> serde_json::Value {
        let NextStep::Passkey { ceremony, options, .. } = step else { panic!("{step:?}") };
        assert_eq!(ceremony, "get");
        self.counter += 1;
        let mut auth_data = Self::hash(RP.as_bytes());
        auth_data.push(self.flags(false));
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        let client_data = Self::client_data("webauthn.get", options);
        let signed = [auth_data.as_slice(), &Self::hash(&client_data)].concat();
        json!({
            "id": B64.encode(&self.id), "rawId": B64.encode(&self.id), "type": "public-key",
            "response": {"clientDataJSON": B64.encode(&client_data), "authenticatorData": B64.encode(&auth_data),
                "signature": B64.encode(Self::sign(&self.key, &signed)), "userHandle": self.user_handle},
            "clientExtensionResults": {}
        })
    }

    fn id(&self) -> String {
        B64.encode(&self.id)
    }
}

async fn server(b: Backend, trusted: Vec<TrustedAuthenticator>) -> TestServer {
    TestServer::start_with(b, move |c| {
        c.policy.passkeys =
            PasskeyPolicy { rp_id: Some(RP.into()), trusted_authenticators: trusted, ..Default::default() }
    })
    .await
}

async fn enroll(
    s: &TestServer,
    access_token: &str,
    key: &mut SecurityKey,
    attested: bool,
) -> latchkey_testkit::proto::FlowAnswer {
    let c = s.client();
    let a = if attested { c.enroll_attested_passkey(access_token).await } else { c.enroll_passkey(access_token).await };
    let a = a.unwrap();
    c.passkey(&a.flow_id, key.create(&a.next_step), None).await.unwrap()
}

async fn wa_5_an_attested_key_registers_only_under_a_trusted_root_and_model_and_signs_in_at_aal3(b: Backend) {
    let (vendor, stranger) = (Vendor::new(), Vendor::new());
    let s = server(b, vec![vendor.trusted("Test Key 5", &[MODEL])]).await;
    let (t, _) = aal2_user_and_secret(&s, "ines").await;
    let c = s.client();
    // The options ask the authenticator to prove its model.
    let a = c.enroll_attested_passkey(&t.access_token).await.unwrap();
    let NextStep::Passkey { options, .. } = &a.next_step else { panic!("{:?}", a.next_step) };
    assert_eq!(options["attestation"], "direct");
    let odd = json!({"type": "totp", "attested": true});
    let r = s.raw().request("POST", "/v1/me/factors", Some(&t.access_token), Some(odd)).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_REQUEST)), "{}", r.body);
    // WA-5: a root the policy does not trust, a model the trusted root does not vouch for, or
    // a synced passkey: refused, nothing registered.
    let refused = c.passkey(&a.flow_id, stranger.key(MODEL, false).create(&a.next_step), None).await.unwrap();
    assert_eq!(refused.error.map(|e| e.code), Some(codes::CODE_MISMATCH.to_owned()));
    for mut key in [vendor.key(OTHER_MODEL, false), vendor.key(MODEL, true)] {
        let refused = enroll(&s, &t.access_token, &mut key, true).await;
        assert_eq!(refused.error.map(|e| e.code), Some(codes::CODE_MISMATCH.to_owned()));
    }
    assert!(c.passkeys(&t.access_token).await.unwrap().passkeys.is_empty());

    let mut key = vendor.key(MODEL, false);
    assert_eq!(enroll(&s, &t.access_token, &mut key, true).await.next_step, NextStep::Done);
    let listed = c.passkeys(&t.access_token).await.unwrap().passkeys;
    assert_eq!(
        (listed[0].attested, listed[0].authenticator.as_deref(), listed[0].backup_eligible),
        (true, Some("Test Key 5"), false)
    );
    // Signing in with it, no username: aal3, and the amr says only what RFC 8176 defines.
    let a = c.sign_in_with_passkey().await.unwrap();
    let done = c.passkey(&a.flow_id, key.get(&a.next_step), None).await.unwrap();
    let tokens = done.tokens.expect("tokens");
    let claims = jwt_claims(&tokens.access_token);
    assert_eq!((claims["acr"].as_str(), claims["amr"].clone()), (Some("aal3"), json!(["hwk", "user", "mfa"])));
    // Such a session meets any step-up at once, and keeps aal3 on refresh.
    let aal3 = StepUpRequest { acr_values: Some("aal3".into()), ..Default::default() };
    let met = c.step_up(&tokens.access_token, &aal3).await.unwrap();
    assert_eq!(met.next_step, NextStep::Done);
    let refreshed = c.refresh(&met.tokens.unwrap().refresh_token).await.unwrap();
    assert_eq!(jwt_claims(&refreshed.access_token)["acr"], "aal3");
    // And may do what needs aal2 (register another passkey).
    assert!(c.enroll_passkey(&refreshed.access_token).await.is_ok());
    // The trust is the policy's now, not the registration's: a replica that no longer trusts
    // the vendor signs the same key in at aal2 and lists it as not attested.
    let untrusting = s.replica_with(|c| c.policy.passkeys.trusted_authenticators.clear()).await;
    let c = untrusting.client();
    let a = c.sign_in_with_passkey().await.unwrap();
    let done = c.passkey(&a.flow_id, key.get(&a.next_step), None).await.unwrap();
    let tokens = done.tokens.expect("tokens");
    assert_eq!(jwt_claims(&tokens.access_token)["acr"], "aal2");
    assert!(!c.passkeys(&tokens.access_token).await.unwrap().passkeys[0].attested);
}

async fn a_step_up_to_aal3_needs_the_attested_key_and_a_synced_passkey_never_gives_it(b: Backend) {
    let vendor = Vendor::new();
    let s = server(b, vec![vendor.trusted("Test Key 5", &[MODEL])]).await;
    let (t, _) = aal2_user_and_secret(&s, "jon").await;
    let c = s.client();
    // A synced passkey whose attestation even chains to the trusted root, registered the
    // ordinary way: aal2 at most.
    let mut synced = vendor.key(MODEL, true);
    assert_eq!(enroll(&s, &t.access_token, &mut synced, false).await.next_step, NextStep::Done);
    assert!(!c.passkeys(&t.access_token).await.unwrap().passkeys[0].attested);
    let aal3 = StepUpRequest { acr_values: Some("aal3".into()), ..Default::default() };
    let e = c.step_up(&t.access_token, &aal3).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(409), Some(codes::MFA_REQUIRED)), "{e:?}");
    let a = c.sign_in_with_passkey().await.unwrap();
    let done = c.passkey(&a.flow_id, synced.get(&a.next_step), None).await.unwrap();
    assert_eq!(jwt_claims(&done.tokens.unwrap().access_token)["acr"], "aal2");

    // With an attested key, the step-up asks for it alone, and raises the same session.
    let mut key = vendor.key(MODEL, false);
    assert_eq!(enroll(&s, &t.access_token, &mut key, true).await.next_step, NextStep::Done);
    let a = c.step_up(&t.access_token, &aal3).await.unwrap();
    let NextStep::Passkey { options, .. } = &a.next_step else { panic!("{:?}", a.next_step) };
    let allowed: Vec<&str> =
        options["allowCredentials"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(allowed, vec![key.id().as_str()]);
    // The synced passkey's assertion does not answer it.
    let refused = c.passkey(&a.flow_id, synced.get(&a.next_step), None).await.unwrap();
    assert_eq!(refused.error.map(|e| e.code), Some(codes::CODE_MISMATCH.to_owned()));
    let done = c.passkey(&a.flow_id, key.get(&a.next_step), None).await.unwrap();
    let raised = jwt_claims(&done.tokens.unwrap().access_token);
    assert_eq!(raised["acr"], "aal3");
    assert_eq!(raised["sid"], jwt_claims(&t.access_token)["sid"]);
    assert!(!raised["amr"].as_array().unwrap().iter().any(|m| m.as_str().is_some_and(|m| m.contains("attested"))));
    // A password sign-in asking for aal3 is asked for a second factor, as for aal2.
    let f = c
        .sign_in_with(&latchkey_testkit::proto::SignInRequest {
            username: Some("jon".into()),
            password: Some(PW.into()),
            acr_values: Some("aal3".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let NextStep::SelectMfa { methods } = &f.next_step else { panic!("{:?}", f.next_step) };
    assert!(methods.contains(&MfaMethod::Passkey), "{methods:?}");
}

async fn wa_6_spoilt_attestations_are_refused_and_a_good_one_registers(b: Backend) {
    let vendor = Vendor::new();
    let s = server(b, vec![vendor.trusted("Test Key 5", &[MODEL])]).await;
    // An account each: wrong answers count towards the account's code lockout (checklist RL-7),
    // which would refuse the good one for another reason.
    for (i, tamper) in
        [Tamper::Cbor, Tamper::Signature, Tamper::CertificateModel, Tamper::CriticalModel, Tamper::OrganizationalUnit]
            .into_iter()
            .enumerate()
    {
        let (t, _) = aal2_user_and_secret(&s, &format!("kai{i}")).await;
        for attested in [true, false] {
            let refused = enroll(&s, &t.access_token, &mut vendor.key_with(MODEL, false, tamper), attested).await;
            let code = refused.error.map(|e| e.code);
            assert_eq!(code, Some(codes::CODE_MISMATCH.to_owned()), "{tamper:?}, attested: {attested}");
        }
        assert!(s.client().passkeys(&t.access_token).await.unwrap().passkeys.is_empty());
        // The same account, an unspoilt key: registered (the refusals were the verifier's).
        let mut good = vendor.key(MODEL, false);
        assert_eq!(enroll(&s, &t.access_token, &mut good, true).await.next_step, NextStep::Done, "after {tamper:?}");
    }
}

both_stores!(
    wa_5_an_attested_key_registers_only_under_a_trusted_root_and_model_and_signs_in_at_aal3,
    a_step_up_to_aal3_needs_the_attested_key_and_a_synced_passkey_never_gives_it,
    wa_6_spoilt_attestations_are_refused_and_a_good_one_registers,
);
