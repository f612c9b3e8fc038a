//! Passkeys from the client's side: the ceremonies are the platform's (a browser's
//! `navigator.credentials`, Android's Credential Manager, iOS's `ASAuthorization`); the SDK
//! carries the server's options to it and its credential back (`docs/passkeys.md`).

use crate::{Client, Result};
use latchkey_proto::{
    EnrollFactorRequest, FlowAnswer, PasskeyInfo, PasskeyList, RenamePasskeyRequest, SignInRequest, StepAnswer,
};
use reqwest::Method;

impl Client {
    /// `POST /v1/me/factors {"type": "passkey"}`: the answer's step is `passkey` with
    /// `ceremony: "create"` and the options for the platform. Needs a recent `aal2` sign-in.
    pub async fn enroll_passkey(&self, access_token: &str) -> Result<FlowAnswer> {
        let req = EnrollFactorRequest { kind: "passkey".into(), phone: None, email: None, attested: None };
        self.post("/v1/me/factors", Some(access_token), &req).await
    }

    /// `POST /v1/me/factors {"type": "passkey", "attested": true}`: as
    /// [`Self::enroll_passkey`], for an authenticator that must prove its model by an
    /// attestation the server trusts (a security key); it signs in at `aal3`.
    pub async fn enroll_attested_passkey(&self, access_token: &str) -> Result<FlowAnswer> {
        let req = EnrollFactorRequest { kind: "passkey".into(), phone: None, email: None, attested: Some(true) };
        self.post("/v1/me/factors", Some(access_token), &req).await
    }

    /// `POST /v1/sign-in {"passkey": true}`: the answer's step is `passkey` with
    /// `ceremony: "get"`, for any of the user's passkeys (no username).
    pub async fn sign_in_with_passkey(&self) -> Result<FlowAnswer> {
        let req = SignInRequest { passkey: true, ..Default::default() };
        self.post("/v1/sign-in", None, &req).await
    }

    /// Answer a `passkey` step with the platform's credential (`PublicKeyCredential` JSON);
    /// `name` names a passkey being registered.
    pub async fn passkey(
        &self,
        flow_id: &str,
        credential: serde_json::Value,
        name: Option<&str>,
    ) -> Result<FlowAnswer> {
        self.answer(flow_id, &StepAnswer::Passkey { credential, name: name.map(Into::into) }).await
    }

    /// `GET /v1/me/passkeys`.
    pub async fn passkeys(&self, access_token: &str) -> Result<PasskeyList> {
        self.send(self.authed(Method::GET, "/v1/me/passkeys", access_token)?).await
    }

    /// `PATCH /v1/me/passkeys/{id}`.
    pub async fn rename_passkey(&self, access_token: &str, id: &str, name: &str) -> Result<PasskeyInfo> {
        let req = RenamePasskeyRequest { name: name.into() };
        self.send(self.authed(Method::PATCH, &format!("/v1/me/passkeys/{id}"), access_token)?.json(&req)).await
    }

    /// `DELETE /v1/me/passkeys/{id}`: needs a recent `aal2` sign-in.
    pub async fn remove_passkey(&self, access_token: &str, id: &str) -> Result<()> {
        self.no_content(self.authed(Method::DELETE, &format!("/v1/me/passkeys/{id}"), access_token)?).await
    }
}
