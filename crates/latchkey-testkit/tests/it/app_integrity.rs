//! Proof of the operator's genuine app (issue 16, item 4): Play Integrity verdicts minted
//! (`factors::play_dev`) exactly as Google's servers make them for "manage responses yourself" (an ES256 JWS inside an
//! A256KW/A256GCM JWE under the app's own keys), bound to Latchkey's single-use challenges, and
//! required by policy for sign-up and for code sends.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latchkey_core::factors::app_attest::{AppAttest, NONCE_EXTENSION};
use latchkey_core::factors::app_integrity::{AppIntegrityPolicy, GatedAction};
use latchkey_core::factors::attestation::testing::TestRoot;
use latchkey_core::factors::play_dev::{DevPlayKeys, genuine_verdict};
use latchkey_testkit::proto::codes;
use latchkey_testkit::{Backend, TestServer};
use serde_json::json;
use time::Duration;

const PACKAGE: &str = "com.example.app";
/// Google's side for one app: the keys Play Console hands the developer, and the signing half
/// Google keeps.
type Play = DevPlayKeys;

fn new_play() -> Play {
    DevPlayKeys::generate(PACKAGE).unwrap()
}

/// The integrity token for `payload`.
fn mint(play: &Play, payload: &serde_json::Value) -> String {
    play.token(payload).unwrap()
}

/// A verdict as Play returns it for a genuine app on a genuine device.
fn verdict(nonce: &str, at_ms: i64) -> serde_json::Value {
    genuine_verdict(PACKAGE, nonce, at_ms)
}

/// A change that makes a verdict wrong.
type Change = fn(&mut serde_json::Value);

async fn server(b: Backend, play: &Play) -> TestServer {
    let config = play.config().unwrap();
    TestServer::start_with(b, move |c| {
        c.policy.app_integrity = AppIntegrityPolicy {
            require: vec![GatedAction::SignUp, GatedAction::CodeSends],
            play: Some(config),
            ..Default::default()
        }
    })
    .await
}

async fn challenge(s: &TestServer) -> String {
    let r = s.raw().request("POST", "/v1/app-integrity/challenge", None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["challenge"].as_str().unwrap().to_owned()
}

fn sign_up(name: &str) -> String {
    json!({"username": name, "password": "correct horse battery", "email": format!("{name}@example.com")}).to_string()
}

async fn sign_up_with(s: &TestServer, name: &str, proof: Option<&str>) -> latchkey_testkit::RawResponse {
    let header = proof.map(|p| format!("play {p}"));
    let headers: Vec<(&str, &str)> = header.iter().map(|h| ("latchkey-app-integrity", h.as_str())).collect();
    s.raw().raw("POST", "/v1/sign-up", None, Some(sign_up(name)), &headers).await
}

fn refused(r: &latchkey_testkit::RawResponse, says: &str) {
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (403, Some(codes::APP_INTEGRITY_REQUIRED)),
        "{}",
        r.body
    );
    let message = r.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains(says), "{message} should say {says}");
}

async fn a_genuine_app_signs_up_and_anything_else_is_refused_before_a_code_is_sent(b: Backend) {
    let play = new_play();
    let s = server(b, &play).await;
    let now_ms = || s.clock_unix() * 1000;
    // No proof: refused, nothing sent.
    refused(&sign_up_with(&s, "ana", None).await, "needs a Latchkey-App-Integrity header");
    assert!(s.outbox().await.is_empty());
    // A genuine app on a genuine device, with a fresh challenge: the sign-up (and its code) goes.
    let c = challenge(&s).await;
    let token = mint(&play, &verdict(&c, now_ms()));
    let r = sign_up_with(&s, "ana", Some(&token)).await;
    assert_eq!((r.status, r.json()["next_step"]["type"].as_str()), (200, Some("confirm_sign_up")), "{}", r.body);
    assert_eq!(s.messages_to("ana@example.com").await, 1);
    // The same verdict again: its challenge was spent.
    refused(&sign_up_with(&s, "ben", Some(&token)).await, "used already");
    // Each way a verdict can be wrong.
    let bad = |f: Change| {
        let mut v = verdict("placeholder", 0);
        f(&mut v);
        v
    };
    let cases: [(&str, Change); 4] = [
        ("another package", |v| v["requestDetails"]["requestPackageName"] = "com.evil.app".into()),
        ("not the one Play recognises", |v| v["appIntegrity"]["appRecognitionVerdict"] = "UNRECOGNIZED_VERSION".into()),
        ("device integrity", |v| v["deviceIntegrity"]["deviceRecognitionVerdict"] = json!([])),
        ("no nonce", |v| v["requestDetails"].as_object_mut().unwrap().remove("nonce").map(|_| ()).unwrap_or(())),
    ];
    for (says, change) in cases {
        let mut v = bad(change);
        if v["requestDetails"].get("nonce").is_some() {
            v["requestDetails"]["nonce"] = challenge(&s).await.into();
        }
        v["requestDetails"]["timestampMillis"] = now_ms().to_string().into();
        refused(&sign_up_with(&s, "cy", Some(&mint(&play, &v))).await, says);
    }
    // A nonce Latchkey never issued, or one whose MAC was forged.
    refused(
        &sign_up_with(&s, "cy", Some(&mint(&play, &verdict("bm90LWEtY2hhbGxlbmdl", now_ms())))).await,
        "not a challenge",
    );
    let mut forged = challenge(&s).await;
    forged.replace_range(40..41, if &forged[40..41] == "A" { "B" } else { "A" });
    refused(&sign_up_with(&s, "cy", Some(&mint(&play, &verdict(&forged, now_ms())))).await, "not a challenge");
    // Another app's keys: it does not decrypt; a verdict signed by someone else does not verify.
    let other = new_play();
    refused(
        &sign_up_with(&s, "cy", Some(&mint(&other, &verdict(&challenge(&s).await, now_ms())))).await,
        "not for this app",
    );
    let forger = Play { signing_key: new_play().signing_key, ..play.clone() };
    refused(&sign_up_with(&s, "cy", Some(&mint(&forger, &verdict(&challenge(&s).await, now_ms())))).await, "signature");
    // An expired challenge, and a stale verdict.
    let old = challenge(&s).await;
    s.clock.advance(Duration::seconds(301));
    refused(&sign_up_with(&s, "cy", Some(&mint(&play, &verdict(&old, now_ms())))).await, "expired");
    let fresh = challenge(&s).await;
    refused(&sign_up_with(&s, "cy", Some(&mint(&play, &verdict(&fresh, now_ms() - 11 * 60_000)))).await, "too old");
    assert_eq!(s.messages_to("cy@example.com").await, 0, "no refused request sent a code");
}

async fn code_sends_need_the_proof_and_other_requests_do_not(b: Backend) {
    let play = new_play();
    let s = server(b, &play).await;
    let now_ms = s.clock_unix() * 1000;
    let r = sign_up_with(&s, "dee", Some(&mint(&play, &verdict(&challenge(&s).await, now_ms)))).await;
    let flow = r.json()["flow_id"].as_str().unwrap().to_owned();
    // A resend sends a code: gated.
    let resend = format!("/v1/flows/{flow}/resend");
    let r = s.raw().raw("POST", &resend, None, None, &[]).await;
    refused(&r, "code_sends");
    let proof = format!("play {}", mint(&play, &verdict(&challenge(&s).await, now_ms)));
    let r = s.raw().raw("POST", &resend, None, None, &[("latchkey-app-integrity", &proof)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.messages_to("dee@example.com").await, 2);
    // Confirming the code sends nothing, and a password sign-in sends nothing: not gated.
    let code = s.code_for("dee@example.com").await;
    let c = s.client();
    assert_eq!(c.confirm_sign_up(&flow, &code).await.unwrap().next_step, latchkey_testkit::proto::NextStep::Done);
    assert!(c.sign_in("dee", "correct horse battery").await.unwrap().tokens.is_some());
    // Without a verifier there is no challenge to ask for.
    let plain = TestServer::start(Backend::Sqlite).await;
    assert_eq!(plain.raw().request("POST", "/v1/app-integrity/challenge", None, None).await.status, 404);
}

/// An iPhone running the app: its App Attest key, under Apple's (here: a test) root.
struct Iphone {
    key: EcdsaKeyPair,
    key_id: Vec<u8>,
}

const APP_ID: &str = "ABCDE12345.com.example.app";

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &parts.concat()).as_ref().to_vec()
}

fn cbor(v: &ciborium::Value) -> Vec<u8> {
    let mut out = vec![];
    ciborium::ser::into_writer(v, &mut out).unwrap();
    out
}

impl Iphone {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref()).unwrap();
        let key_id = sha256(&[key.public_key().as_ref()]);
        Self { key, key_id }
    }

    fn key_id(&self) -> String {
        STANDARD.encode(&self.key_id)
    }

    /// `attestKey` as Apple's servers answer it, for `app_id` in `environment`.
    fn attestation(&self, root: &TestRoot, app_id: &str, challenge: &str, aaguid: &[u8; 16]) -> String {
        let auth_data = [
            &sha256(&[app_id.as_bytes()])[..],
            &[0x40],
            &[0, 0, 0, 0],
            aaguid,
            &[0, 32],
            &self.key_id,
            b"\xa5\x01\x02\x03\x26", // the COSE key follows; Latchkey reads the certified one
        ]
        .concat();
        let nonce = sha256(&[&auth_data, &sha256(&[challenge.as_bytes()])]);
        let ext = [&[0x30, 0x24, 0xa1, 0x22, 0x04, 0x20][..], &nonce].concat();
        let chain = root.chain_with(self.key.public_key().as_ref(), "App Attest", NONCE_EXTENSION, ext);
        use ciborium::Value as V;
        let object = V::Map(vec![
            (V::Text("fmt".into()), V::Text("apple-appattest".into())),
            (
                V::Text("attStmt".into()),
                V::Map(vec![
                    (V::Text("x5c".into()), V::Array(chain[..2].iter().map(|c| V::Bytes(c.clone())).collect())),
                    (V::Text("receipt".into()), V::Bytes(b"receipt".to_vec())),
                ]),
            ),
            (V::Text("authData".into()), V::Bytes(auth_data)),
        ]);
        STANDARD.encode(cbor(&object))
    }

    /// `generateAssertion` over the challenge, with the key's `counter`.
    fn assertion(&self, app_id: &str, counter: u32, challenge: &str) -> String {
        let auth = [&sha256(&[app_id.as_bytes()])[..], &[0x00], &counter.to_be_bytes()].concat();
        let nonce = sha256(&[&auth, &sha256(&[challenge.as_bytes()])]);
        let sig = self.key.sign(&SystemRandom::new(), &nonce).unwrap();
        use ciborium::Value as V;
        let object = V::Map(vec![
            (V::Text("signature".into()), V::Bytes(sig.as_ref().to_vec())),
            (V::Text("authenticatorData".into()), V::Bytes(auth)),
        ]);
        STANDARD.encode(cbor(&object))
    }
}

const DEVELOP: &[u8; 16] = b"appattestdevelop";

async fn apple_server(b: Backend, root: &TestRoot) -> TestServer {
    let pem = root.pem();
    TestServer::start_with(b, move |c| {
        c.policy.app_integrity = AppIntegrityPolicy {
            require: vec![GatedAction::SignUp, GatedAction::CodeSends],
            apple: Some(AppAttest { app_ids: vec![APP_ID.into()], roots: vec![pem], development: true }),
            ..Default::default()
        }
    })
    .await
}

async fn register(s: &TestServer, key_id: &str, attestation: &str, challenge: &str) -> latchkey_testkit::RawResponse {
    let body = json!({"key_id": key_id, "attestation": attestation, "challenge": challenge});
    s.raw().request("POST", "/v1/app-integrity/apple/keys", None, Some(body)).await
}

fn bad_attestation(r: &latchkey_testkit::RawResponse, says: &str) {
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_ATTESTATION)), "{}", r.body);
    let message = r.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains(says), "{message} should say {says}");
}

async fn an_attested_iphone_signs_up_with_assertions_whose_counter_grows(b: Backend) {
    let root = TestRoot::new();
    let s = apple_server(b, &root).await;
    let phone = Iphone::new();
    // Registration: the attestation must be for this app, this environment, this challenge,
    // this key, under the configured root.
    let c = challenge(&s).await;
    bad_attestation(
        &register(&s, &phone.key_id(), &phone.attestation(&root, "ZZZZZ99999.com.other", &c, DEVELOP), &c).await,
        "not one of the configured apps",
    );
    let c = challenge(&s).await;
    let production = b"appattest\0\0\0\0\0\0\0";
    bad_attestation(
        &register(&s, &phone.key_id(), &phone.attestation(&root, APP_ID, &c, production), &c).await,
        "environment",
    );
    let (c1, c2) = (challenge(&s).await, challenge(&s).await);
    bad_attestation(
        &register(&s, &phone.key_id(), &phone.attestation(&root, APP_ID, &c1, DEVELOP), &c2).await,
        "not for this challenge",
    );
    let c = challenge(&s).await;
    bad_attestation(
        &register(&s, &phone.key_id(), &phone.attestation(&TestRoot::new(), APP_ID, &c, DEVELOP), &c).await,
        "configured root",
    );
    let c = challenge(&s).await;
    bad_attestation(
        &register(&s, &Iphone::new().key_id(), &phone.attestation(&root, APP_ID, &c, DEVELOP), &c).await,
        "key id",
    );
    let c = challenge(&s).await;
    let r = register(&s, &phone.key_id(), &phone.attestation(&root, APP_ID, &c, DEVELOP), &c).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let c = challenge(&s).await;
    bad_attestation(
        &register(&s, &phone.key_id(), &phone.attestation(&root, APP_ID, &c, DEVELOP), &c).await,
        "registered already",
    );
    // Assertions: each over a fresh challenge, with a counter above the last.
    let proof = |key_id: &str, assertion: &str, c: &str| format!("{key_id} {assertion} {c}");
    let c = challenge(&s).await;
    let first = proof(&phone.key_id(), &phone.assertion(APP_ID, 1, &c), &c);
    let r = sign_up_apple(&s, "ivy", &first).await;
    assert_eq!((r.status, r.json()["next_step"]["type"].as_str()), (200, Some("confirm_sign_up")), "{}", r.body);
    // The same request again: its counter is spent (and so is its challenge).
    refused(&sign_up_apple(&s, "jo", &first).await, "did not grow");
    let c = challenge(&s).await;
    refused(
        &sign_up_apple(&s, "jo", &proof(&phone.key_id(), &phone.assertion(APP_ID, 1, &c), &c)).await,
        "did not grow",
    );
    let c = challenge(&s).await;
    let stranger = Iphone::new();
    refused(
        &sign_up_apple(&s, "jo", &proof(&phone.key_id(), &stranger.assertion(APP_ID, 5, &c), &c)).await,
        "signature",
    );
    let c = challenge(&s).await;
    refused(
        &sign_up_apple(&s, "jo", &proof(&stranger.key_id(), &stranger.assertion(APP_ID, 5, &c), &c)).await,
        "not registered",
    );
    let c = challenge(&s).await;
    let other = phone.assertion(APP_ID, 7, "a-challenge-of-nobody");
    refused(&sign_up_apple(&s, "jo", &proof(&phone.key_id(), &other, &c)).await, "signature");
    let c = challenge(&s).await;
    let r = sign_up_apple(&s, "jo", &proof(&phone.key_id(), &phone.assertion(APP_ID, 2, &c), &c)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.messages_to("jo@example.com").await, 1, "only the genuine request sent a code");
}

async fn sign_up_apple(s: &TestServer, name: &str, proof: &str) -> latchkey_testkit::RawResponse {
    let header = format!("apple {proof}");
    s.raw().raw("POST", "/v1/sign-up", None, Some(sign_up(name)), &[("latchkey-app-integrity", &header)]).await
}

both_stores!(
    a_genuine_app_signs_up_and_anything_else_is_refused_before_a_code_is_sent,
    code_sends_need_the_proof_and_other_requests_do_not,
    an_attested_iphone_signs_up_with_assertions_whose_counter_grows,
);
