//! Approving an action, not just a session (PSD2-style dynamic linking): `POST /v1/step-up` with
//! an `action` asks the enrolled phone, which shows its text and signs its hash; `done` carries
//! an approval JWT the app's backend verifies with the JWKS — and a changed action does not.

use super::push::{asked, with_phone};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use latchkey_client::{Client, Unlock, action_hash, verified_action};
use latchkey_testkit::proto::{Action, ApprovalDecision, ApprovalRequest, NextStep, StepUpRequest, Tokens, codes};
use latchkey_testkit::{Backend, TestServer, jwt_claims};

const PW: &str = "correct horse battery";

fn payment(amount_minor: i64, payee: &str) -> Action {
    Action {
        kind: "payment".into(),
        text: format!("Pay €{}.{:02} to {payee}", amount_minor / 100, amount_minor % 100),
        data: Some(serde_json::json!({"amount_minor": amount_minor, "currency": "EUR", "payee": payee})),
    }
}

fn with_action(action: Action) -> StepUpRequest {
    StepUpRequest { action: Some(action), ..Default::default() }
}

/// The phone's own app session (a device sign-in by its biometric key).
async fn phone_session(phone: &Client, ks: &latchkey_client::SoftwareKeystore) -> Tokens {
    let id = phone.device_id().unwrap().to_owned();
    phone.device_sign_in(&id, ks, Unlock::Biometric).await.unwrap().tokens.unwrap()
}

/// What the app's backend does before it executes `action`: verify the approval with the JWKS,
/// and compare the hash it binds with the hash of the action about to run.
async fn backend_accepts(s: &TestServer, approval: &str, action: &Action) -> Result<serde_json::Value, String> {
    let header = jsonwebtoken::decode_header(approval).map_err(|e| e.to_string())?;
    if header.typ.as_deref() != Some("approval+jwt") {
        return Err(format!("typ {:?}", header.typ));
    }
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&s.raw().request("GET", "/.well-known/jwks.json", None, None).await.body).unwrap();
    let jwk = set.find(header.kid.as_deref().unwrap_or_default()).ok_or("unknown kid")?;
    let mut v = Validation::new(Algorithm::ES256);
    v.set_issuer(&[s.url.as_str()]);
    v.set_audience(&["latchkey"]);
    v.validate_exp = false; // the server's clock is the test's fake one
    let claims = jsonwebtoken::decode::<serde_json::Value>(approval, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .map_err(|e| e.to_string())?
        .claims;
    if claims["action_hash"] != action_hash(action).unwrap().as_str() {
        return Err("the approval is for another action".into());
    }
    Ok(claims)
}

async fn an_approved_action_carries_a_jwt_the_backend_verifies_and_a_changed_action_does_not(b: Backend) {
    let s = TestServer::start(b).await;
    let (phone, ks) = with_phone(&s, "ada").await;
    let t = phone_session(&phone, &ks).await;
    let action = payment(12000, "ACME Ltd");
    let a = phone.step_up(&t.access_token, &with_action(action.clone())).await.unwrap();
    let NextStep::PushApproval { number, .. } = a.next_step.clone() else { panic!("{:?}", a.next_step) };
    // The phone is asked to approve exactly this action: its hash in the signed kind.
    let req = asked(&phone).await;
    assert_eq!(req.kind, format!("action:{}", action_hash(&action).unwrap()));
    assert_eq!(verified_action(&req).unwrap(), Some(&action));
    assert_eq!(req.action.as_ref().map(|a| a.text.as_str()), Some("Pay €120.00 to ACME Ltd"));
    phone.answer_approval(&req, ApprovalDecision::Approve, Some(&number)).await.unwrap();
    let done = phone.flow(&a.flow_id).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    let approval = done.approval.expect("an approval JWT");
    let tokens = done.tokens.expect("the session's tokens, reissued");
    let claims = backend_accepts(&s, &approval, &action).await.unwrap();
    let session = jwt_claims(&tokens.access_token);
    assert_eq!((&claims["sub"], &claims["sid"]), (&session["sub"], &session["sid"]), "the same user and session");
    assert_eq!(session["sid"], jwt_claims(&t.access_token)["sid"]);
    assert_eq!(claims["action_type"], "payment");
    assert!(claims["amr"].as_array().unwrap().iter().any(|m| m == "hwk"), "{claims}");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 300);
    // A changed amount or payee does not verify.
    assert!(backend_accepts(&s, &approval, &payment(12001, "ACME Ltd")).await.is_err());
    assert!(backend_accepts(&s, &approval, &payment(12000, "ACME Ltd.")).await.is_err());
    // An approval is not an access token.
    let e = phone.me(&approval).await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    // Reading the flow again shows done without the JWT (it is given once, like tokens).
    let again = phone.flow(&a.flow_id).await.unwrap();
    assert_eq!((again.approval, again.tokens), (None, None));
}

async fn the_phone_refuses_to_approve_an_action_other_than_the_one_its_hash_names(b: Backend) {
    let s = TestServer::start(b).await;
    let (phone, ks) = with_phone(&s, "bea").await;
    let t = phone_session(&phone, &ks).await;
    let a = phone.step_up(&t.access_token, &with_action(payment(500, "Corner shop"))).await.unwrap();
    let NextStep::PushApproval { number, .. } = a.next_step else { panic!("{:?}", a.next_step) };
    let req = asked(&phone).await;
    // What a tampering server or proxy would show: another payee under the same approval.
    let forged = ApprovalRequest { action: Some(payment(50000, "Mallory")), ..req.clone() };
    assert!(verified_action(&forged).is_err());
    let e = phone.answer_approval(&forged, ApprovalDecision::Approve, Some(&number)).await.unwrap_err();
    assert!(e.to_string().contains("not the one this approval binds"), "{e}");
    assert!(
        phone
            .answer_approval(&ApprovalRequest { action: None, ..req.clone() }, ApprovalDecision::Approve, Some(&number))
            .await
            .is_err()
    );
    // Nothing was signed: the approval still waits, and denying it ends the flow without a JWT.
    assert_eq!(asked(&phone).await.id, req.id);
    phone.answer_approval(&req, ApprovalDecision::Deny, None).await.unwrap();
    let denied = phone.flow(&a.flow_id).await.unwrap();
    assert!(matches!(denied.next_step, NextStep::Denied { .. }), "{:?}", denied.next_step);
    assert_eq!((denied.approval, denied.tokens), (None, None));
}

async fn an_action_needs_a_valid_action_and_an_enrolled_phone(b: Backend) {
    let s = TestServer::start(b).await;
    s.create_user("cal", PW).await;
    let t = s.sign_in("cal", PW).await;
    let c = s.client();
    let e = c.step_up(&t.access_token, &with_action(payment(100, "X"))).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(409), Some(codes::MFA_REQUIRED)), "no phone to ask");
    let fraction = Action { data: Some(serde_json::json!({"amount": 1.5})), ..payment(100, "X") };
    let e = c.step_up(&t.access_token, &with_action(fraction)).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(400), Some(codes::INVALID_REQUEST)));
    let raw = s
        .raw()
        .request(
            "POST",
            "/v1/step-up",
            Some(&t.access_token),
            Some(serde_json::json!({"action": {"type": "Pay", "text": "x"}})),
        )
        .await;
    assert_eq!(raw.status, 400, "{}", raw.body);
}

both_stores!(
    an_approved_action_carries_a_jwt_the_backend_verifies_and_a_changed_action_does_not,
    the_phone_refuses_to_approve_an_action_other_than_the_one_its_hash_names,
    an_action_needs_a_valid_action_and_an_enrolled_phone,
);
