//! Passkeys (issue 16, checklist WA-1…WA-5): registration from an `aal2` session, sign-in as
//! the first factor (no username) and as a second factor, Android and iOS apps, clone
//! detection, management — driven by 1Password's software authenticator (`passkey-rs`) through
//! the SDK, over real HTTP.

use super::devices::aal2_user_and_secret;
use latchkey_client::Client;
use latchkey_core::factors::passkey::{AndroidApp, PasskeyPolicy};
use latchkey_testkit::proto::{MfaMethod, NextStep, StepUpRequest, Tokens, codes};
use latchkey_testkit::{Backend, TestServer, jwt_claims};
use passkey::authenticator::{Authenticator, UiHint, UserCheck, UserValidationMethod};
use passkey::client::{DefaultClientData, Origin, UnverifiedAssetLink};
use passkey::crypto::rust_crypto::RustCryptoBackend;
use passkey::types::Passkey as StoredKey;
use passkey::types::ctap2::{Aaguid, Ctap2Error};
use passkey::types::webauthn::{CredentialCreationOptions, CredentialRequestOptions};
use time::Duration;
use url::Url;

const PW: &str = "correct horse battery";
const RP: &str = "example.com";
const FINGERPRINT: &str =
    "14:6D:E9:83:C5:73:06:50:D8:EE:B9:95:2F:34:FC:64:16:A0:83:42:E6:1D:BE:A8:8A:04:96:B2:3F:CF:44:E5";
const APPLE_APP: &str = "ABCDE12345.com.example.app";

/// The platform's user check: present, and verified (a PIN or biometric) when asked.
struct Unlock;

#[async_trait::async_trait]
impl UserValidationMethod for Unlock {
    type PasskeyItem = StoredKey;

    async fn check_user<'a>(
        &self,
        _hint: UiHint<'a, StoredKey>,
        presence: bool,
        verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        Ok(UserCheck { presence, verification })
    }

    fn is_verification_enabled(&self) -> Option<bool> {
        Some(true)
    }

    fn is_presence_enabled(&self) -> bool {
        true
    }
}

type Soft = passkey::client::Client<Option<StoredKey>, Unlock, RustCryptoBackend, public_suffix::PublicSuffixList, ()>;

/// A phone's or browser's authenticator holding one passkey, with the origin it speaks for.
struct Phone {
    client: Soft,
    origin: Url,
    android: bool,
}

impl Phone {
    fn web(origin: &str) -> Self {
        Self::new(origin, false)
    }

    fn android() -> Self {
        Self::new("https://example.com", true)
    }

    fn new(origin: &str, android: bool) -> Self {
        let mut auth = Authenticator::new(Aaguid::new_empty(), None, Unlock, RustCryptoBackend);
        auth.set_make_credentials_with_signature_counter(true);
        Self { client: passkey::client::Client::new(auth), origin: Url::parse(origin).unwrap(), android }
    }

    /// Run the `passkey` step's ceremony; the platform's credential as JSON.
    async fn answer(&mut self, step: &NextStep) -> serde_json::Value {
        let NextStep::Passkey { ceremony, options, .. } = step else { panic!("{step:?}") };
        let wrapped = serde_json::json!({ "publicKey": options });
        let origin = origin_of(&self.origin, self.android);
        if ceremony == "create" {
            let req: CredentialCreationOptions = serde_json::from_value(wrapped).unwrap();
            serde_json::to_value(self.client.register(origin, req, DefaultClientData).await.unwrap()).unwrap()
        } else {
            let req: CredentialRequestOptions = serde_json::from_value(wrapped).unwrap();
            serde_json::to_value(self.client.authenticate(origin, req, DefaultClientData).await.unwrap()).unwrap()
        }
    }

    fn stored(&self) -> StoredKey {
        self.client.authenticator().store().clone().unwrap()
    }

    fn restore(&mut self, key: StoredKey) {
        *self.client.authenticator_mut().store_mut() = Some(key);
    }
}

/// The origin the platform reports: the web page's, or the Android app's signing certificate.
fn origin_of(url: &Url, android: bool) -> Origin<'_> {
    if android {
        let link = UnverifiedAssetLink::new(
            "com.example.app",
            FINGERPRINT,
            RP,
            Url::parse("https://example.com/.well-known/assetlinks.json").unwrap(),
        )
        .unwrap();
        Origin::Android(link)
    } else {
        Origin::Web(std::borrow::Cow::Borrowed(url))
    }
}

fn policy() -> PasskeyPolicy {
    PasskeyPolicy {
        rp_id: Some(RP.into()),
        rp_name: Some("Example".into()),
        origins: vec!["https://example.com".into(), "https://login.example.com".into()],
        android_apps: vec![AndroidApp {
            package_name: "com.example.app".into(),
            sha256_cert_fingerprints: vec![FINGERPRINT.into()],
        }],
        apple_app_ids: vec![APPLE_APP.into()],
        ..Default::default()
    }
}

async fn server(b: Backend) -> TestServer {
    TestServer::start_with(b, |c| c.policy.passkeys = policy()).await
}

/// Register a passkey on `phone` for a user signed in at `aal2` just now.
async fn register(s: &TestServer, t: &Tokens, phone: &mut Phone, name: Option<&str>) -> serde_json::Value {
    let c = s.client();
    let a = c.enroll_passkey(&t.access_token).await.unwrap();
    let credential = phone.answer(&a.next_step).await;
    let done = c.passkey(&a.flow_id, credential.clone(), name).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done, "{:?}", done.error);
    credential
}

/// A passkey sign-in with no username: the tokens.
async fn passkey_sign_in(s: &TestServer, phone: &mut Phone) -> Option<Tokens> {
    let c = s.client();
    let a = c.sign_in_with_passkey().await.unwrap();
    let credential = phone.answer(&a.next_step).await;
    c.passkey(&a.flow_id, credential, None).await.unwrap().tokens
}

async fn wa_1_wa_5_a_passkey_registers_from_aal2_only_is_announced_and_signs_in_once_without_a_username(b: Backend) {
    let s = server(b).await;
    let (t, _) = aal2_user_and_secret(&s, "pia").await;
    let c = s.client();
    // The options a platform needs: the relying party, a fresh challenge, a discoverable key
    // verified by the user, and an ES256 key among the algorithms.
    let a = c.enroll_passkey(&t.access_token).await.unwrap();
    let NextStep::Passkey { ceremony, options, .. } = &a.next_step else { panic!("{:?}", a.next_step) };
    assert_eq!(ceremony, "create");
    assert_eq!(options["rp"]["id"], RP);
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(options["authenticatorSelection"]["userVerification"], "required");
    assert!(options["pubKeyCredParams"].as_array().unwrap().iter().any(|p| p["alg"] == -7));
    // WA-1: at least 16 random bytes of challenge (Base64url).
    assert!(options["challenge"].as_str().unwrap().len() >= 22);
    let mut phone = Phone::web("https://example.com");
    let before = s.outbox().await.len();
    let credential = phone.answer(&a.next_step).await;
    let done = c.passkey(&a.flow_id, credential.clone(), Some("Pia's laptop")).await.unwrap();
    assert_eq!(done.next_step, NextStep::Done);
    // WA-5: the owner is told.
    let told = s.outbox().await;
    assert!(told[before..].iter().any(|m| m.to == "pia@example.com" && m.subject.ends_with("A passkey was added")));
    // The same answer again: the flow has moved on.
    let e = c.passkey(&a.flow_id, credential, None).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::FLOW_COMPLETED));
    let listed = c.passkeys(&t.access_token).await.unwrap().passkeys;
    assert_eq!(listed.len(), 1);
    // No authenticator is trusted here: an attested registration cannot be asked for.
    let e = c.enroll_attested_passkey(&t.access_token).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(400), Some(codes::INVALID_REQUEST)));
    // passkey-rs's authenticator makes synced passkeys (backup eligible, backed up), like a
    // password manager's.
    assert_eq!((listed[0].name.as_str(), listed[0].backup_eligible, listed[0].backed_up), ("Pia's laptop", true, true));
    assert!(listed[0].last_used_at.is_none());

    // The first factor, with no username: a user-verified passkey is two factors.
    let a = c.sign_in_with_passkey().await.unwrap();
    let NextStep::Passkey { ceremony, options, .. } = &a.next_step else { panic!("{:?}", a.next_step) };
    assert_eq!((ceremony.as_str(), options["rpId"].as_str()), ("get", Some(RP)));
    assert!(options.get("allowCredentials").is_none_or(|v| v.as_array().is_none_or(Vec::is_empty)));
    let assertion = phone.answer(&a.next_step).await;
    let done = c.passkey(&a.flow_id, assertion.clone(), None).await.unwrap();
    let tokens = done.tokens.expect("tokens");
    let claims = jwt_claims(&tokens.access_token);
    assert_eq!(
        (claims["acr"].as_str(), claims["amr"].clone()),
        (Some("aal2"), serde_json::json!(["swk", "user", "mfa"]))
    );
    assert_eq!(c.me(&tokens.access_token).await.unwrap().username, "pia");
    // A synced passkey's session is aal2 for a step-up too (its swk comes with user).
    let met = c.step_up(&tokens.access_token, &StepUpRequest::default()).await.unwrap();
    assert_eq!(met.next_step, NextStep::Done, "already aal2: nothing to raise");
    let tokens = met.tokens.expect("the same session's tokens, reissued");
    // A passkey sign-in names nothing else.
    let mixed = serde_json::json!({"passkey": true, "username": "pia"});
    let r = s.raw().request("POST", "/v1/sign-in", None, Some(mixed)).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(codes::INVALID_REQUEST)));
    // WA-1: the same assertion in a new sign-in answers another challenge: refused.
    let again = c.sign_in_with_passkey().await.unwrap();
    let refused = c.passkey(&again.flow_id, assertion, None).await.unwrap();
    assert_eq!(refused.error.map(|e| e.code), Some(codes::CODE_MISMATCH.to_owned()));
    assert!(refused.tokens.is_none());
    let listed = c.passkeys(&tokens.access_token).await.unwrap().passkeys;
    assert!(listed[0].last_used_at.is_some());

    // WA-5: a sign-in older than ten minutes, or at aal1, registers nothing.
    s.clock.advance(Duration::minutes(11));
    let stale = c.refresh(&tokens.refresh_token).await.unwrap();
    let e = c.enroll_passkey(&stale.access_token).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(401), Some(codes::INSUFFICIENT_USER_AUTHENTICATION)));
    s.create_user("quinn", PW).await;
    let aal1 = s.sign_in("quinn", PW).await;
    let e = c.enroll_passkey(&aal1.access_token).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(401), Some(codes::INSUFFICIENT_USER_AUTHENTICATION)));
}

async fn a_passkey_is_a_second_factor_after_the_password(b: Backend) {
    let s = server(b).await;
    let (t, _) = aal2_user_and_secret(&s, "paz").await;
    let mut phone = Phone::web("https://login.example.com");
    register(&s, &t, &mut phone, None).await;
    let c = s.client();
    let f = c.sign_in("paz", PW).await.unwrap();
    let NextStep::SelectMfa { methods } = &f.next_step else { panic!("{:?}", f.next_step) };
    assert_eq!(methods[0], MfaMethod::Passkey, "the strongest method first");
    let a = c.select_mfa(&f.flow_id, MfaMethod::Passkey).await.unwrap();
    let NextStep::Passkey { ceremony, options, other_methods, .. } = &a.next_step else { panic!("{:?}", a.next_step) };
    assert_eq!(ceremony, "get");
    assert_eq!(options["allowCredentials"].as_array().unwrap().len(), 1, "the account's passkeys only");
    assert!(other_methods.contains(&MfaMethod::Totp));
    let assertion = phone.answer(&a.next_step).await;
    let done = c.passkey(&a.flow_id, assertion, None).await.unwrap();
    let claims = jwt_claims(&done.tokens.unwrap().access_token);
    assert_eq!(
        (claims["acr"].as_str(), claims["amr"].clone()),
        (Some("aal2"), serde_json::json!(["pwd", "swk", "user", "mfa"]))
    );
    // The default name is "Passkey" (the software authenticator names no model).
    assert_eq!(c.passkeys(&t.access_token).await.unwrap().passkeys[0].name, "Passkey");
}

async fn wa_2_another_origin_rp_id_or_ceremony_is_refused(b: Backend) {
    let s = server(b).await;
    let (t, _) = aal2_user_and_secret(&s, "rex").await;
    let c = s.client();
    // An origin on the relying party's domain that is not configured.
    let a = c.enroll_passkey(&t.access_token).await.unwrap();
    let mut stranger = Phone::web("https://shop.example.com");
    let credential = stranger.answer(&a.next_step).await;
    let refused = c.passkey(&a.flow_id, credential, None).await.unwrap();
    assert_eq!(refused.error.map(|e| e.code), Some(codes::CODE_MISMATCH.to_owned()));
    // Another relying-party id (its hash in the authenticator data), from an allowed origin.
    let a = c.enroll_passkey(&t.access_token).await.unwrap();
    let mut step = a.next_step.clone();
    if let NextStep::Passkey { options, .. } = &mut step {
        options["rp"]["id"] = "login.example.com".into();
    }
    let credential = Phone::web("https://login.example.com").answer(&step).await;
    let refused = c.passkey(&a.flow_id, credential, None).await.unwrap();
    assert_eq!(refused.error.map(|e| e.code), Some(codes::CODE_MISMATCH.to_owned()));
    // An assertion (`webauthn.get`) where a registration (`webauthn.create`) is due.
    let mut phone = Phone::web("https://example.com");
    register(&s, &t, &mut phone, None).await;
    let sign_in = c.sign_in_with_passkey().await.unwrap();
    let assertion = phone.answer(&sign_in.next_step).await;
    let a = c.enroll_passkey(&t.access_token).await.unwrap();
    let refused = c.passkey(&a.flow_id, assertion, None).await.unwrap();
    assert_eq!(refused.error.map(|e| e.code), Some(codes::CODE_MISMATCH.to_owned()));
    // Garbage is a wrong answer too, never a server error.
    let refused = c.passkey(&sign_in.flow_id, serde_json::json!({"id": "x"}), None).await.unwrap();
    assert_eq!(refused.error.map(|e| e.code), Some(codes::CODE_MISMATCH.to_owned()));
    assert_eq!(c.passkeys(&t.access_token).await.unwrap().passkeys.len(), 1);
}

async fn wa_3_a_passkey_without_user_verification_is_refused(b: Backend) {
    let s = server(b).await;
    let (t, _) = aal2_user_and_secret(&s, "uma").await;
    let c = s.client();
    // A client that ignores `userVerification: required`: the authenticator checks presence only.
    let presence_only = |step: &NextStep| {
        let mut step = step.clone();
        if let NextStep::Passkey { options, .. } = &mut step {
            if let Some(sel) = options.get_mut("authenticatorSelection") {
                sel["userVerification"] = "discouraged".into();
            } else {
                options["userVerification"] = "discouraged".into();
            }
        }
        step
    };
    let mut phone = Phone::web("https://example.com");
    let a = c.enroll_passkey(&t.access_token).await.unwrap();
    let credential = phone.answer(&presence_only(&a.next_step)).await;
    let refused = c.passkey(&a.flow_id, credential, None).await.unwrap();
    assert_eq!(refused.error.map(|e| e.code), Some(codes::CODE_MISMATCH.to_owned()));
    assert!(c.passkeys(&t.access_token).await.unwrap().passkeys.is_empty());
    // Registered properly, the same holds at sign-in: no tokens without user verification.
    register(&s, &t, &mut phone, None).await;
    let a = c.sign_in_with_passkey().await.unwrap();
    let assertion = phone.answer(&presence_only(&a.next_step)).await;
    let refused = c.passkey(&a.flow_id, assertion, None).await.unwrap();
    assert!(refused.tokens.is_none());
    assert_eq!(refused.error.map(|e| e.code), Some(codes::CODE_MISMATCH.to_owned()));
}

async fn wa_4_a_counter_that_goes_backwards_is_refused_and_told(b: Backend) {
    let s = server(b).await;
    let (t, _) = aal2_user_and_secret(&s, "cleo").await;
    let mut phone = Phone::web("https://example.com");
    register(&s, &t, &mut phone, None).await;
    let copy = phone.stored();
    assert!(passkey_sign_in(&s, &mut phone).await.is_some());
    assert!(passkey_sign_in(&s, &mut phone).await.is_some(), "the counter moves on each time");
    // A copy of the key made before those sign-ins: its counter is behind the server's.
    let before = s.outbox().await.len();
    let mut clone = Phone::web("https://example.com");
    clone.restore(copy);
    let c = s.client();
    let a = c.sign_in_with_passkey().await.unwrap();
    let assertion = clone.answer(&a.next_step).await;
    let refused = c.passkey(&a.flow_id, assertion, None).await.unwrap();
    assert!(refused.tokens.is_none());
    assert_eq!(refused.error.map(|e| e.code), Some(codes::CODE_MISMATCH.to_owned()));
    let told = s.outbox().await;
    assert!(
        told[before..]
            .iter()
            .any(|m| m.to == "cleo@example.com" && m.subject.ends_with("A passkey may have been copied"))
    );
    // The real authenticator, ahead of the copy, still signs in.
    assert!(passkey_sign_in(&s, &mut phone).await.is_some());
}

async fn android_and_ios_apps_use_the_relying_partys_passkeys(b: Backend) {
    let s = server(b).await;
    let (t, _) = aal2_user_and_secret(&s, "ana").await;
    // The app's origin is its signing certificate's hash.
    let mut app = Phone::android();
    let credential = register(&s, &t, &mut app, Some("Ana's Pixel")).await;
    let client_data = credential["response"]["clientDataJSON"].as_str().unwrap();
    let client_data = data_encoding::BASE64URL_NOPAD.decode(client_data.as_bytes()).unwrap();
    let origin = serde_json::from_slice::<serde_json::Value>(&client_data).unwrap()["origin"].clone();
    assert_eq!(origin, "android:apk-key-hash:FG3pg8VzBlDY7rmVLzT8ZBagg0LmHb6oigSWsj_PROU");
    let tokens = passkey_sign_in(&s, &mut app).await.expect("the app signs in");
    assert_eq!(jwt_claims(&tokens.access_token)["acr"], "aal2");
    // An app signed with another certificate is another origin.
    let other = TestServer::start_with(Backend::Sqlite, |c| {
        let mut p = policy();
        p.android_apps[0].sha256_cert_fingerprints = vec![FINGERPRINT.replace("14:6D", "15:6D")];
        c.policy.passkeys = p;
    })
    .await;
    let (t2, _) = aal2_user_and_secret(&other, "ana").await;
    let a = other.client().enroll_passkey(&t2.access_token).await.unwrap();
    let credential = Phone::android().answer(&a.next_step).await;
    let refused = other.client().passkey(&a.flow_id, credential, None).await.unwrap();
    assert_eq!(refused.error.map(|e| e.code), Some(codes::CODE_MISMATCH.to_owned()));
    // The files that tie the apps to the relying-party id, served so the team need not host them.
    let links = s.raw().request("GET", "/.well-known/assetlinks.json", None, None).await;
    assert_eq!(links.status, 200);
    let statement = &links.json()[0];
    assert_eq!(statement["target"]["package_name"], "com.example.app");
    assert_eq!(statement["target"]["sha256_cert_fingerprints"][0], FINGERPRINT);
    assert!(statement["relation"].as_array().unwrap().contains(&"delegate_permission/common.get_login_creds".into()));
    let aasa = s.raw().request("GET", "/.well-known/apple-app-site-association", None, None).await;
    assert_eq!((aasa.status, aasa.json()["webcredentials"]["apps"][0].as_str()), (200, Some(APPLE_APP)));
    // An iOS app signs with its associated domain's origin: the relying party's own.
    let mut iphone = Phone::web("https://example.com");
    register(&s, &t, &mut iphone, Some("Ana's iPhone")).await;
    assert!(passkey_sign_in(&s, &mut iphone).await.is_some());
    // Without apps configured, there is nothing to serve.
    let none = TestServer::start(Backend::Sqlite).await;
    assert_eq!(none.raw().request("GET", "/.well-known/assetlinks.json", None, None).await.status, 404);
    assert_eq!(none.raw().request("GET", "/.well-known/apple-app-site-association", None, None).await.status, 404);
}

async fn passkeys_are_renamed_and_removed_with_a_step_up_and_a_notice(b: Backend) {
    let s = server(b).await;
    let (t, secret) = aal2_user_and_secret(&s, "rui").await;
    let mut phone = Phone::web("https://example.com");
    register(&s, &t, &mut phone, Some("Old name")).await;
    let c = s.client();
    let id = c.passkeys(&t.access_token).await.unwrap().passkeys[0].id.clone();
    let renamed = c.rename_passkey(&t.access_token, &id, "Work laptop").await.unwrap();
    assert_eq!(renamed.name, "Work laptop");
    let e = c.rename_passkey(&t.access_token, &id, "<a href=x>").await.unwrap_err();
    assert_eq!(e.status(), Some(400));
    // Another account's passkey is not found.
    let (other, _) = aal2_user_and_secret(&s, "sol").await;
    assert_eq!(c.rename_passkey(&other.access_token, &id, "Mine").await.unwrap_err().status(), Some(404));
    assert_eq!(c.remove_passkey(&other.access_token, &id).await.unwrap_err().status(), Some(404));
    // Removing needs a recent aal2 sign-in.
    s.clock.advance(Duration::minutes(11));
    let stale = c.refresh(&t.refresh_token).await.unwrap();
    let e = c.remove_passkey(&stale.access_token, &id).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INSUFFICIENT_USER_AUTHENTICATION));
    let fresh = passkey_sign_in(&s, &mut phone).await.unwrap();
    let before = s.outbox().await.len();
    c.remove_passkey(&fresh.access_token, &id).await.unwrap();
    let told = s.outbox().await;
    assert!(told[before..].iter().any(|m| m.to == "rui@example.com" && m.subject.ends_with("A passkey was removed")));
    assert!(c.passkeys(&fresh.access_token).await.unwrap().passkeys.is_empty());
    // Removed: it signs in no more, and the password sign-in no longer offers it.
    assert!(passkey_sign_in(&s, &mut phone).await.is_none());
    let f = c.sign_in("rui", PW).await.unwrap();
    assert!(matches!(f.next_step, NextStep::TotpCode { .. }), "{:?}", f.next_step);
    let _ = secret;
}

async fn a_passkey_is_a_recovery_proof_a_sim_swap_cannot_bring(b: Backend) {
    let s = server(b).await;
    let (t, _) = aal2_user_and_secret(&s, "vik").await;
    let mut phone = Phone::web("https://example.com");
    register(&s, &t, &mut phone, None).await;
    let c: Client = s.client();
    // The first proof is the email code; the passkey is the independent second one.
    let a = c.recover("vik", None).await.unwrap();
    let code = s.code_for("vik@example.com").await;
    let a = c.email_code(&a.flow_id, &code).await.unwrap();
    let NextStep::SelectMfa { methods } = &a.next_step else { panic!("{:?}", a.next_step) };
    assert!(methods.contains(&MfaMethod::Passkey), "{methods:?}");
    let a = c.select_mfa(&a.flow_id, MfaMethod::Passkey).await.unwrap();
    let assertion = phone.answer(&a.next_step).await;
    let a = c.passkey(&a.flow_id, assertion, None).await.unwrap();
    assert!(a.error.is_none(), "{:?}", a.error);
    assert!(matches!(a.next_step, NextStep::NewPassword { .. } | NextStep::Done), "{:?}", a.next_step);
}

both_stores!(
    wa_1_wa_5_a_passkey_registers_from_aal2_only_is_announced_and_signs_in_once_without_a_username,
    a_passkey_is_a_second_factor_after_the_password,
    wa_2_another_origin_rp_id_or_ceremony_is_refused,
    wa_3_a_passkey_without_user_verification_is_refused,
    wa_4_a_counter_that_goes_backwards_is_refused_and_told,
    android_and_ios_apps_use_the_relying_partys_passkeys,
    passkeys_are_renamed_and_removed_with_a_step_up_and_a_notice,
    a_passkey_steps_a_session_up_in_place_and_proves_a_new_device,
    a_passkey_is_a_recovery_proof_a_sim_swap_cannot_bring,
);

async fn a_passkey_steps_a_session_up_in_place_and_proves_a_new_device(b: Backend) {
    let s = server(b).await;
    let (t, _) = aal2_user_and_secret(&s, "ivo").await;
    let mut phone = Phone::web("https://example.com");
    register(&s, &t, &mut phone, None).await;
    let c = s.client();
    // A session whose sign-in is older than the step-up window raises itself with the passkey.
    s.clock.advance(Duration::minutes(11));
    let stale = c.refresh(&t.refresh_token).await.unwrap();
    let req = StepUpRequest { acr_values: Some("aal2".into()), max_age: Some(600), action: None };
    let a = c.step_up(&stale.access_token, &req).await.unwrap();
    let a = match &a.next_step {
        NextStep::SelectMfa { .. } => c.select_mfa(&a.flow_id, MfaMethod::Passkey).await.unwrap(),
        _ => a,
    };
    let assertion = phone.answer(&a.next_step).await;
    let raised = c.passkey(&a.flow_id, assertion, None).await.unwrap().tokens.expect("raised");
    let (before, after) = (jwt_claims(&stale.access_token), jwt_claims(&raised.access_token));
    assert_eq!(before["sid"], after["sid"], "the same session");
    assert_eq!(after["acr"], "aal2");
    assert!(after["auth_time"].as_i64() > before["auth_time"].as_i64());
    assert_eq!(c.regenerate_recovery_codes(&raised.access_token).await.unwrap().codes.len(), 10);

    // A passwordless account (an enrolled phone, no password) adds a passkey from its device
    // session; on a new phone, after the SMS code, the passkey is the second proof a SIM swap
    // cannot bring.
    let (id, ks, _) = s.passwordless_account("noa", "+14155550777", Some("noa@example.com"), "371946").await;
    let device = c.with_device_key(std::sync::Arc::new(ks.clone()), &id).unwrap();
    let signed_in = device.device_sign_in(&id, &ks, latchkey_client::Unlock::Pin("371946")).await.unwrap();
    let t = signed_in.tokens.unwrap();
    let mut noas = Phone::web("https://example.com");
    let a = device.enroll_passkey(&t.access_token).await.unwrap();
    let credential = noas.answer(&a.next_step).await;
    assert_eq!(device.passkey(&a.flow_id, credential, None).await.unwrap().next_step, NextStep::Done);
    let a = c.sign_in_new_device("noa").await.unwrap();
    let after_sms = c.sms_code(&a.flow_id, &s.code_for("+14155550777").await).await.unwrap();
    let NextStep::SelectMfa { methods } = &after_sms.next_step else { panic!("{:?}", after_sms.next_step) };
    assert!(methods.contains(&MfaMethod::Passkey), "{methods:?}");
    let a2 = c.select_mfa(&a.flow_id, MfaMethod::Passkey).await.unwrap();
    let assertion = noas.answer(&a2.next_step).await;
    let e = c.passkey(&a.flow_id, assertion, None).await.unwrap();
    assert!(matches!(e.next_step, NextStep::EnrollDevice { .. }), "{:?}", e.next_step);
    let new_ks = latchkey_client::SoftwareKeystore::new();
    let (new_id, done) = c.enroll_device_step(&e, &new_ks, "New phone", "android", "902817").await.unwrap();
    let me = c.with_device_key(std::sync::Arc::new(new_ks), &new_id).unwrap();
    let amr = me.me(&done.tokens.unwrap().access_token).await.unwrap().amr;
    assert_eq!(amr, vec!["sms".to_string(), "swk".into(), "hwk".into()]);
}
