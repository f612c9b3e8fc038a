//! Verifying a new phone number or email address: the code step that makes it a factor or a
//! recovery channel (counted on the account's `code` failure counter).

use crate::auth::{Auth, CODE, FlowOutcome, StepEvent, audit};
use crate::error::{AuthError, retry_after};
use crate::factors::{ACTIVE, EMAIL, SMS};
use crate::identity::{Email, Phone};
use crate::ids::{FactorId, FlowId};
use crate::model::*;
use crate::secret::SecretString;
use crate::store::{Batch, Write};
use latchkey_proto as proto;
use latchkey_proto::{Channel, MfaMethod};
use time::OffsetDateTime;

impl Auth {
    /// A flow whose step is `verify_code` for `value` on `channel`.
    pub(crate) async fn verification_flow(
        &self,
        flow_id: FlowId,
        user: &User,
        (channel, value, masked): (Channel, String, String),
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<(FlowState, OutboxMessage), AuthError> {
        self.check_send_limits(&user.username_canonical, Some(&value), ctx, channel).await?;
        let id = if channel == Channel::Sms { "code_verify_phone" } else { "code_verify_email" };
        let (code, message) =
            self.issue_code(flow_id, channel, &value, masked, (id, user.profile.locale.as_deref()), now)?;
        Ok((FlowState::AwaitingVerification { channel, value, code }, message))
    }

    /// `setup_sms` at the `setup_totp` step of a sign-in, where policy allows SMS set-up.
    pub(crate) async fn setup_sms(
        &self,
        flow: Flow,
        pending_totp: FactorId,
        phone: Option<String>,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        if flow.kind != FlowKind::SignIn
            || !self.settings.mfa.allow_sms_setup
            || !self.settings.mfa.allows(MfaMethod::Sms)
        {
            return Err(AuthError::StepMismatch { expected: "setup_totp" });
        }
        let user = self.user_of(&flow).await?.ok_or(AuthError::FlowExpired)?;
        let raw = phone.or_else(|| user.phone.clone()).unwrap_or_default();
        let phone = Phone::parse(&raw).map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
        if self.store.reserve_flow_send(flow.id, self.settings.flows.max_sends).await?.is_none() {
            // This flow sends no more codes; a new one can, once it ends.
            return Err(AuthError::LimitExceeded {
                retry_after_secs: retry_after(now, flow.expires_at),
                limit: "flow_sends",
            });
        }
        let (state, message) = self
            .verification_flow(flow.id, &user, (Channel::Sms, phone.as_str().into(), phone.masked()), now, &ctx)
            .await?;
        let next = Flow { state, version: flow.version + 1, ..flow.clone() };
        let mut batch = Batch::new();
        batch
            .push(Write::DeleteFactor { id: pending_totp })
            .push(Write::Enqueue(message))
            .push(Write::UpdateFlow { flow: next.clone(), expected_version: flow.version })
            .push(audit(now, Some(user.id), "setup_sms", "code_sent", &ctx, serde_json::json!({"flow_id": flow.id})));
        self.commit(batch, flow.id).await?;
        Ok(Self::outcome(next, vec![StepEvent { step: "verify_code", outcome: "issued" }]))
    }

    /// `verify_code`: the new phone or address becomes the account's (until now the old one was
    /// authoritative, checklist LIFE-5), its factor is active, and both addresses are told.
    pub(crate) async fn verify_destination(
        &self,
        flow: Flow,
        given: SecretString,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let FlowState::AwaitingVerification { channel, value, code } = flow.state.clone() else {
            return Err(AuthError::StepMismatch { expected: flow.state.step_name() });
        };
        let mut user = self.user_of(&flow).await?.ok_or(AuthError::FlowExpired)?;
        let key = user.username_canonical.clone();
        if let Err(o) = self.check_code(&flow, Some(&code), &given, (Some(&key), CODE), now, &ctx).await? {
            return Ok(o);
        }
        if flow.kind == FlowKind::SignUp {
            return self.sign_up_email_verified(flow, user, now, ctx).await;
        }
        let kind = if channel == Channel::Sms { SMS } else { EMAIL };
        // A new number or address is a new authenticator: not trusted for sign-in or recovery
        // for a cooling-off period (DESIGN.md; `policy.recovery.*_change_cooldown_secs`).
        let old = if channel == Channel::Sms {
            let old = user.phone.clone().filter(|p| user.phone_verified && *p != value);
            user.phone = Some(value.clone());
            user.phone_verified = true;
            user.phone_changed_at = Some(now);
            old
        } else {
            let old = user.email.clone().filter(|e| user.email_verified && *e != value);
            user.email = Some(value.clone());
            user.email_verified = true;
            user.email_changed_at = Some(now);
            old
        };
        user.updated_at = now;
        let mut batch = Batch::new();
        batch.push(Write::UpdateUser(user.clone())).push(Write::ClearFailures { key: key.clone(), kind: CODE.into() });
        let factors = self.store.factors(user.id).await?;
        if !factors.iter().any(|f| f.kind == kind && f.state == ACTIVE) {
            batch.push(Write::InsertFactor(Factor {
                id: FactorId::new(),
                user_id: user.id,
                kind: kind.into(),
                state: ACTIVE.into(),
                secret_sealed: None,
                last_step: None,
                created_at: now,
                last_used_at: None,
            }));
        }
        batch.push(audit(
            now,
            Some(user.id),
            "factor_added",
            "success",
            &ctx,
            serde_json::json!({"flow_id": flow.id, "type": kind, "changed": old.is_some()}),
        ));
        // Checklist LIFE-1 and LIFE-5: the account's address and the replaced one are told.
        let masked = if channel == Channel::Sms {
            Phone::parse(&value).map(|p| p.masked()).unwrap_or_default()
        } else {
            Email::parse(&value).map(|e| e.masked()).unwrap_or_default()
        };
        let link = self.undo_link(user.id, super::undo::Undo::Lock, None, now);
        let id = match (channel == Channel::Sms, old.is_some()) {
            (true, true) => "phone_changed",
            (true, false) => "phone_added",
            (false, true) => "email_changed",
            (false, false) => "email_added",
        };
        let (subject, notice) =
            self.text(user.profile.locale.as_deref(), id, &[("destination", &masked), ("link", &link)]);
        let data = proto::PushData { kind: "notice".into(), approval_id: None };
        for m in self.notify_everywhere(&user, &subject, &notice, &data, None, now).await? {
            batch.push(Write::Enqueue(m));
        }
        if let Some(old) = &old {
            batch.push(Write::Enqueue(self.sealed_message(channel, old, &subject, &notice, now)?));
        }
        let (next, tokens) = if flow.kind == FlowKind::SignIn {
            self.after_second_factor(&flow, &user, MfaMethod::Sms, user.must_change_password, now, &ctx, &mut batch)
                .await?
        } else {
            let done =
                Flow { state: FlowState::Completed { session_id: None }, version: flow.version + 1, ..flow.clone() };
            batch.push(Write::UpdateFlow { flow: done.clone(), expected_version: flow.version });
            (done, None)
        };
        self.commit(batch, flow.id).await?;
        Ok(FlowOutcome::verified(next, tokens, "verify_code"))
    }

    /// `verify_code` inside a passwordless sign-up: the email is verified (a second proof from day
    /// one), then the first device is enrolled.
    pub(crate) async fn sign_up_email_verified(
        &self,
        flow: Flow,
        mut user: User,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        user.email_verified = true;
        user.updated_at = now;
        let next = Flow { state: self.first_device_state(), version: flow.version + 1, ..flow.clone() };
        let mut batch = Batch::new();
        batch
            .push(Write::UpdateUser(user.clone()))
            .push(Write::ClearFailures { key: user.username_canonical.clone(), kind: CODE.into() })
            .push(Write::UpdateFlow { flow: next.clone(), expected_version: flow.version })
            .push(audit(now, Some(user.id), "verify_email", "success", &ctx, serde_json::json!({"flow_id": flow.id})));
        self.commit(batch, flow.id).await?;
        Ok(Self::outcome(next, vec![StepEvent { step: "verify_code", outcome: "verified" }]))
    }
}
