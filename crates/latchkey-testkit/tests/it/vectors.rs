//! `docs/test-vectors/device.json`: the phone's half of the protocol — key encodings, the JWK
//! thumbprint, the signed device and approval messages, a DPoP proof — as fixed inputs and the
//! exact outputs, for a Flutter, Kotlin or Swift implementation to test itself against. This
//! test holds the server and the SDK to the same file: the deterministic outputs must be equal,
//! the file's signatures must verify with the server's checks, and the SDK's own must too.
//!
//! `LATCHKEY_WRITE_TEST_VECTORS=1 cargo test -p latchkey-testkit -- vectors` writes a new file
//! (new keys and signatures); without it the file is only read.

use data_encoding::BASE64URL_NOPAD as B64;
use latchkey_client::{Client, Keystore, SoftwareKeystore, key_alias};
use latchkey_core::factors::device::{self as dk, KeyRole, Purpose};
use latchkey_testkit::proto::{ApprovalDecision, DeviceKey, approval_message, device_message};
use serde_json::{Value, json};
use std::sync::Arc;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/test-vectors/device.json");
const DEVICE: &str = "0193a4c2-7b1e-7c3a-9f00-5e1d2c3b4a59";
const FLOW: &str = "0193a4c2-7b1e-7c3a-9f00-aa11bb22cc33";
const NONCE: &str = "q2Zr8vJ3kQW5nXc0bT1yHg7sL4mP9aEfUdRiOjKwNzA";
const APPROVAL: &str = "0193a4c2-7b1e-7c3a-9f00-0a0b0c0d0e0f";
const APPROVAL_NONCE: &str = "c3VwZXItc2VjcmV0LW5vbmNl";
const URL: &str = "https://auth.example.com/v1/token";
const IAT: i64 = 1_764_590_400;
const ACCESS_TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ2ZWN0b3IifQ.c2lnbmF0dXJl";

/// The 26 bytes that make a P-256 point (65 bytes) a SubjectPublicKeyInfo DER.
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

fn key_entry(ks: &SoftwareKeystore, role: DeviceKey) -> Value {
    let alias = key_alias(DEVICE, role);
    let pkcs8 = ks.export().into_iter().find(|(a, _)| *a == alias).unwrap().1;
    let point = ks.public_key(&alias).unwrap();
    let spki = [SPKI_PREFIX.as_slice(), &point].concat();
    json!({
        "pkcs8": B64.encode(&pkcs8),
        "x963": B64.encode(&point),
        "spki": B64.encode(&spki),
        "jwk": {"kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])},
        "jkt": latchkey_core::dpop::thumbprint(&point).unwrap(),
    })
}

/// A DER ECDSA signature's `r‖s` (64 bytes): both encodings are accepted.
fn der_to_raw(der: &[u8]) -> Vec<u8> {
    let int = |b: &[u8]| -> (Vec<u8>, usize) {
        let len = usize::from(b[1]);
        let v = b[2..2 + len].iter().copied().skip_while(|x| *x == 0).collect::<Vec<_>>();
        let mut out = vec![0u8; 32 - v.len()];
        out.extend(v);
        (out, 2 + len)
    };
    let (r, used) = int(&der[2..]);
    let (s, _) = int(&der[2 + used..]);
    [r, s].concat()
}

fn signed(ks: &SoftwareKeystore, role: DeviceKey, message: &str) -> Value {
    let der = ks.sign(&key_alias(DEVICE, role), message.as_bytes()).unwrap();
    json!({"signature_der": B64.encode(&der), "signature_raw": B64.encode(&der_to_raw(&der))})
}

fn device_messages() -> Vec<(Purpose, &'static str, DeviceKey)> {
    let mut out = vec![];
    for (p, name) in [(Purpose::Enroll, "enroll"), (Purpose::SignIn, "sign_in"), (Purpose::Rekey, "rekey")] {
        for role in [DeviceKey::Possession, DeviceKey::Biometric] {
            out.push((p, name, role));
        }
    }
    out
}

fn approvals() -> Vec<(ApprovalDecision, &'static str, &'static str)> {
    vec![
        (ApprovalDecision::Approve, "sign_in", "42"),
        (ApprovalDecision::Deny, "new_device", ""),
        (ApprovalDecision::Report, "recovery", ""),
    ]
}

fn role_of(k: DeviceKey) -> KeyRole {
    if k == DeviceKey::Biometric { KeyRole::Biometric } else { KeyRole::Possession }
}

/// A fresh file: new keys, their signatures and a proof.
fn generate() -> Value {
    let ks = SoftwareKeystore::new();
    for role in [DeviceKey::Possession, DeviceKey::Biometric] {
        ks.create_key(&key_alias(DEVICE, role), role == DeviceKey::Biometric).unwrap();
    }
    let messages: Vec<Value> = device_messages()
        .into_iter()
        .map(|(_, purpose, role)| {
            let message = device_message(purpose, FLOW, NONCE, role, DEVICE);
            let mut v = json!({"purpose": purpose, "key": role.as_str(), "message": message});
            v.as_object_mut().unwrap().extend(signed(&ks, role, &message).as_object().unwrap().clone());
            v
        })
        .collect();
    let approvals: Vec<Value> = approvals()
        .into_iter()
        .map(|(decision, kind, number)| {
            let message = approval_message(APPROVAL, APPROVAL_NONCE, kind, number, decision, DEVICE);
            let mut v = json!({"decision": decision.as_str(), "kind": kind, "number": number, "message": message});
            v.as_object_mut().unwrap().extend(signed(&ks, DeviceKey::Biometric, &message).as_object().unwrap().clone());
            v
        })
        .collect();
    let client =
        Client::new("https://auth.example.com").unwrap().with_device_key(Arc::new(ks.clone()), DEVICE).unwrap();
    let valid = client.dpop_proof("POST", URL, Some(ACCESS_TOKEN), Some(IAT)).unwrap();
    // The same proof with another signature: its last byte changed.
    let mut invalid = valid.clone().into_bytes();
    let last = invalid.len() - 2;
    invalid[last] = if invalid[last] == b'A' { b'B' } else { b'A' };
    json!({
        "about": "Test vectors for the phone's half of the Latchkey protocol (docs/devices.md, docs/push.md). The keys are test keys: never use them. Strings are UTF-8; binary values are Base64url without padding. `message` is exactly the bytes signed (lines joined by \\n, no trailing newline); `<nonce>`, `<flow id>`, `<device id>` and `<approval id>` are the exact strings the server sent. Signatures are ECDSA P-256 with SHA-256, as DER or as r‖s (64 bytes): the server accepts both; a new signature of the same message differs (ECDSA is randomised) and must verify.",
        "inputs": {"device_id": DEVICE, "flow_id": FLOW, "nonce": NONCE, "approval_id": APPROVAL, "approval_nonce": APPROVAL_NONCE},
        "keys": {"possession": key_entry(&ks, DeviceKey::Possession), "biometric": key_entry(&ks, DeviceKey::Biometric)},
        "device_messages": messages,
        "approval_messages": approvals,
        "dpop": {
            "method": "POST",
            "url": URL,
            "iat": IAT,
            "access_token": ACCESS_TOKEN,
            "ath": latchkey_core::dpop::access_token_hash(ACCESS_TOKEN),
            "jkt": key_entry(&ks, DeviceKey::Possession)["jkt"],
            "valid_proof": valid,
            "invalid_proof": String::from_utf8(invalid).unwrap(),
            "invalid_reason": "the signature does not verify",
        },
    })
}

fn part(jws: &str, i: usize) -> Value {
    serde_json::from_slice(&B64.decode(jws.split('.').nth(i).unwrap().as_bytes()).unwrap()).unwrap()
}

#[test]
fn the_test_vectors_hold_for_the_server_and_the_sdk() {
    if std::env::var("LATCHKEY_WRITE_TEST_VECTORS").is_ok() {
        std::fs::create_dir_all(std::path::Path::new(PATH).parent().unwrap()).unwrap();
        std::fs::write(PATH, serde_json::to_string_pretty(&generate()).unwrap() + "\n").unwrap();
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let ks = SoftwareKeystore::new();
    let mut points = std::collections::HashMap::new();
    for role in [DeviceKey::Possession, DeviceKey::Biometric] {
        let k = &v["keys"][role.as_str()];
        ks.import(&key_alias(DEVICE, role), B64.decode(k["pkcs8"].as_str().unwrap().as_bytes()).unwrap()).unwrap();
        assert_eq!(key_entry(&ks, role), *k, "{} key: encodings and thumbprint", role.as_str());
        // The server reads both encodings of the public key to the same point.
        let from_spki = dk::parse_public_key(k["spki"].as_str().unwrap()).unwrap();
        assert_eq!(from_spki, dk::parse_public_key(k["x963"].as_str().unwrap()).unwrap());
        points.insert(role.as_str(), from_spki);
    }
    let purposes = [("enroll", Purpose::Enroll), ("sign_in", Purpose::SignIn), ("rekey", Purpose::Rekey)];
    let listed = v["device_messages"].as_array().unwrap();
    assert_eq!(listed.len(), device_messages().len());
    for (m, (_, purpose, role)) in listed.iter().zip(device_messages()) {
        let message = m["message"].as_str().unwrap();
        assert_eq!(message, device_message(purpose, FLOW, NONCE, role, DEVICE), "the SDK's message");
        let p = purposes.iter().find(|(n, _)| *n == purpose).unwrap().1;
        assert_eq!(message, dk::signed_message(p, FLOW, NONCE, role_of(role), DEVICE), "the server's message");
        let point = &points[role.as_str()];
        for enc in ["signature_der", "signature_raw"] {
            assert!(dk::verify(point, message.as_bytes(), m[enc].as_str().unwrap()), "{purpose} {enc}");
        }
        let fresh = signed(&ks, role, message);
        assert!(dk::verify(point, message.as_bytes(), fresh["signature_raw"].as_str().unwrap()), "the SDK's signature");
        let other = &points[if role == DeviceKey::Biometric { "possession" } else { "biometric" }];
        assert!(!dk::verify(other, message.as_bytes(), m["signature_der"].as_str().unwrap()), "another key's");
    }
    for (m, (decision, kind, number)) in v["approval_messages"].as_array().unwrap().iter().zip(approvals()) {
        let message = m["message"].as_str().unwrap();
        assert_eq!(message, approval_message(APPROVAL, APPROVAL_NONCE, kind, number, decision, DEVICE));
        assert!(dk::verify(&points["biometric"], message.as_bytes(), m["signature_raw"].as_str().unwrap()));
    }
    let d = &v["dpop"];
    let valid = d["valid_proof"].as_str().unwrap();
    let proof = latchkey_server::dpop::verify(valid).expect("the file's proof verifies");
    assert_eq!((proof.jkt.as_str(), proof.htm.as_str(), proof.htu.as_str()), (d["jkt"].as_str().unwrap(), "POST", URL));
    assert_eq!((proof.iat, proof.ath.as_deref()), (IAT, d["ath"].as_str()));
    assert_eq!(latchkey_core::dpop::access_token_hash(ACCESS_TOKEN), d["ath"].as_str().unwrap());
    let invalid = latchkey_server::dpop::verify(d["invalid_proof"].as_str().unwrap()).unwrap_err();
    assert_eq!(invalid, d["invalid_reason"].as_str().unwrap());
    // The SDK's proof for the same request: the same header and claims (a fresh jti), and valid.
    let client =
        Client::new("https://auth.example.com").unwrap().with_device_key(Arc::new(ks.clone()), DEVICE).unwrap();
    let fresh = client.dpop_proof("POST", URL, Some(ACCESS_TOKEN), Some(IAT)).unwrap();
    assert_eq!(part(&fresh, 0), part(valid, 0), "header");
    let (mut a, mut b) = (part(&fresh, 1), part(valid, 1));
    assert_ne!(a["jti"], b["jti"], "a fresh jti");
    a.as_object_mut().unwrap().remove("jti");
    b.as_object_mut().unwrap().remove("jti");
    assert_eq!(a, b, "claims");
    assert!(latchkey_server::dpop::verify(&fresh).is_ok());
}

const ACTION_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/test-vectors/action.json");

/// Actions and their canonical encodings and hashes (docs/adaptive.md, "Approving an action"):
/// what an app's backend and a phone compute to check an approval binds *this* action.
fn action_vectors() -> Value {
    use latchkey_testkit::proto::{Action, action_approval_kind, canonical_action};
    let actions = [
        Action {
            kind: "payment".into(),
            text: "Pay €120.00 to ACME Ltd".into(),
            data: Some(json!({"payee": "ACME Ltd", "amount_minor": 12000, "currency": "EUR"})),
        },
        Action {
            kind: "payment".into(),
            text: "Pay €120.01 to ACME Ltd".into(),
            data: Some(json!({"payee": "ACME Ltd", "amount_minor": 12001, "currency": "EUR"})),
        },
        Action { kind: "device.unlock".into(), text: "Unlock the front door".into(), data: None },
        Action {
            kind: "transfer".into(),
            text: "Send \"savings\"\tto\nBob".into(),
            data: Some(json!({"z": [3, {"b": false, "a": null}], "a": "\u{1}é", "n": -7})),
        },
    ];
    let entries: Vec<Value> = actions
        .iter()
        .map(|a| {
            let canonical = canonical_action(a).unwrap();
            let hash = latchkey_core::crypto::sha256_b64(canonical.as_bytes());
            json!({"action": a, "canonical": canonical, "sha256_b64url": hash, "approval_kind": action_approval_kind(&hash)})
        })
        .collect();
    json!({
        "about": "Action approval (docs/adaptive.md): `canonical` is the exact UTF-8 text hashed (RFC 8785 JCS for actions with ASCII keys and no fractional numbers); `sha256_b64url` is Base64url without padding of its SHA-256, the approval JWT's `action_hash`; `approval_kind` is the approval's `kind`, inside the signed approval message.",
        "actions": entries,
    })
}

#[test]
fn the_action_vectors_hold_for_the_server_and_the_sdk() {
    if std::env::var("LATCHKEY_WRITE_TEST_VECTORS").is_ok() {
        std::fs::write(ACTION_PATH, serde_json::to_string_pretty(&action_vectors()).unwrap() + "\n").unwrap();
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(ACTION_PATH).unwrap()).unwrap();
    assert_eq!(v, action_vectors(), "the file is what the server computes");
    for e in v["actions"].as_array().unwrap() {
        let action: latchkey_testkit::proto::Action = serde_json::from_value(e["action"].clone()).unwrap();
        assert_eq!(
            latchkey_client::action_hash(&action).unwrap(),
            e["sha256_b64url"].as_str().unwrap(),
            "the SDK's hash"
        );
    }
    let hashes: std::collections::HashSet<&str> =
        v["actions"].as_array().unwrap().iter().map(|e| e["sha256_b64url"].as_str().unwrap()).collect();
    assert_eq!(hashes.len(), 4, "one cent more is another hash");
}
