//! The Latchkey device SDK: a typed client for every flow step, so an app only draws screens.
//!
//! ```no_run
//! use latchkey_client::Client;
//! use latchkey_proto::NextStep;
//! # async fn run() -> Result<(), latchkey_client::ClientError> {
//! let client = Client::new("http://127.0.0.1:8080")?;
//! let answer = client.sign_in("alice", "correct horse battery staple").await?;
//! match answer.next_step {
//!     NextStep::Done => {
//!         let tokens = answer.tokens.expect("done carries tokens");
//!         let me = client.me(&tokens.access_token).await?;
//!         println!("signed in as {}", me.username);
//!     }
//!     NextStep::ConfirmSignUp { destination, .. } => println!("enter the code sent to {destination}"),
//!     other => println!("next: {}", other.name()),
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod dpop;
mod keystore;
mod passkeys;
mod remember;
mod step_up;
mod vault;

use base64::Engine;
use dpop::DpopKey;
pub use keystore::{Keystore, KeystoreError, SoftwareKeystore};
pub use latchkey_proto as proto;
use latchkey_proto::*;
pub use remember::REMEMBERED_KEY_ALIAS;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
pub use step_up::{StepUpChallenge, action_hash, verified_action};
pub use vault::TokenVault;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body; branch on `code` (see [`proto::codes`]).
    #[error("{status} {code}: {message} (request {request_id})")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable error code.
        code: String,
        /// Message for humans.
        message: String,
        /// Request id, for the server's logs.
        request_id: String,
        /// With `insufficient_user_authentication`: what a step-up must achieve (RFC 9470),
        /// from `WWW-Authenticate`. [`Client::with_step_up`] acts on it.
        challenge: Option<StepUpChallenge>,
    },
    /// The server could not be reached.
    #[error("transport: {0}")]
    Transport(String),
    /// The answer was not what the contract says.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The device's key store failed ([`KeystoreError::Invalidated`]: the biometric key is gone,
    /// sign in with the PIN and enrol the device again).
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
}

/// How the user unlocks a device sign-in.
#[derive(Debug, Clone, Copy)]
pub enum Unlock<'a> {
    /// The biometric key (the OS shows its biometric prompt).
    Biometric,
    /// The possession key and the app PIN.
    Pin(&'a str),
}

/// The key-store alias of a device's key.
pub fn key_alias(device_id: &str, key: DeviceKey) -> String {
    format!("latchkey.{device_id}.{}", key.as_str())
}

pub(crate) fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl ClientError {
    /// The stable error code, for API errors.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Result of a client call.
pub type Result<T> = std::result::Result<T, ClientError>;

/// A client for one Latchkey server. Cheap to clone; clones share the server-clock offset.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    device_key: Option<Arc<DpopKey>>,
    /// The enrolled device this client runs on (its keys are `device_key`'s key store's).
    device_id: Option<String>,
    clock_offset: Arc<AtomicI64>,
}

impl Client {
    /// A client for `base_url` (e.g. `https://auth.example.com`).
    pub fn new(base_url: &str) -> Result<Self> {
        Self::with_user_agent(base_url, concat!("latchkey-client/", env!("CARGO_PKG_VERSION")))
    }

    /// A client sending this `User-Agent` (flows answer only the client that started them).
    pub fn with_user_agent(base_url: &str, user_agent: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            device_key: None,
            device_id: None,
            clock_offset: Arc::new(AtomicI64::new(0)),
        })
    }

    /// A client over an HTTP client configured elsewhere (a proxy, default headers, timeouts);
    /// its `User-Agent` is the one `http` sends.
    pub fn with_http(base_url: &str, http: reqwest::Client) -> Self {
        Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            device_key: None,
            device_id: None,
            clock_offset: Arc::new(AtomicI64::new(0)),
        }
    }

    /// A client that trusts exactly the CA certificates in `roots_pem` (one or more PEM
    /// certificates) instead of the system's: a deployment with a private CA, or a test with a
    /// self-signed certificate.
    pub fn with_root_certificates(base_url: &str, user_agent: &str, roots_pem: &[u8]) -> Result<Self> {
        let roots =
            reqwest::Certificate::from_pem_bundle(roots_pem).map_err(|e| ClientError::Transport(e.to_string()))?;
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .tls_certs_only(roots)
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Self { http, ..Self::with_user_agent(base_url, user_agent)? })
    }

    /// This client on an enrolled device: requests of the device's sessions carry DPoP proofs by
    /// its possession key (RFC 9449) — refreshes always, other calls when the access token is
    /// bound (`cnf.jkt`). Without it a device session cannot refresh.
    pub fn with_device_key(&self, keystore: Arc<dyn Keystore>, device_id: &str) -> Result<Self> {
        let key = DpopKey::new(keystore, key_alias(device_id, DeviceKey::Possession))?;
        Ok(Self { device_key: Some(Arc::new(key)), device_id: Some(device_id.into()), ..self.clone() })
    }

    /// A DPoP proof (RFC 9449) by this device's possession key, for an app's own requests — to its
    /// API with a bound access token (pass it, for `ath`), say. `url` is the full request URL;
    /// `iat` defaults to now by the server's clock as last seen in its `Date` header.
    pub fn dpop_proof(&self, method: &str, url: &str, access_token: Option<&str>, iat: Option<i64>) -> Result<String> {
        let key = self
            .device_key
            .as_ref()
            .ok_or_else(|| ClientError::Decode("no device key: use Client::with_device_key".into()))?;
        key.proof(method, url, access_token, iat.unwrap_or_else(|| self.server_time()))
    }

    /// The enrolled device this client runs on ([`Client::with_device_key`]).
    pub fn device_id(&self) -> Option<&str> {
        self.device_id.as_deref()
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /v1/sign-up`.
    pub async fn sign_up(&self, req: &SignUpRequest) -> Result<FlowAnswer> {
        self.post("/v1/sign-up", None, req).await
    }

    /// `POST /v1/sign-in` with a username and password.
    pub async fn sign_in(&self, username: &str, password: &str) -> Result<FlowAnswer> {
        let req = SignInRequest {
            username: Some(username.into()),
            password: Some(password.into()),
            device_id: None,
            ..Default::default()
        };
        self.post("/v1/sign-in", None, &req).await
    }

    /// `POST /v1/sign-in` with every field the request may carry (`acr_values`, `max_age`).
    pub async fn sign_in_with(&self, req: &SignInRequest) -> Result<FlowAnswer> {
        self.post("/v1/sign-in", None, req).await
    }

    /// `POST /v1/forgot-password`.
    pub async fn forgot_password(&self, username: &str) -> Result<FlowAnswer> {
        self.post("/v1/forgot-password", None, &ForgotPasswordRequest { username: username.into() }).await
    }

    /// `POST /v1/recovery`: recover an account (lost phone, forgotten password). The first step
    /// is `email_code` or `sms_code` (`channel` asks for one); then a second proof
    /// (`select_mfa`) or `recovery_wait`; then `new_password` or `enroll_device`.
    pub async fn recover(&self, username: &str, channel: Option<Channel>) -> Result<FlowAnswer> {
        self.post("/v1/recovery", None, &RecoveryRequest { username: username.into(), channel }).await
    }

    /// Answer `recovery_wait`: the same step before `ready_at`, the next one after it.
    pub async fn recovery_wait(&self, flow_id: &str) -> Result<FlowAnswer> {
        self.answer(flow_id, &StepAnswer::RecoveryWait {}).await
    }

    /// `POST /v1/recovery/cancel`: "this wasn't me", with the token from a security notice's
    /// link (a waiting recovery is cancelled, a change undone).
    pub async fn this_wasnt_me(&self, token: &str) -> Result<UndoOutcome> {
        self.post("/v1/recovery/cancel", None, &RecoveryCancelRequest { token: token.into() }).await
    }

    /// `DELETE /v1/me/recovery`: cancel every recovery of the signed-in account in progress.
    pub async fn cancel_my_recoveries(&self, access_token: &str) -> Result<RecoveryCancelled> {
        self.send(self.authed(Method::DELETE, "/v1/me/recovery", access_token)?).await
    }

    /// `GET /v1/flows/{id}`.
    pub async fn flow(&self, flow_id: &str) -> Result<FlowAnswer> {
        self.send(self.http.get(self.url(&format!("/v1/flows/{flow_id}")))).await
    }

    /// `GET /v1/flows/{id}?wait=N`: at `push_approval`, held up to `wait_secs` (at most 30) until
    /// the phone answers; `done` with tokens once approved, `denied` when not.
    pub async fn wait_flow(&self, flow_id: &str, wait_secs: u64) -> Result<FlowAnswer> {
        self.send(self.http.get(self.url(&format!("/v1/flows/{flow_id}?wait={wait_secs}")))).await
    }

    // ----- on an enrolled device: push approvals ----------------------------------------------

    /// `GET /v1/device/approvals`: what this device's account is asked to approve. Needs
    /// [`Client::with_device_key`]; the request is signed by the possession key.
    pub async fn device_approvals(&self) -> Result<ApprovalList> {
        self.signed_by_device(Method::GET, "/v1/device/approvals", None::<&()>).await
    }

    /// `DELETE /v1/device/recovery`: from an enrolled device, cancel every recovery of its
    /// account in progress (the push a recovery sends says `{"type":"recovery"}`).
    pub async fn cancel_recoveries_from_device(&self) -> Result<RecoveryCancelled> {
        self.signed_by_device(Method::DELETE, "/v1/device/recovery", None::<&()>).await
    }

    /// `GET /v1/device/approvals/{id}`: one approval's details (the id a notification carried).
    pub async fn device_approval(&self, approval_id: &str) -> Result<ApprovalRequest> {
        self.signed_by_device(Method::GET, &format!("/v1/device/approvals/{approval_id}"), None::<&()>).await
    }

    /// Answer an approval: the biometric key (the OS shows its prompt) signs the approval, its
    /// nonce and kind, the number the user typed (for `Approve`) and the decision. An action
    /// approval is approved only if its action is the one its kind's hash names
    /// ([`verified_action`]: show that action's text before asking).
    pub async fn answer_approval(
        &self,
        approval: &ApprovalRequest,
        decision: ApprovalDecision,
        number: Option<&str>,
    ) -> Result<ApprovalOutcome> {
        let (Some(device_id), Some(key)) = (&self.device_id, &self.device_key) else { return Err(no_device()) };
        if decision == ApprovalDecision::Approve {
            // Never approve an action other than the one the approval's hash names.
            verified_action(approval)?;
        }
        let keystore = key.keystore();
        let alias = key_alias(device_id, DeviceKey::Biometric);
        if keystore.is_invalidated(&alias) {
            return Err(KeystoreError::Invalidated(alias).into());
        }
        let number = number.map(str::trim).unwrap_or("");
        let message = approval_message(&approval.id, &approval.nonce, &approval.kind, number, decision, device_id);
        let signature = b64url(&keystore.sign(&alias, message.as_bytes())?);
        let body =
            ApprovalAnswer { decision, number: Some(number.into()).filter(|n: &String| !n.is_empty()), signature };
        let path = format!("/v1/device/approvals/{}", approval.id);
        self.signed_by_device(Method::POST, &path, Some(&body)).await
    }

    /// `PUT /v1/device/push-token`: where this device is notified — `fcm`, `apns` or `webhook`
    /// with the token the platform gave, or `none` to poll. Call it whenever the token changes.
    pub async fn set_push_token(&self, provider: &str, token: Option<&str>) -> Result<()> {
        let body = PushRegistration { provider: provider.into(), token: token.map(Into::into) };
        self.signed_by_device_raw(Method::PUT, "/v1/device/push-token", Some(&body)).await.map(|_| ())
    }

    /// A request signed by this device (`Authorization: Device <id>` and a DPoP proof), sent
    /// again once with a fresh proof if the server's clock turned out to differ from what this
    /// client assumed (its `Date` header says so).
    async fn signed_by_device<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let resp = self.signed_by_device_raw(method, path, body).await?;
        resp.json::<T>().await.map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn signed_by_device_raw<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response> {
        let device_id = self.device_id.as_ref().ok_or_else(no_device)?;
        let url = self.url(path);
        let request = |iat: i64| -> Result<reqwest::RequestBuilder> {
            let proof = self.dpop_proof(method.as_str(), &url, None, Some(iat))?;
            let req = self
                .http
                .request(method.clone(), &url)
                .header(reqwest::header::AUTHORIZATION, format!("Device {device_id}"))
                .header("dpop", proof);
            Ok(match body {
                Some(b) => req.json(b),
                None => req,
            })
        };
        let attempt = async |iat: i64| {
            let resp = request(iat)?.send().await.map_err(|e| ClientError::Transport(e.to_string()))?;
            self.note_date(&resp);
            check(resp).await
        };
        let assumed = self.server_time();
        match attempt(assumed).await {
            Err(e) if e.code() == Some(codes::INVALID_DPOP_PROOF) && (self.server_time() - assumed).abs() > 30 => {
                attempt(self.server_time()).await
            }
            other => other,
        }
    }

    /// `POST /v1/flows/{id}` with any step answer.
    pub async fn answer(&self, flow_id: &str, answer: &StepAnswer) -> Result<FlowAnswer> {
        self.post(&format!("/v1/flows/{flow_id}"), None, answer).await
    }

    /// Answer `confirm_sign_up`.
    pub async fn confirm_sign_up(&self, flow_id: &str, code: &str) -> Result<FlowAnswer> {
        self.answer(flow_id, &StepAnswer::ConfirmSignUp { code: code.into() }).await
    }

    /// Answer `new_password`.
    pub async fn new_password(&self, flow_id: &str, password: &str) -> Result<FlowAnswer> {
        self.answer(flow_id, &StepAnswer::NewPassword { password: password.into() }).await
    }

    /// Answer `reset_password`.
    pub async fn reset_password(&self, flow_id: &str, code: &str, password: &str) -> Result<FlowAnswer> {
        self.answer(flow_id, &StepAnswer::ResetPassword { code: code.into(), password: password.into() }).await
    }

    /// Answer `setup_totp` with the authenticator app's first code (activates the factor).
    pub async fn setup_totp(&self, flow_id: &str, code: &str) -> Result<FlowAnswer> {
        self.answer(flow_id, &StepAnswer::SetupTotp { code: code.into() }).await
    }

    /// Answer `totp_code`.
    pub async fn totp_code(&self, flow_id: &str, code: &str) -> Result<FlowAnswer> {
        self.answer(flow_id, &StepAnswer::TotpCode { code: code.into() }).await
    }

    /// Answer `custom_challenge` with the user's response, in the shape the step's
    /// `parameters` asked for.
    pub async fn custom_challenge(&self, flow_id: &str, answer: serde_json::Value) -> Result<FlowAnswer> {
        self.answer(flow_id, &StepAnswer::CustomChallenge { answer }).await
    }

    /// `GET /v1/me/factors`.
    pub async fn factors(&self, access_token: &str) -> Result<FactorList> {
        self.send(self.authed(Method::GET, "/v1/me/factors", access_token)?).await
    }

    /// Answer `sms_code` with the code sent by text message.
    pub async fn sms_code(&self, flow_id: &str, code: &str) -> Result<FlowAnswer> {
        self.answer(flow_id, &StepAnswer::SmsCode { code: code.into() }).await
    }

    /// Answer `email_code` with the code sent by email.
    pub async fn email_code(&self, flow_id: &str, code: &str) -> Result<FlowAnswer> {
        self.answer(flow_id, &StepAnswer::EmailCode { code: code.into() }).await
    }

    /// Answer `recovery_code` with one of the saved recovery codes.
    pub async fn recovery_code(&self, flow_id: &str, code: &str) -> Result<FlowAnswer> {
        self.answer(flow_id, &StepAnswer::RecoveryCode { code: code.into() }).await
    }

    /// Answer `select_mfa`, or switch method at any second-factor step.
    pub async fn select_mfa(&self, flow_id: &str, method: MfaMethod) -> Result<FlowAnswer> {
        self.answer(flow_id, &StepAnswer::SelectMfa { method }).await
    }

    /// At `setup_totp` inside a sign-in, where policy allows: verify a phone for SMS codes
    /// instead (`None`: the account's phone). The next step is `verify_code`.
    pub async fn setup_sms(&self, flow_id: &str, phone: Option<&str>) -> Result<FlowAnswer> {
        self.answer(flow_id, &StepAnswer::SetupSms { phone: phone.map(Into::into) }).await
    }

    /// Answer `verify_code` with the code sent to the phone or address being added.
    pub async fn verify_code(&self, flow_id: &str, code: &str) -> Result<FlowAnswer> {
        self.answer(flow_id, &StepAnswer::VerifyCode { code: code.into() }).await
    }

    /// `POST /v1/me/factors {"type": "totp"}`: the answer's step is `setup_totp`.
    pub async fn enroll_totp(&self, access_token: &str) -> Result<FlowAnswer> {
        let req = EnrollFactorRequest { kind: "totp".into(), phone: None, email: None, attested: None };
        self.post("/v1/me/factors", Some(access_token), &req).await
    }

    /// `POST /v1/me/factors {"type": "sms", "phone": …}`: add or change the phone for SMS codes
    /// (`None`: the account's phone). The answer's step is `verify_code`.
    pub async fn enroll_sms(&self, access_token: &str, phone: Option<&str>) -> Result<FlowAnswer> {
        let req = EnrollFactorRequest { kind: "sms".into(), phone: phone.map(Into::into), email: None, attested: None };
        self.post("/v1/me/factors", Some(access_token), &req).await
    }

    /// `POST /v1/me/factors {"type": "email", "email": …}`: add or change the address for email
    /// codes (`None`: the account's address). The answer's step is `verify_code`.
    pub async fn enroll_email(&self, access_token: &str, email: Option<&str>) -> Result<FlowAnswer> {
        let req =
            EnrollFactorRequest { kind: "email".into(), phone: None, email: email.map(Into::into), attested: None };
        self.post("/v1/me/factors", Some(access_token), &req).await
    }

    /// `DELETE /v1/me/factors/{id}`: needs a recent `aal2` sign-in.
    pub async fn remove_factor(&self, access_token: &str, factor_id: &str) -> Result<()> {
        self.no_content(self.authed(Method::DELETE, &format!("/v1/me/factors/{factor_id}"), access_token)?).await
    }

    /// `PUT /v1/me/factors/preferred`: the method sign-in lists first.
    pub async fn set_preferred_mfa(&self, access_token: &str, method: MfaMethod) -> Result<()> {
        self.no_content(
            self.authed(Method::PUT, "/v1/me/factors/preferred", access_token)?.json(&PreferredMfa { method }),
        )
        .await
    }

    /// `POST /v1/me/factors {"type": "recovery_codes"}`: the answer's step is
    /// `save_recovery_codes`, showing a new set; [`Client::save_recovery_codes`] puts it in force.
    pub async fn enroll_recovery_codes(&self, access_token: &str) -> Result<FlowAnswer> {
        let req = EnrollFactorRequest { kind: "recovery_codes".into(), phone: None, email: None, attested: None };
        self.post("/v1/me/factors", Some(access_token), &req).await
    }

    /// Answer `save_recovery_codes`: the user saved the codes shown; they replace any earlier set.
    pub async fn save_recovery_codes(&self, flow_id: &str) -> Result<FlowAnswer> {
        self.answer(flow_id, &StepAnswer::SaveRecoveryCodes {}).await
    }

    /// Enrol this device from a recent `aal2` session: `POST /v1/me/devices`, then create both
    /// keys in `keystore`, sign the enrolment message with each, and answer `enroll_device` with
    /// the PIN. Returns the device id and the last answer (`done`, or the same step with an
    /// `invalid_pin` error — the keys are then deleted; call again with another PIN).
    pub async fn enroll_device(
        &self,
        access_token: &str,
        keystore: &dyn Keystore,
        name: &str,
        platform: &str,
        pin: &str,
    ) -> Result<(String, FlowAnswer)> {
        let a: FlowAnswer = self.send(self.authed(Method::POST, "/v1/me/devices", access_token)?).await?;
        self.enroll_device_step(&a, keystore, name, platform, pin).await
    }

    /// Answer an `enroll_device` step — the one [`Client::enroll_device`] starts, or the last step
    /// of a passwordless sign-up or new-device sign-in (then the answer carries tokens).
    pub async fn enroll_device_step(
        &self,
        a: &FlowAnswer,
        keystore: &dyn Keystore,
        name: &str,
        platform: &str,
        pin: &str,
    ) -> Result<(String, FlowAnswer)> {
        let NextStep::EnrollDevice { device_id, nonce, .. } = &a.next_step else {
            return Err(ClientError::Decode(format!("expected enroll_device, got {}", a.next_step.name())));
        };
        let mut keys = vec![];
        let mut attestation = None;
        for key in [DeviceKey::Possession, DeviceKey::Biometric] {
            let alias = key_alias(device_id, key);
            let public = if key == DeviceKey::Biometric {
                // The attestation challenge is the step's nonce (docs/devices.md, "Attestation").
                let (public, evidence) = keystore.create_attested_key(&alias, nonce.as_bytes())?;
                attestation = evidence;
                public
            } else {
                keystore.create_key(&alias, false)?
            };
            let message = device_message("enroll", &a.flow_id, nonce, key, device_id);
            keys.push((b64url(&public), b64url(&keystore.sign(&alias, message.as_bytes())?)));
        }
        let answer = StepAnswer::EnrollDevice {
            name: name.into(),
            platform: platform.into(),
            possession_key: keys[0].0.clone(),
            biometric_key: keys[1].0.clone(),
            possession_signature: keys[0].1.clone(),
            biometric_signature: keys[1].1.clone(),
            pin: pin.into(),
            attestation,
        };
        let done = self.answer(&a.flow_id, &answer).await;
        if !matches!(&done, Ok(FlowAnswer { next_step: NextStep::Done, .. })) {
            for key in [DeviceKey::Possession, DeviceKey::Biometric] {
                keystore.delete_key(&key_alias(device_id, key))?;
            }
        }
        Ok((device_id.clone(), done?))
    }

    /// `POST /v1/sign-in {"username"}` without a password: a passwordless account's first sign-in
    /// on this device. Steps: `sms_code`, then `select_mfa` for a second proof, then
    /// `enroll_device` ([`Client::enroll_device_step`]), which ends with tokens.
    pub async fn sign_in_new_device(&self, username: &str) -> Result<FlowAnswer> {
        let req =
            SignInRequest { username: Some(username.into()), password: None, device_id: None, ..Default::default() };
        self.post("/v1/sign-in", None, &req).await
    }

    /// Sign in with an enrolled device: `POST /v1/sign-in {"device_id"}`, then sign the nonce
    /// with the biometric key, or with the possession key and send the PIN. A biometric key the
    /// OS invalidated gives [`KeystoreError::Invalidated`] before anything is sent.
    pub async fn device_sign_in(
        &self,
        device_id: &str,
        keystore: &dyn Keystore,
        unlock: Unlock<'_>,
    ) -> Result<FlowAnswer> {
        let req =
            SignInRequest { username: None, password: None, device_id: Some(device_id.into()), ..Default::default() };
        let a: FlowAnswer = self.post("/v1/sign-in", None, &req).await?;
        let NextStep::DeviceSignature { nonce, .. } = &a.next_step else {
            return Err(ClientError::Decode(format!("expected device_signature, got {}", a.next_step.name())));
        };
        self.device_signature(&a.flow_id, nonce, device_id, keystore, unlock).await
    }

    /// Answer a `device_signature` step (used by [`Client::device_sign_in`]; exposed for apps that
    /// drive the flow themselves).
    pub async fn device_signature(
        &self,
        flow_id: &str,
        nonce: &str,
        device_id: &str,
        keystore: &dyn Keystore,
        unlock: Unlock<'_>,
    ) -> Result<FlowAnswer> {
        let (key, pin) = match unlock {
            Unlock::Biometric => (DeviceKey::Biometric, None),
            Unlock::Pin(pin) => (DeviceKey::Possession, Some(pin.to_owned())),
        };
        let alias = key_alias(device_id, key);
        if keystore.is_invalidated(&alias) {
            return Err(KeystoreError::Invalidated(alias).into());
        }
        let message = device_message("sign_in", flow_id, nonce, key, device_id);
        let signature = b64url(&keystore.sign(&alias, message.as_bytes())?);
        self.answer(flow_id, &StepAnswer::DeviceSignature { key, signature, pin }).await
    }

    /// After the OS invalidated the biometric key (new fingerprint or face enrolled): from a
    /// session this device signed in with its PIN, create a fresh biometric key, sign the re-key
    /// message with it and register it (`POST /v1/me/devices/{id}/biometric-key`, then
    /// `rekey_biometric`). The last answer is `done` once the server holds the new key.
    pub async fn rekey_biometric(
        &self,
        access_token: &str,
        keystore: &dyn Keystore,
        device_id: &str,
    ) -> Result<FlowAnswer> {
        let path = format!("/v1/me/devices/{device_id}/biometric-key");
        let a: FlowAnswer = self.send(self.authed(Method::POST, &path, access_token)?).await?;
        let NextStep::RekeyBiometric { nonce, .. } = &a.next_step else {
            return Err(ClientError::Decode(format!("expected rekey_biometric, got {}", a.next_step.name())));
        };
        let alias = key_alias(device_id, DeviceKey::Biometric);
        let (public, attestation) = keystore.create_attested_key(&alias, nonce.as_bytes())?;
        let message = device_message("rekey", &a.flow_id, nonce, DeviceKey::Biometric, device_id);
        let biometric_signature = b64url(&keystore.sign(&alias, message.as_bytes())?);
        let answer = StepAnswer::RekeyBiometric { biometric_key: b64url(&public), biometric_signature, attestation };
        self.answer(&a.flow_id, &answer).await
    }

    /// `PUT /v1/me/devices/{id}/pin`: a new app PIN (unblocks a blocked one). Needs a recent
    /// `aal2` sign-in — by another factor when the PIN is blocked.
    pub async fn set_device_pin(&self, access_token: &str, device_id: &str, pin: &str) -> Result<()> {
        let path = format!("/v1/me/devices/{device_id}/pin");
        self.no_content(self.authed(Method::PUT, &path, access_token)?.json(&DevicePin { pin: pin.into() })).await
    }

    /// `GET /v1/me/devices`.
    pub async fn devices(&self, access_token: &str) -> Result<DeviceList> {
        self.send(self.authed(Method::GET, "/v1/me/devices", access_token)?).await
    }

    /// `DELETE /v1/me/devices/{id}`: the device's keys, PIN and sessions stop working.
    pub async fn revoke_device(&self, access_token: &str, device_id: &str) -> Result<()> {
        self.no_content(self.authed(Method::DELETE, &format!("/v1/me/devices/{device_id}"), access_token)?).await
    }

    /// `POST /v1/me/recovery-codes`: a new set of ten, shown once; the old set stops working.
    pub async fn regenerate_recovery_codes(&self, access_token: &str) -> Result<RecoveryCodes> {
        self.send(self.authed(Method::POST, "/v1/me/recovery-codes", access_token)?).await
    }

    /// `POST /v1/flows/{id}/resend`.
    pub async fn resend(&self, flow_id: &str) -> Result<FlowAnswer> {
        self.send(self.http.post(self.url(&format!("/v1/flows/{flow_id}/resend")))).await
    }

    /// `POST /v1/token`: rotate a refresh token. Store the new one; the old one is spent. On a
    /// client [`with_device_key`](Client::with_device_key) it carries a DPoP proof, which a device
    /// session's refresh needs.
    ///
    /// A proof dated by a clock that has moved since the server last answered is refused without
    /// spending anything; the SDK then retries once, dated by the server's `Date`.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens> {
        let req = TokenRequest { grant_type: "refresh_token".into(), refresh_token: refresh_token.into() };
        let Some(key) = &self.device_key else { return self.post("/v1/token", None, &req).await };
        let url = self.url("/v1/token");
        let assumed = self.server_time();
        let first = self.send(self.http.post(&url).json(&req).header("DPoP", key.proof("POST", &url, None, assumed)?));
        match first.await {
            Err(e) if e.code() == Some(codes::INVALID_DPOP_PROOF) && (self.server_time() - assumed).abs() > 30 => {
                let proof = key.proof("POST", &url, None, self.server_time())?;
                self.send(self.http.post(&url).json(&req).header("DPoP", proof)).await
            }
            other => other,
        }
    }

    /// `POST /v1/sign-out`.
    pub async fn sign_out(&self, access_token: &str, scope: SignOutScope) -> Result<()> {
        self.no_content(self.authed(Method::POST, "/v1/sign-out", access_token)?.json(&SignOutRequest { scope })).await
    }

    /// `PUT /v1/me/password`: change the password (`current` required when the account has
    /// one), or add a first one after a recent `aal2` sign-in. The other sessions end unless
    /// `keep_other_sessions`.
    pub async fn change_password(
        &self,
        access_token: &str,
        current: Option<&str>,
        new_password: &str,
        keep_other_sessions: bool,
    ) -> Result<PasswordChanged> {
        let req = ChangePasswordRequest {
            current_password: current.map(str::to_owned),
            new_password: new_password.into(),
            keep_other_sessions,
        };
        self.send(self.authed(Method::PUT, "/v1/me/password", access_token)?.json(&req)).await
    }

    /// `GET /v1/me/export`: everything kept about the account that its owner may see.
    pub async fn export(&self, access_token: &str) -> Result<AccountExport> {
        self.send(self.authed(Method::GET, "/v1/me/export", access_token)?).await
    }

    /// `PATCH /v1/me`: set (or with `Some(None)` clear) profile attributes; answers `/v1/me`.
    pub async fn update_profile(&self, access_token: &str, update: &ProfileUpdate) -> Result<Me> {
        self.send(self.authed(Method::PATCH, "/v1/me", access_token)?.json(update)).await
    }

    /// `DELETE /v1/me`: delete the account for good (needs a recent `aal2` sign-in: on
    /// `insufficient_user_authentication`, step up and call again).
    pub async fn delete_account(&self, access_token: &str) -> Result<()> {
        self.no_content(self.authed(Method::DELETE, "/v1/me", access_token)?).await
    }

    /// `GET /v1/me`.
    pub async fn me(&self, access_token: &str) -> Result<Me> {
        self.send(self.authed(Method::GET, "/v1/me", access_token)?).await
    }

    /// `GET /v1/me/sessions`.
    pub async fn sessions(&self, access_token: &str) -> Result<SessionList> {
        self.send(self.authed(Method::GET, "/v1/me/sessions", access_token)?).await
    }

    /// `DELETE /v1/me/sessions/{id}`.
    pub async fn revoke_session(&self, access_token: &str, session_id: &str) -> Result<()> {
        self.no_content(self.authed(Method::DELETE, &format!("/v1/me/sessions/{session_id}"), access_token)?).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        access_token: Option<&str>,
        body: &B,
    ) -> Result<T> {
        let req = match access_token {
            Some(t) => self.authed(Method::POST, path, t)?,
            None => self.http.post(self.url(path)),
        };
        self.send(req.json(body)).await
    }

    /// A request carrying `access_token`: as `Bearer`, or, when the token is bound to this
    /// device's key (`cnf.jkt`), as `DPoP` with a proof for this method and URL (RFC 9449 §7).
    fn authed(&self, method: Method, path: &str, access_token: &str) -> Result<reqwest::RequestBuilder> {
        let url = self.url(path);
        if !dpop::is_bound(access_token) {
            return Ok(self.http.request(method, url).bearer_auth(access_token));
        }
        let key = self.device_key.as_ref().ok_or_else(|| {
            ClientError::Decode("this access token is bound to a device key: use Client::with_device_key".into())
        })?;
        let proof = key.proof(method.as_str(), &url, Some(access_token), self.server_time())?;
        Ok(self
            .http
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, format!("DPoP {access_token}"))
            .header("DPoP", proof))
    }

    /// Now by the server's clock, as far as its `Date` headers tell (phones' clocks drift).
    fn server_time(&self) -> i64 {
        dpop::unix_now() + self.clock_offset.load(Ordering::Relaxed)
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T> {
        let resp = req.send().await.map_err(|e| ClientError::Transport(e.to_string()))?;
        self.note_date(&resp);
        let resp = check(resp).await?;
        resp.json::<T>().await.map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn no_content(&self, req: reqwest::RequestBuilder) -> Result<()> {
        let resp = req.send().await.map_err(|e| ClientError::Transport(e.to_string()))?;
        self.note_date(&resp);
        check(resp).await.map(|_| ())
    }

    fn note_date(&self, resp: &reqwest::Response) {
        let date = resp.headers().get(reqwest::header::DATE).and_then(|v| v.to_str().ok());
        if let Some(server) = date.and_then(|d| httpdate::parse_http_date(d).ok())
            && let Ok(since) = server.duration_since(std::time::UNIX_EPOCH)
        {
            let offset = i64::try_from(since.as_secs()).unwrap_or(0) - dpop::unix_now();
            self.clock_offset.store(offset, Ordering::Relaxed);
        }
    }
}

async fn check(resp: reqwest::Response) -> Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(StepUpChallenge::parse);
    let text = resp.text().await.map_err(|e| ClientError::Transport(e.to_string()))?;
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(b) => Err(ClientError::Api {
            status,
            code: b.error.code,
            message: b.error.message,
            request_id: b.error.request_id,
            challenge,
        }),
        Err(_) => Err(ClientError::Decode(format!("HTTP {status} without an error body"))),
    }
}

fn no_device() -> ClientError {
    ClientError::Decode("no device: use Client::with_device_key".into())
}
