//! Signing in with a remembered client (checklist SES-9): a password sign-in that names a client
//! the account remembered gets `remembered_client` instead of the second factor; the client's
//! signature over the flow's nonce stands in for it (`amr` `pwd` + `swk`). A signature that does
//! not verify forgets the client and leads to the second factor, as if it had not been named.
//!
//! Invariants:
//! - Only a live client of this account, only with its key: a client id without the key is
//!   worth nothing, and a wrong signature is the last try that client gets.
//! - A remembered key never satisfies a step-up (`sessions::step_up_level` leaves `swk` out).

use crate::auth::{Auth, FlowOutcome, StepEvent, audit, step_error};
use crate::error::AuthError;
use crate::factors::device as dk;
use crate::ids::RememberedClientId;
use crate::model::*;
use crate::secret::random_token;
use crate::store::{Batch, StoreError, Write};
use latchkey_proto as proto;
use latchkey_proto::codes;
use time::OffsetDateTime;

/// The methods a remembered sign-in verified (RFC 8176: a software-held key).
const REMEMBERED_AMR: [&str; 2] = ["pwd", "swk"];

impl Auth {
    /// After a right password, for a sign-in naming `raw_id`: the `remembered_client` step, if
    /// that is a live client of this account and the policy remembers clients.
    pub(crate) async fn remembered_step(
        &self,
        user: &User,
        raw_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<FlowState>, AuthError> {
        if !self.settings.remember.enabled {
            return Ok(None);
        }
        let Ok(id) = raw_id.parse::<RememberedClientId>() else { return Ok(None) };
        let live = self
            .store
            .remembered_client(id)
            .await?
            .filter(|c| c.user_id == user.id && c.revoked_at.is_none() && c.expires_at > now);
        Ok(live.map(|c| FlowState::AwaitingRememberedClient {
            client_id: c.id,
            nonce: random_token(self.rng.as_ref(), 32).expose().to_owned(),
            then_new_password: user.must_change_password,
        }))
    }

    /// `remembered_client`: the client's signature. Right: the session (or `new_password`).
    /// Wrong, or the client forgotten meanwhile: the client is forgotten and the sign-in goes on
    /// to its second factor, the answer carrying why.
    pub(crate) async fn remembered_sign_in(
        &self,
        flow: Flow,
        signature: String,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let FlowState::AwaitingRememberedClient { client_id, nonce, then_new_password } = flow.state.clone() else {
            return Err(AuthError::StepMismatch { expected: flow.state.step_name() });
        };
        let step = "remembered_client";
        let user =
            self.user_of(&flow).await?.filter(|u| u.status == UserStatus::Active).ok_or(AuthError::FlowExpired)?;
        let client = self
            .store
            .remembered_client(client_id)
            .await?
            .filter(|c| c.user_id == user.id && c.revoked_at.is_none() && c.expires_at > now);
        let message = proto::remembered_sign_in_message(&flow.id.to_string(), &nonce, &client_id.to_string());
        let right = client.as_ref().is_some_and(|c| dk::verify(&c.public_key, message.as_bytes(), &signature));
        if !right {
            return self.remembered_refused(flow, &user, client_id, now, ctx).await;
        }
        let mut batch = Batch::new();
        batch.push(Write::RememberedClientUsed { id: client_id, at: now });
        let (state, tokens) = if then_new_password {
            let amr = REMEMBERED_AMR.iter().map(|s| (*s).to_owned()).collect();
            (FlowState::AwaitingNewPassword { amr, recovery: None }, None)
        } else {
            let (session, tokens) =
                self.sessions().new_session(flow.id, &user, &REMEMBERED_AMR, None, now, &ctx, &mut batch).await?;
            (FlowState::Completed { session_id: Some(session.id) }, Some(tokens))
        };
        let next = Flow { state, version: flow.version + 1, ..flow.clone() };
        batch.push(Write::UpdateFlow { flow: next.clone(), expected_version: flow.version }).push(audit(
            now,
            Some(user.id),
            step,
            "success",
            &ctx,
            serde_json::json!({"flow_id": flow.id, "remembered_client_id": client_id, "amr": REMEMBERED_AMR}),
        ));
        match self.apply(batch).await {
            Ok(()) => {}
            // Forgotten or expired while this answer was in flight.
            Err(StoreError::Conflict("remembered_client")) => {
                return self.remembered_refused(flow, &user, client_id, now, ctx).await;
            }
            Err(StoreError::Conflict("flow")) => return Err(AuthError::FlowCompleted),
            Err(e) => return Err(e.into()),
        }
        Ok(FlowOutcome::verified(next, tokens, step))
    }

    /// A remembered client that did not prove itself: forgotten, and the sign-in goes on as if
    /// it had not been named — to the second factor, or done when the account has none.
    async fn remembered_refused(
        &self,
        flow: Flow,
        user: &User,
        client_id: RememberedClientId,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let step = "remembered_client";
        let mut batch = Batch::new();
        batch.push(Write::ForgetRememberedClient {
            id: client_id,
            user_id: user.id,
            at: now,
            reason: "bad_signature".into(),
        });
        let (state, tokens, event) = match self.start_mfa(flow.id, user, false, now, &ctx).await? {
            Some(start) => {
                for w in start.writes {
                    batch.push(w);
                }
                (start.state, None, Some(start.event))
            }
            None if user.must_change_password => {
                (FlowState::AwaitingNewPassword { amr: vec!["pwd".into()], recovery: None }, None, None)
            }
            None => {
                let (session, tokens) =
                    self.sessions().new_session(flow.id, user, &["pwd"], None, now, &ctx, &mut batch).await?;
                (FlowState::Completed { session_id: Some(session.id) }, Some(tokens), None)
            }
        };
        let next = Flow { state, version: flow.version + 1, ..flow.clone() };
        batch.push(Write::UpdateFlow { flow: next.clone(), expected_version: flow.version }).push(audit(
            now,
            Some(user.id),
            step,
            "failure",
            &ctx,
            serde_json::json!({"flow_id": flow.id, "remembered_client_id": client_id}),
        ));
        self.commit(batch, flow.id).await?;
        let mut events = vec![StepEvent { step, outcome: "failed" }];
        events.extend(event);
        Ok(FlowOutcome {
            flow: next,
            tokens,
            error: step_error(
                codes::CODE_MISMATCH,
                "the remembered client did not prove itself and is forgotten: use a second factor",
            ),
            events,
            approval: None,
        })
    }
}
