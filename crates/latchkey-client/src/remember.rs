//! Remembered clients from the client's side ("remember this device", checklist SES-9): a key
//! of this client's own, registered after a sign-in with a second factor, whose signature later
//! stands in for the second factor at a password sign-in.

use crate::{Client, ClientError, Keystore, Result, b64url, dpop};
use latchkey_proto::{
    FlowAnswer, NextStep, RememberClientRequest, RememberedClient, SignInRequest, StepAnswer, remember_message,
    remembered_sign_in_message,
};
use reqwest::Method;

/// The key-store alias of this client's remembered key (one per app install or browser).
pub const REMEMBERED_KEY_ALIAS: &str = "latchkey.remembered";

impl Client {
    /// `POST /v1/me/remembered-clients`: create this client's key in `keystore` (replacing an
    /// earlier one) and have the account remember it. Call it right after a sign-in with a second
    /// factor; keep the returned id and send it at sign-in ([`Client::sign_in_remembered`]).
    pub async fn remember_client(
        &self,
        access_token: &str,
        keystore: &dyn Keystore,
        name: &str,
    ) -> Result<RememberedClient> {
        let sid = dpop::claims(access_token)
            .and_then(|c| c.get("sid").and_then(|s| s.as_str()).map(str::to_owned))
            .ok_or_else(|| ClientError::Decode("the access token carries no session id".into()))?;
        let _ = keystore.delete_key(REMEMBERED_KEY_ALIAS);
        let public_key = b64url(&keystore.create_key(REMEMBERED_KEY_ALIAS, false)?);
        let message = remember_message(&sid, &public_key);
        let signature = b64url(&keystore.sign(REMEMBERED_KEY_ALIAS, message.as_bytes())?);
        let req = RememberClientRequest { public_key, signature, name: name.into() };
        self.send(self.authed(Method::POST, "/v1/me/remembered-clients", access_token)?.json(&req)).await
    }

    /// `DELETE /v1/me/remembered-clients/{id}`: forget a remembered client (this one or another).
    pub async fn forget_client(&self, access_token: &str, client_id: &str) -> Result<()> {
        let path = format!("/v1/me/remembered-clients/{client_id}");
        self.no_content(self.authed(Method::DELETE, &path, access_token)?).await
    }

    /// A password sign-in from a remembered client: `remembered_client` is answered with the
    /// key's signature, so the answer is `done` (or `new_password`) without a second factor. When
    /// the server no longer remembers the client, the answer is the second-factor step, as for
    /// [`Client::sign_in`].
    pub async fn sign_in_remembered(
        &self,
        username: &str,
        password: &str,
        client_id: &str,
        keystore: &dyn Keystore,
    ) -> Result<FlowAnswer> {
        let req = SignInRequest {
            username: Some(username.into()),
            password: Some(password.into()),
            remembered_client: Some(client_id.into()),
            ..Default::default()
        };
        let a: FlowAnswer = self.post("/v1/sign-in", None, &req).await?;
        let NextStep::RememberedClient { nonce } = &a.next_step else { return Ok(a) };
        let message = remembered_sign_in_message(&a.flow_id, nonce, client_id);
        let signature = b64url(&keystore.sign(REMEMBERED_KEY_ALIAS, message.as_bytes())?);
        self.answer(&a.flow_id, &StepAnswer::RememberedClient { signature }).await
    }
}
