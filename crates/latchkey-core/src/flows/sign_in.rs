//! Password sign-in: the password step, lockouts that reveal nothing, and what it leads to (a
//! second factor, a new password, a new device's proofs, or the session).

use crate::auth::{Auth, FlowOutcome, PASSWORD, StepEvent, audit, step_error};
use crate::error::{AuthError, retry_after};
use crate::factors::password::{check_policy, normalize};
use crate::flow::expired;
use crate::flow::risk::Occasion;
use crate::flows::sign_up::confirmation_destination;
use crate::flows::step_up::{check_request, wanted_acr};
use crate::flows::undo::Undo;
use crate::identity::lookup_key;
use crate::ids::{FlowId, RememberedClientId};
use crate::model::*;
use crate::risk::Decision;
use crate::secret::SecretString;
use crate::sessions::amr_or_pwd;
use crate::settings::RiskAction;
use crate::store::{Batch, Write};
use latchkey_proto as proto;
use latchkey_proto::codes;
use time::OffsetDateTime;

impl Auth {
    /// `POST /v1/sign-in` with a username and password.
    pub async fn sign_in(&self, req: proto::SignInRequest, ctx: ClientContext) -> Result<FlowOutcome, AuthError> {
        check_request(req.acr_values.as_deref(), req.max_age)?;
        if req.remembered_client.as_ref().is_some_and(|c| c.chars().count() > 36) {
            return Err(AuthError::InvalidRequest("remembered_client: an id, 36 characters".into()));
        }
        if req.passkey {
            if req.username.is_some() || req.password.is_some() || req.device_id.is_some() {
                return Err(AuthError::InvalidRequest(
                    "sign in with a passkey alone: no username, password or device_id".into(),
                ));
            }
            return self.passkey_sign_in(ctx).await;
        }
        if let Some(device_id) = req.device_id.as_deref() {
            if req.username.is_some() || req.password.is_some() {
                return Err(AuthError::InvalidRequest("sign in with a device_id, or a username and password".into()));
            }
            return self.device_sign_in(device_id, ctx).await;
        }
        let (Some(raw_username), Some(raw_password)) = (req.username.as_deref(), req.password.as_deref()) else {
            return match req.username.as_deref() {
                // No password: a passwordless account's first sign-in on a new device.
                Some(username) => self.new_device_sign_in(username, ctx).await,
                None => Err(AuthError::InvalidRequest(
                    "a username (and password), a device_id, or passkey: true is required".into(),
                )),
            };
        };
        // RFC 9470 at sign-in: `aal2` asks for a second factor whatever the policy's mode; values
        // Latchkey does not know are ignored, as OpenID Connect's voluntary `acr_values` are. A
        // sign-in authenticates now, so every `max_age` is met.
        // `aal3` is reached by a passkey sign-in with an attested key, or by a step-up after
        // this one: here it asks for a second factor, as `aal2` does.
        let aal2 = matches!(req.acr_values.as_deref().and_then(|v| wanted_acr(Some(v)).ok()), Some("aal2" | "aal3"));
        let now = self.now();
        let key = lookup_key(raw_username).map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
        let password = normalize(raw_password);
        if let Reservation::Locked(until) =
            self.store.reserve_failure(&key, PASSWORD, now, &self.settings.limits.password).await?
        {
            self.apply(Batch(vec![audit(now, None, "sign_in", "locked", &ctx, serde_json::json!({}))])).await?;
            // At the hard cap only a reset helps; the longest delay is the hint not to hammer.
            let retry_after_secs = until.map_or(self.settings.limits.password.max_delay_secs, |t| retry_after(now, t));
            return Err(AuthError::LimitExceeded { retry_after_secs, limit: "password_lockout" });
        }
        let user = match self.store.user_by_username(&key).await? {
            Some(u) => Some(u),
            // Not here (yet): the old system may know it (lazy migration).
            None => self.migrate_user(raw_username, Some((raw_password, &password)), "sign_in", &ctx).await?,
        };
        // The risk policy's decision comes before the password is checked: it depends only on
        // the account and the client, and a refusal looks the same whether the password was
        // right or not (no password oracle).
        let occasion = Occasion::Password { remembered: req.remembered_client.is_some() };
        let risk = self.assess(user.as_ref(), occasion, &ctx, now).await?;
        self.risk_delay(&risk).await;
        let matched = self.hasher.verify(&password, user.as_ref().and_then(|u| u.password_hash.as_deref())).await?;
        let flow_id = FlowId::new();
        let record = self.risk_record(&risk, occasion, user.as_ref().map(|u| u.id), Some(flow_id), &ctx, now);
        let user = match user {
            Some(u) if matched && matches!(u.status, UserStatus::Active | UserStatus::Unconfirmed) => u,
            other => {
                let uid = other.map(|u| u.id);
                let mut batch = Batch(record.into_iter().collect());
                batch.push(audit(now, uid, "sign_in", "failure", &ctx, serde_json::json!({"method": "pwd"})));
                self.apply(batch).await?;
                return Err(AuthError::NotAuthorized);
            }
        };
        self.upgrade_legacy_hash(&user, &password, now, &ctx).await?;
        let remembered_id = req.remembered_client.as_deref().and_then(|c| c.parse::<RememberedClientId>().ok());
        let mut extra: Vec<Write> = record.into_iter().collect();
        if risk.forget_remembered_client
            && let Some(id) = remembered_id
        {
            extra.push(Write::ForgetRememberedClient { id, user_id: user.id, at: now, reason: "risk".into() });
        }
        if risk.action == RiskAction::Deny {
            return self.risk_refused(&user, &risk, extra, now, &ctx).await;
        }
        if risk.notify {
            extra.extend(self.risk_notice(&user, &risk, Some(flow_id), remembered_id, &ctx, now).await?);
        }
        let clear = Write::ClearFailures { key: key.clone(), kind: PASSWORD.into() };

        if user.status == UserStatus::Unconfirmed {
            let (channel, destination, masked) = confirmation_destination(&user)?;
            self.check_send_limits(&key, Some(&destination), &ctx, channel).await?;
            let (code, message) = self.issue_code(
                flow_id,
                channel,
                &destination,
                masked,
                ("code_sign_up", user.profile.locale.as_deref()),
                now,
            )?;
            let flow = self.new_flow(
                flow_id,
                FlowKind::SignIn,
                Some(user.id),
                FlowState::AwaitingConfirmation {
                    code,
                    sign_in_after: true,
                    then_enroll_device: false,
                    invited: false,
                },
                now,
                ctx.clone(),
            );
            let mut batch = Batch(extra);
            batch.push(clear).push(Write::InsertFlow(flow.clone())).push(Write::Enqueue(message)).push(audit(
                now,
                Some(user.id),
                "sign_in",
                "needs_confirmation",
                &ctx,
                serde_json::json!({"flow_id": flow.id}),
            ));
            self.apply(batch).await?;
            return Ok(Self::outcome(flow, vec![StepEvent { step: "confirm_sign_up", outcome: "issued" }]));
        }
        // A client the account remembered stands in for the second factor (not for a set-up the
        // policy requires: only an account with a factor gets as far as remembering a client),
        // unless the risk policy asks for a second factor now.
        let remembered = match req.remembered_client.as_deref() {
            Some(id) if !risk.second_factor() && !risk.forget_remembered_client => {
                self.remembered_step(&user, id, now).await?
            }
            _ => None,
        };
        if let Some(state) = remembered {
            let flow = self.new_flow(flow_id, FlowKind::SignIn, Some(user.id), state, now, ctx.clone());
            let mut batch = Batch(extra);
            batch.push(clear).push(Write::InsertFlow(flow.clone())).push(audit(
                now,
                Some(user.id),
                "sign_in",
                "needs_remembered_client",
                &ctx,
                serde_json::json!({"flow_id": flow.id}),
            ));
            self.apply(batch).await?;
            let events = vec![
                StepEvent { step: "password", outcome: "verified" },
                StepEvent { step: "remembered_client", outcome: "issued" },
            ];
            return Ok(Self::outcome(flow, events));
        }
        let start = if risk.second_factor() {
            let resistant = risk.action == RiskAction::RequirePhishingResistant;
            match self.start_risk_mfa(flow_id, &user, aal2, resistant, now, &ctx).await? {
                Some(start) => Some(start),
                // Nothing this account has can answer what the policy asks: refused.
                None => return self.risk_refused(&user, &risk, extra, now, &ctx).await,
            }
        } else {
            self.start_mfa(flow_id, &user, aal2, now, &ctx).await?
        };
        if let Some(start) = start {
            let flow = self.new_flow(flow_id, FlowKind::SignIn, Some(user.id), start.state, now, ctx.clone());
            let step = flow.state.step_name();
            let mut batch = Batch(extra);
            for w in start.writes {
                batch.push(w);
            }
            batch.push(clear).push(Write::InsertFlow(flow.clone())).push(audit(
                now,
                Some(user.id),
                "sign_in",
                "needs_second_factor",
                &ctx,
                serde_json::json!({"flow_id": flow.id, "step": step}),
            ));
            self.apply(batch).await?;
            return Ok(Self::outcome(flow, vec![StepEvent { step: "password", outcome: "verified" }, start.event]));
        }
        if user.must_change_password {
            let flow = self.new_flow(
                flow_id,
                FlowKind::SignIn,
                Some(user.id),
                FlowState::AwaitingNewPassword { amr: vec!["pwd".into()], recovery: None },
                now,
                ctx.clone(),
            );
            let mut batch = Batch(extra);
            batch.push(clear).push(Write::InsertFlow(flow.clone())).push(audit(
                now,
                Some(user.id),
                "sign_in",
                "needs_new_password",
                &ctx,
                serde_json::json!({"flow_id": flow.id}),
            ));
            self.apply(batch).await?;
            return Ok(Self::outcome(flow, vec![StepEvent { step: "new_password", outcome: "issued" }]));
        }

        let mut batch = Batch(extra);
        let (session, tokens) =
            self.sessions().new_session(flow_id, &user, &["pwd"], None, now, &ctx, &mut batch).await?;
        let done = self.new_flow(
            flow_id,
            FlowKind::SignIn,
            Some(user.id),
            FlowState::Completed { session_id: Some(session.id) },
            now,
            ctx.clone(),
        );
        batch.push(clear).push(Write::InsertFlow(done.clone())).push(audit(
            now,
            Some(user.id),
            "sign_in",
            "success",
            &ctx,
            serde_json::json!({"flow_id": done.id, "session_id": session.id, "amr": ["pwd"]}),
        ));
        self.apply(batch).await?;
        Ok(FlowOutcome::verified(done, Some(tokens), "password"))
    }

    /// A sign-in the risk policy refuses (or whose second factor nothing can answer): it looks
    /// like a wrong password to the client; the owner is told (the password was right), and
    /// `extra` (the decision's record) is kept.
    async fn risk_refused(
        &self,
        user: &User,
        risk: &Decision,
        extra: Vec<Write>,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let mut batch = Batch(extra);
        batch.push(audit(now, Some(user.id), "sign_in", "denied", ctx, serde_json::json!({"reasons": risk.reasons})));
        if risk.notify {
            let mut refused = risk.clone();
            refused.action = RiskAction::Deny;
            for w in self.risk_notice(user, &refused, None, None, ctx, now).await? {
                batch.push(w);
            }
        }
        self.apply(batch).await?;
        Err(AuthError::NotAuthorized)
    }

    pub(crate) async fn set_new_password(
        &self,
        flow: Flow,
        amr: Vec<String>,
        password: SecretString,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let Some(mut user) = self.user_of(&flow).await? else {
            return Err(expired(&flow.state));
        };
        if let Err(reason) = check_policy(&password, &user.username_canonical) {
            let mut o = Self::outcome(flow, vec![StepEvent { step: "new_password", outcome: "failed" }]);
            o.error = step_error(codes::INVALID_PASSWORD, &reason.to_string());
            return Ok(o);
        }
        user.password_hash = Some(self.hasher.hash(&password).await?);
        user.must_change_password = false;
        user.updated_at = now;
        let mut batch = Batch::new();
        let (session, tokens) =
            self.sessions().new_session(flow.id, &user, &amr_or_pwd(&amr), None, now, &ctx, &mut batch).await?;
        let done = Flow {
            state: FlowState::Completed { session_id: Some(session.id) },
            version: flow.version + 1,
            ..flow.clone()
        };
        batch
            .push(Write::UpdateUser(user.clone()))
            .push(Write::UpdateFlow { flow: done.clone(), expected_version: flow.version })
            .push(audit(
                now,
                Some(user.id),
                "new_password",
                "success",
                &ctx,
                serde_json::json!({"flow_id": flow.id, "session_id": session.id}),
            ));
        let link = self.undo_link(user.id, Undo::Lock, None, now);
        let (subject, body) = self.text(user.profile.locale.as_deref(), "password_changed", &[("link", &link)]);
        let data = proto::PushData { kind: "notice".into(), approval_id: None };
        for m in self.notify_everywhere(&user, &subject, &body, &data, None, now).await? {
            batch.push(Write::Enqueue(m));
        }
        self.commit(batch, flow.id).await?;
        Ok(FlowOutcome::verified(done, Some(tokens), "new_password"))
    }

    /// A password that matched a hash imported from another system replaces it with Latchkey's
    /// own Argon2id (issue 15): the old scheme is never checked again for this account.
    async fn upgrade_legacy_hash(
        &self,
        user: &User,
        password: &crate::secret::SecretString,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<(), AuthError> {
        let Some(old) = user.password_hash.as_deref() else { return Ok(()) };
        let Some(Ok(legacy)) = crate::factors::legacy::from_stored(old) else { return Ok(()) };
        let new = self.hasher.hash(password).await?;
        let detail = serde_json::json!({"from": legacy.scheme(), "to": "argon2id"});
        self.apply(Batch(vec![
            Write::UpgradePasswordHash { user_id: user.id, from: old.to_owned(), to: new },
            audit(now, Some(user.id), "password_upgraded", "success", ctx, detail),
        ]))
        .await?;
        Ok(())
    }
}
