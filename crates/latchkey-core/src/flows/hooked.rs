//! Where requests ask the app's backend (issue 15, item 2): `before_sign_up` and
//! `custom_access_token`, and the one rule every hook follows — a failed call refuses the request
//! unless the operator chose to go on. The custom challenge is `custom_challenge.rs`; lazy
//! migration is `migration.rs`.

use crate::auth::Auth;
use crate::error::AuthError;
use crate::hooks::{self, Hook, SignUpDecision};
use crate::model::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What a sign-up tells `before_sign_up`: the account it would create, never its password.
pub(crate) struct SignUpFacts<'a> {
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub locale: Option<&'a str>,
}

impl Auth {
    /// Ask `hook` and read its answer with `read`. `None` when the hook is not configured, or
    /// when it failed and its policy says to go on; a failure otherwise refuses the request.
    pub(crate) async fn ask<T>(
        &self,
        hook: Hook,
        body: Value,
        read: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Result<Option<T>, AuthError> {
        let Some(policy) = self.hooks.policy(hook) else { return Ok(None) };
        match self.hooks.call(hook, body).await.and_then(|v| read(&v)) {
            Ok(t) => Ok(Some(t)),
            Err(why) => {
                let refused = hooks::failed(hook, &why);
                if policy.continue_on_failure { Ok(None) } else { Err(refused) }
            }
        }
    }

    /// `before_sign_up`: allowed (with attributes to set) or denied with the backend's message.
    pub(crate) async fn before_sign_up(
        &self,
        facts: SignUpFacts<'_>,
        ctx: &ClientContext,
    ) -> Result<SignUpDecision, AuthError> {
        let body = json!({
            "hook": Hook::BeforeSignUp.as_str(),
            "username": facts.username,
            "email": facts.email,
            "phone": facts.phone,
            "locale": facts.locale,
            "ip": ctx.ip,
            "user_agent": ctx.user_agent,
        });
        let declared = &self.settings.attributes;
        Ok(self.ask(Hook::BeforeSignUp, body, |v| hooks::read_sign_up(v, declared)).await?.unwrap_or_default())
    }

    /// `custom_access_token`: the claims the backend adds to the tokens of `session` (`trigger`:
    /// `sign_in`, `step_up` or `refresh`). Empty when the hook is not configured.
    pub(crate) async fn hook_claims(
        &self,
        session: &Session,
        user: &User,
        trigger: &str,
    ) -> Result<BTreeMap<String, Value>, AuthError> {
        if self.hooks.policy(Hook::CustomAccessToken).is_none() {
            return Ok(BTreeMap::new());
        }
        let body = json!({
            "hook": Hook::CustomAccessToken.as_str(),
            "trigger": trigger,
            "user_id": user.id,
            "username": user.username,
            "session_id": session.id,
            "acr": session.acr,
            "amr": session.amr,
            "auth_time": session.auth_time.unix_timestamp(),
            "device_id": session.device_id,
            "attributes": user.profile.custom,
        });
        let declared = &self.settings.attributes;
        Ok(self.ask(Hook::CustomAccessToken, body, |v| hooks::read_claims(v, declared)).await?.unwrap_or_default())
    }
}
