//! The operator's own challenge (`custom_challenge`; issue 15, item 2), as Cognito's custom
//! authentication does it with Create/Verify Auth Challenge, inside Latchkey's contract: policy
//! lists `custom_challenge` among the second factors of sign-in and step-up (`[mfa] methods`), the
//! hook makes the challenge when the step is reached (public `parameters` for the app, `private`
//! facts kept sealed in the flow) and judges the answer. The policy, not the hook, says which
//! factor class a right answer is (`[hooks.custom_challenge] amr`), so `acr` stays honest; the
//! hook cannot complete a sign-in, skip a step or lower a level.
//!
//! Attempts, expiry and single use are every step's: an answer is counted on the flow and on the
//! account's `otp` counter before the hook sees it, a challenge past its expiry is refused
//! without asking, and the flow's version moves with the right answer, so it completes once.

use crate::auth::{Auth, FlowOutcome, OTP};
use crate::error::AuthError;
use crate::hooks::{self, Hook};
use crate::model::*;
use crate::store::{Batch, Write};
use latchkey_proto::MfaMethod;
use serde_json::{Value, json};
use time::OffsetDateTime;

const STEP: &str = "custom_challenge";

/// The most of an answer passed on.
const MAX_ANSWER_BYTES: usize = 4096;

impl Auth {
    /// Ask the hook for a new challenge for `user` in flow `flow`.
    pub(crate) async fn create_challenge(
        &self,
        flow: crate::ids::FlowId,
        user: &User,
        now: OffsetDateTime,
    ) -> Result<CustomChallenge, AuthError> {
        let body = json!({
            "hook": Hook::CustomChallenge.as_str(),
            "action": "create",
            "flow_id": flow,
            "user_id": user.id,
            "username": user.username,
        });
        let created = self
            .ask(Hook::CustomChallenge, body, hooks::read_created)
            .await?
            .ok_or_else(|| hooks::failed(Hook::CustomChallenge, "not configured"))?;
        let private = serde_json::to_vec(&created.private).map_err(|e| AuthError::Internal(e.to_string()))?;
        Ok(CustomChallenge {
            parameters: created.parameters,
            private_sealed: self.keys.seal(self.rng.as_ref(), &flow.to_string(), &private)?,
            expires_at: now + crate::auth::secs(self.settings.flows.code_ttl_secs),
        })
    }

    /// `custom_challenge`: the hook judges the answer; a right one is the second factor.
    pub(crate) async fn custom_sign_in(
        &self,
        flow: Flow,
        then_new_password: bool,
        answer: Value,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let FlowState::AwaitingMfa { custom: Some(challenge), .. } = &flow.state else {
            return Err(AuthError::StepMismatch { expected: flow.state.step_name() });
        };
        if serde_json::to_vec(&answer).map_or(usize::MAX, |b| b.len()) > MAX_ANSWER_BYTES {
            return Err(AuthError::InvalidRequest(format!("answer: at most {MAX_ANSWER_BYTES} bytes of JSON")));
        }
        let user = self.user_of(&flow).await?.ok_or(AuthError::FlowExpired)?;
        let attempts = match self.reserve_attempt(&flow, STEP, Some(&user.username_canonical), OTP, now).await? {
            Ok(n) => n,
            Err(o) => return Ok(o),
        };
        // Past its expiry, a challenge is refused as a wrong answer is (checklist OOB-3).
        if challenge.expires_at <= now {
            return self.refuse(&flow, STEP, attempts, false, now, &ctx).await;
        }
        let private = self.keys.open(&flow.id.to_string(), &challenge.private_sealed)?;
        let private: Value = serde_json::from_slice(&private).map_err(|e| AuthError::Internal(e.to_string()))?;
        let body = json!({
            "hook": Hook::CustomChallenge.as_str(),
            "action": "verify",
            "flow_id": flow.id,
            "user_id": user.id,
            "username": user.username,
            "parameters": challenge.parameters,
            "private": private,
            "answer": answer,
        });
        let correct = self
            .ask(Hook::CustomChallenge, body, hooks::read_verdict)
            .await?
            .ok_or_else(|| hooks::failed(Hook::CustomChallenge, "not configured"))?;
        if !correct {
            return self.refuse(&flow, STEP, attempts, false, now, &ctx).await;
        }
        let mut batch = Batch(vec![Write::ClearFailures { key: user.username_canonical.clone(), kind: OTP.into() }]);
        let (next, tokens) = self
            .after_second_factor(&flow, &user, MfaMethod::CustomChallenge, then_new_password, now, &ctx, &mut batch)
            .await?;
        self.commit(batch, flow.id).await?;
        Ok(FlowOutcome::verified(next, tokens, STEP))
    }
}
