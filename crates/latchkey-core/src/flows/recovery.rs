//! Account recovery (DESIGN.md, "Recovery obeys the same rule as sign-in"; checklist LIFE-3,
//! LIFE-4): a code to a recovery channel, then a second, independent proof — or, with one proof
//! only, a delay during which every device and verified address of the account is told and any
//! of them can cancel. Then a new password or a new device, and the account's older sessions
//! end. `POST /v1/recovery` and `POST /v1/forgot-password` are two doors to this one flow.
//!
//! Invariants:
//! - Control of one channel never completes a recovery before the delay: SMS and the phone's own
//!   device key are one proof, and a channel changed within its cooldown is no proof at all.
//! - The first step looks the same for unknown usernames, accounts that cannot recover by the
//!   asked channel and real ones; look-alikes send nothing and spend no real account's budget.
//! - Nothing is revoked or changed until the recovery completes.

use crate::auth::{Auth, CODE, FlowOutcome, PASSWORD, StepEvent, audit, secs, step_error};
use crate::clock::rfc3339;
use crate::error::AuthError;
use crate::factors::password::check_policy;
use crate::factors::{ACTIVE, RECOVERY_CODES, TOTP};
use crate::flows::undo::Undo;
use crate::identity::{Email, Phone, lookup_key};
use crate::ids::{DeviceId, FlowId, UserId};
use crate::model::*;
use crate::secret::{SecretString, ct_eq, random_token};
use crate::store::{Batch, StoreError, Write};
use latchkey_proto as proto;
use latchkey_proto::{Channel, DenialReason, MfaMethod, codes};
use time::OffsetDateTime;

/// Who may recover: an active account, or one held by "this wasn't me" (a recovery releases it).
fn recoverable(status: UserStatus) -> bool {
    matches!(status, UserStatus::Active | UserStatus::Locked)
}

/// The steps of a recovery that end it: the new password, or the new device.
enum Completion {
    /// Set this password hash now (it came with the first proof).
    Password(String),
    /// Ask for a new password.
    NewPassword,
    /// Enrol a new device (a passwordless account).
    Device,
}

impl Auth {
    /// `POST /v1/recovery`: a code to a recovery channel (`email_code` / `sms_code`), then a
    /// second proof. The step and its shape do not depend on whether the account exists.
    pub async fn start_recovery(
        &self,
        req: proto::RecoveryRequest,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        if matches!(req.channel, Some(Channel::Unknown)) {
            return Err(AuthError::InvalidRequest("channel must be email or sms".into()));
        }
        self.require_genuine_app(crate::factors::app_integrity::GatedAction::Recovery, &ctx)?;
        let now = self.now();
        let (key, user) = self.account_to_recover(&req.username, &ctx).await?;
        let channels = user.as_ref().map(|u| self.recovery_channels(u, now)).unwrap_or_default();
        let (channel, target) = match req.channel {
            Some(c) => (c, channels.into_iter().find(|(ch, _, _)| *ch == c)),
            None => match channels.into_iter().next() {
                Some(t) => (t.0, Some(t)),
                // An unknown account answers as one whose first channel is this one.
                None => (self.look_alike_channel(&key), None),
            },
        };
        let flow_id = FlowId::new();
        let mut batch = Batch::new();
        let (code, user_id) =
            self.first_code(flow_id, &key, user.as_ref(), channel, target, &ctx, now, &mut batch).await?;
        let method = if channel == Channel::Sms { MfaMethod::Sms } else { MfaMethod::Email };
        let recovery =
            Recovery { verified: vec![], first: channel, second_proofs: vec![], password_hash: None, waited: false };
        let state = FlowState::AwaitingMfa {
            method: Some(method),
            methods: vec![method],
            code: Some(code),
            then_new_password: false,
            new_device: None,
            push: None,
            recovery: Some(recovery),
            step_up: None,
            custom: None,
            passkey: None,
        };
        let mut flow = self.new_flow(flow_id, FlowKind::Recovery, user_id, state, now, ctx.clone());
        flow.expires_at = now + secs(self.settings.flows.code_ttl_secs);
        self.insert_recovery_flow(flow, user_id.is_some(), batch, now, &ctx).await
    }

    /// `POST /v1/forgot-password`: the same recovery, for Cognito-shaped apps: its first step is
    /// `reset_password` (the code and the new password together); the password is set only once
    /// the second proof (or the delay) completes the recovery.
    pub async fn forgot_password(
        &self,
        req: proto::ForgotPasswordRequest,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        self.require_genuine_app(crate::factors::app_integrity::GatedAction::Recovery, &ctx)?;
        let now = self.now();
        let (key, user) = self.account_to_recover(&req.username, &ctx).await?;
        let target = user.as_ref().and_then(|u| self.recovery_channels(u, now).into_iter().next());
        let channel = target.as_ref().map_or(Channel::Email, |t| t.0);
        let flow_id = FlowId::new();
        let mut batch = Batch::new();
        let (code, user_id) =
            self.first_code(flow_id, &key, user.as_ref(), channel, target, &ctx, now, &mut batch).await?;
        let code = user_id.map(|_| code);
        let mut flow =
            self.new_flow(flow_id, FlowKind::Recovery, user_id, FlowState::AwaitingReset { code }, now, ctx.clone());
        flow.expires_at = now + secs(self.settings.flows.code_ttl_secs);
        self.insert_recovery_flow(flow, user_id.is_some(), batch, now, &ctx).await
    }

    /// The canonical username and the account it names, if that account may recover (an
    /// active one, or one held by "this wasn't me": a recovery releases it).
    async fn account_to_recover(
        &self,
        username: &str,
        ctx: &ClientContext,
    ) -> Result<(String, Option<User>), AuthError> {
        let key = lookup_key(username).map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
        let user = match self.store.user_by_username(&key).await? {
            Some(u) => Some(u),
            // Not here (yet): the old system may know it (lazy migration).
            None => self.migrate_user(username, None, "recovery", ctx).await?,
        };
        Ok((key, user.filter(|u| recoverable(u.status))))
    }

    /// The first code of a recovery: sent when the account can receive it on `channel` (then the
    /// flow is the account's), otherwise a code nobody knows and nothing sent. Both count against
    /// the send limits, a look-alike on buckets of its own (checklist OOB-5, RL-5).
    #[allow(clippy::too_many_arguments)] // the request's facts and the batch it adds to
    async fn first_code(
        &self,
        flow_id: FlowId,
        key: &str,
        user: Option<&User>,
        channel: Channel,
        target: Option<(Channel, String, String)>,
        ctx: &ClientContext,
        now: OffsetDateTime,
        batch: &mut Batch,
    ) -> Result<(CodeChallenge, Option<UserId>), AuthError> {
        match (user, target) {
            (Some(u), Some((channel, to, masked))) => {
                self.check_send_limits(key, Some(&to), ctx, channel).await?;
                // Where it went is not shown: it would tell which accounts exist and what they have.
                let (mut code, message) = self.issue_code(
                    flow_id,
                    channel,
                    &to,
                    masked,
                    ("code_recovery", u.profile.locale.as_deref()),
                    now,
                )?;
                code.destination = String::new();
                batch.push(Write::Enqueue(message));
                Ok((code, Some(u.id)))
            }
            _ => {
                self.check_look_alike_limits(key, None, ctx, channel).await?;
                Ok((self.unknowable_code(flow_id, channel, String::new(), now), None))
            }
        }
    }

    async fn insert_recovery_flow(
        &self,
        flow: Flow,
        real: bool,
        mut batch: Batch,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let step = flow.state.step_name();
        batch.push(Write::InsertFlow(flow.clone())).push(audit(
            now,
            flow.user_id,
            "recovery",
            if real { "code_sent" } else { "no_destination" },
            ctx,
            serde_json::json!({"flow_id": flow.id, "step": step}),
        ));
        self.apply(batch).await?;
        Ok(Self::outcome(flow, vec![StepEvent { step, outcome: "issued" }]))
    }

    /// For an unknown username, the channel a real account of that name would most likely use
    /// first, fixed per name so asking twice answers the same.
    fn look_alike_channel(&self, key: &str) -> Channel {
        let mac = self.keys.mac("recovery_look_alike", "", key);
        if mac.bytes().next().is_some_and(|b| b % 2 == 0) { Channel::Email } else { Channel::Sms }
    }

    /// Whether SMS to the account's phone proves anything now: verified, texted by policy, and
    /// not changed within the cooldown (a new number is a new authenticator, DESIGN.md).
    pub(crate) fn sms_trusted(&self, u: &User, now: OffsetDateTime) -> bool {
        let cooldown = secs(self.settings.recovery.phone_change_cooldown_secs);
        u.phone_verified
            && u.phone.as_deref().is_some_and(|p| self.settings.limits.sms_allowed(p))
            && u.phone_changed_at.is_none_or(|at| now >= at + cooldown)
    }

    /// Whether a code to the account's email proves anything now (same rule).
    fn email_trusted(&self, u: &User, now: OffsetDateTime) -> bool {
        let cooldown = secs(self.settings.recovery.email_change_cooldown_secs);
        u.email_verified && u.email.is_some() && u.email_changed_at.is_none_or(|at| now >= at + cooldown)
    }

    /// The channels the account can recover by, the email first.
    fn recovery_channels(&self, u: &User, now: OffsetDateTime) -> Vec<(Channel, String, String)> {
        let email = u
            .email
            .as_deref()
            .filter(|_| self.email_trusted(u, now))
            .and_then(|e| Email::parse(e).ok())
            .map(|e| (Channel::Email, e.as_str().to_owned(), e.masked()));
        let phone = u
            .phone
            .as_deref()
            .filter(|_| self.sms_trusted(u, now))
            .and_then(|p| Phone::parse(p).ok())
            .map(|p| (Channel::Sms, p.as_str().to_owned(), p.masked()));
        email.into_iter().chain(phone).collect()
    }

    /// The second proofs independent of a first code to `first`: the other channel, an
    /// authenticator app, a recovery code, or approval on an enrolled device — except after SMS,
    /// whose phone is the device (SMS and the phone's own key are one proof, not two).
    async fn second_proofs(&self, u: &User, first: Channel, now: OffsetDateTime) -> Result<Vec<MfaMethod>, AuthError> {
        let factors = self.store.factors(u.id).await?;
        let active = |kind: &str| factors.iter().any(|f| f.kind == kind && f.state == ACTIVE);
        let mut out = vec![];
        if active(TOTP) {
            out.push(MfaMethod::Totp);
        }
        // A passkey is bound to the relying party and to its authenticator: no SIM swap or
        // mailbox takeover brings one.
        if self.settings.passkeys.enabled() && !self.store.passkeys(u.id).await?.is_empty() {
            out.push(MfaMethod::Passkey);
        }
        if first != Channel::Sms && !self.store.devices(u.id).await?.is_empty() {
            out.push(MfaMethod::PushApproval);
        }
        if first != Channel::Sms && self.sms_trusted(u, now) {
            out.push(MfaMethod::Sms);
        }
        if first != Channel::Email && self.email_trusted(u, now) {
            out.push(MfaMethod::Email);
        }
        if active(RECOVERY_CODES) && self.store.recovery_codes(u.id).await?.iter().any(|c| c.used_at.is_none()) {
            out.push(MfaMethod::RecoveryCode);
        }
        Ok(out)
    }

    /// `reset_password` (the first step of `forgot-password`): the code and an acceptable new
    /// password; the password's hash waits in the flow until the recovery completes.
    pub(crate) async fn reset_password(
        &self,
        flow: Flow,
        code: Option<CodeChallenge>,
        given: SecretString,
        password: SecretString,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let user = self.user_of(&flow).await?;
        let key = user.as_ref().map(|u| u.username_canonical.clone());
        // The policy is checked before the code, so a weak password does not spend an attempt.
        if let Err(reason) = check_policy(&password, key.as_deref().unwrap_or_default()) {
            let mut o = Self::outcome(flow, vec![StepEvent { step: "reset_password", outcome: "failed" }]);
            o.error = step_error(codes::INVALID_PASSWORD, &reason.to_string());
            return Ok(o);
        }
        if let Err(o) = self.check_code(&flow, code.as_ref(), &given, (key.as_deref(), CODE), now, &ctx).await? {
            return Ok(o);
        }
        let (Some(user), Some(code)) = (user, code) else {
            return Err(AuthError::Internal("reset flow without user".into()));
        };
        let recovery = Recovery {
            verified: vec![],
            first: code.channel,
            second_proofs: vec![],
            password_hash: Some(self.hasher.hash(&password).await?),
            waited: false,
        };
        let method = if code.channel == Channel::Sms { MfaMethod::Sms } else { MfaMethod::Email };
        let mut batch = Batch::new();
        batch.push(Write::ClearFailures { key: user.username_canonical.clone(), kind: CODE.into() });
        let (next, tokens) =
            self.recovery_next(&flow, &user, method, self.amr_of(method), &recovery, now, &ctx, &mut batch).await?;
        self.commit(batch, flow.id).await?;
        Ok(FlowOutcome::verified(next, tokens, "reset_password"))
    }

    /// A recovery after one of its proofs: after the first, the second (`select_mfa` among the
    /// independent ones and `recovery_wait`; straight to the wait when there are none); after
    /// the second, the completion. Pushes the transition onto `batch`.
    #[allow(clippy::too_many_arguments)] // the flow's facts and the batch it adds to
    pub(crate) async fn recovery_next(
        &self,
        flow: &Flow,
        user: &User,
        method: MfaMethod,
        amr: &str,
        rec: &Recovery,
        now: OffsetDateTime,
        ctx: &ClientContext,
        batch: &mut Batch,
    ) -> Result<(Flow, Option<proto::Tokens>), AuthError> {
        let mut rec = rec.clone();
        rec.verified.push(amr.to_owned());
        let first = rec.verified.len() == 1;
        batch.push(audit(
            now,
            Some(user.id),
            "recovery",
            if first { "first_proof" } else { "second_proof" },
            ctx,
            serde_json::json!({"flow_id": flow.id, "method": method.as_str()}),
        ));
        if !first {
            return self.recovery_completion(flow, user, rec, now, ctx, batch).await;
        }
        rec.second_proofs = self.second_proofs(user, rec.first, now).await?;
        if rec.second_proofs.is_empty() {
            let next = self.begin_wait(flow, user, rec, now, ctx, batch).await?;
            return Ok((next, None));
        }
        let mut methods = rec.second_proofs.clone();
        methods.push(MfaMethod::RecoveryWait);
        let state = FlowState::AwaitingMfa {
            method: None,
            methods,
            code: None,
            then_new_password: false,
            new_device: None,
            push: None,
            recovery: Some(rec),
            step_up: None,
            custom: None,
            passkey: None,
        };
        let next = Flow {
            state,
            version: flow.version + 1,
            expires_at: now + secs(self.settings.flows.ttl_secs),
            ..flow.clone()
        };
        batch.push(Write::UpdateFlow { flow: next.clone(), expected_version: flow.version });
        Ok((next, None))
    }

    /// `select_mfa` with `recovery_wait` (the user has no second proof): start the delay.
    pub(crate) async fn choose_wait(
        &self,
        flow: Flow,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let FlowState::AwaitingMfa { recovery: Some(rec), push, .. } = flow.state.clone() else {
            return Err(AuthError::InvalidRequest("`recovery_wait` is offered only in a recovery".into()));
        };
        let user = self.user_of(&flow).await?.ok_or(AuthError::FlowExpired)?;
        let mut batch = Batch::new();
        if let Some(p) = push {
            batch.push(Write::WithdrawApproval { id: p.approval_id, at: now });
        }
        let next = self.begin_wait(&flow, &user, rec, now, &ctx, &mut batch).await?;
        self.commit(batch, flow.id).await?;
        Ok(Self::outcome(next, vec![StepEvent { step: "recovery_wait", outcome: "issued" }]))
    }

    /// The flow moves to `recovery_wait`; every device and verified address of the account is
    /// told, each notice with the one-tap cancel.
    #[allow(clippy::too_many_arguments)] // the flow's facts and the batch it adds to
    async fn begin_wait(
        &self,
        flow: &Flow,
        user: &User,
        rec: Recovery,
        now: OffsetDateTime,
        ctx: &ClientContext,
        batch: &mut Batch,
    ) -> Result<Flow, AuthError> {
        let policy = &self.settings.recovery;
        let ready_at = now + secs(policy.delay_secs);
        let secret = random_token(self.rng.as_ref(), 32);
        let token = format!("{}.{}", flow.id, secret.expose());
        let cancel_mac = self.keys.mac("recovery_cancel", &flow.id.to_string(), secret.expose());
        let state = FlowState::AwaitingRecoveryWait { ready_at, recovery: rec, cancel_mac };
        let next = Flow {
            state,
            version: flow.version + 1,
            expires_at: ready_at + secs(policy.ready_for_secs),
            ..flow.clone()
        };
        batch.push(Write::UpdateFlow { flow: next.clone(), expected_version: flow.version }).push(audit(
            now,
            Some(user.id),
            "recovery",
            "waiting",
            ctx,
            serde_json::json!({"flow_id": flow.id, "ready_at": rfc3339(ready_at)}),
        ));
        let link = format!("{}/v1/recovery/cancel?token={token}", self.settings.tokens.issuer);
        let ready = rfc3339(ready_at);
        let args = [("address", ctx.ip.as_deref().unwrap_or("?")), ("ready_at", ready.as_str()), ("link", &link)];
        let (subject, body) = self.text(user.profile.locale.as_deref(), "recovery_started", &args);
        let data = proto::PushData { kind: "recovery".into(), approval_id: None };
        for m in self.notify_everywhere(user, &subject, &body, &data, None, now).await? {
            batch.push(Write::Enqueue(m));
        }
        Ok(next)
    }

    /// `recovery_wait`: the same step until `ready_at`; then the completion. The flow is read
    /// from the database, so a cancel on any replica is seen.
    pub(crate) async fn recovery_wait(
        &self,
        flow: Flow,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let FlowState::AwaitingRecoveryWait { ready_at, recovery, .. } = flow.state.clone() else {
            return Err(AuthError::StepMismatch { expected: flow.state.step_name() });
        };
        if now < ready_at {
            return Ok(Self::outcome(flow, vec![]));
        }
        let user = self.user_of(&flow).await?.filter(|u| recoverable(u.status)).ok_or(AuthError::FlowExpired)?;
        let mut batch = Batch::new();
        let rec = Recovery { waited: true, ..recovery };
        let (next, tokens) = self.recovery_completion(&flow, &user, rec, now, &ctx, &mut batch).await?;
        self.commit(batch, flow.id).await?;
        Ok(FlowOutcome::verified(next, tokens, "recovery_wait"))
    }

    /// After the proofs (or the wait): set the held password, or ask for a new password (an
    /// account with one) or a new device (a passwordless account).
    async fn recovery_completion(
        &self,
        flow: &Flow,
        user: &User,
        rec: Recovery,
        now: OffsetDateTime,
        ctx: &ClientContext,
        batch: &mut Batch,
    ) -> Result<(Flow, Option<proto::Tokens>), AuthError> {
        let completion = match (&rec.password_hash, &user.password_hash) {
            (Some(h), _) => Completion::Password(h.clone()),
            (None, Some(_)) => Completion::NewPassword,
            (None, None) => Completion::Device,
        };
        let ttl = now + secs(self.settings.flows.ttl_secs);
        let state = match completion {
            Completion::Password(hash) => {
                self.finish_recovery(user, &rec, Some(hash), None, flow, now, ctx, batch).await?;
                FlowState::Completed { session_id: None }
            }
            Completion::NewPassword => {
                FlowState::AwaitingNewPassword { amr: rec.verified.clone(), recovery: Some(rec) }
            }
            Completion::Device => FlowState::AwaitingDeviceEnrollment {
                amr: rec.verified.clone(),
                recovery: Some(rec),
                device_id: DeviceId::new(),
                nonce: random_token(self.rng.as_ref(), 32).expose().to_owned(),
            },
        };
        let next = Flow { state, version: flow.version + 1, expires_at: ttl, ..flow.clone() };
        batch.push(Write::UpdateFlow { flow: next.clone(), expected_version: flow.version });
        Ok((next, None))
    }

    /// `new_password` in a recovery: the password is set; no session (checklist LIFE-3).
    pub(crate) async fn recovery_new_password(
        &self,
        flow: Flow,
        rec: Recovery,
        password: SecretString,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let user = self.user_of(&flow).await?.ok_or(AuthError::FlowExpired)?;
        if let Err(reason) = check_policy(&password, &user.username_canonical) {
            let mut o = Self::outcome(flow, vec![StepEvent { step: "new_password", outcome: "failed" }]);
            o.error = step_error(codes::INVALID_PASSWORD, &reason.to_string());
            return Ok(o);
        }
        let hash = self.hasher.hash(&password).await?;
        let mut batch = Batch::new();
        self.finish_recovery(&user, &rec, Some(hash), None, &flow, now, &ctx, &mut batch).await?;
        let done = Flow { state: FlowState::Completed { session_id: None }, version: flow.version + 1, ..flow.clone() };
        batch.push(Write::UpdateFlow { flow: done.clone(), expected_version: flow.version });
        self.commit(batch, flow.id).await?;
        Ok(Self::outcome(done, vec![StepEvent { step: "new_password", outcome: "verified" }]))
    }

    /// The writes that complete a recovery: the new password (if any), the end of every older
    /// session (checklist SES-6) — and, after the wait, of every older device (the owner did not
    /// stop it) — then a notice on every channel (checklist LIFE-4). `new_device`: the device
    /// this recovery enrols, which stays.
    #[allow(clippy::too_many_arguments)] // what the recovery sets and the batch it adds to
    pub(crate) async fn finish_recovery(
        &self,
        user: &User,
        rec: &Recovery,
        password_hash: Option<String>,
        new_device: Option<DeviceId>,
        flow: &Flow,
        now: OffsetDateTime,
        ctx: &ClientContext,
        batch: &mut Batch,
    ) -> Result<(), AuthError> {
        let mut updated = user.clone();
        // A recovery is how an account held by "this wasn't me" comes back.
        updated.status = UserStatus::Active;
        if let Some(h) = password_hash {
            updated.password_hash = Some(h);
            updated.must_change_password = false;
        }
        updated.updated_at = now;
        batch
            .push(Write::UpdateUser(updated))
            .push(Write::RevokeUserSessions { user_id: user.id, at: now, reason: "recovery".into() })
            .push(Write::ClearFailures { key: user.username_canonical.clone(), kind: PASSWORD.into() })
            .push(Write::ClearFailures { key: user.username_canonical.clone(), kind: CODE.into() });
        let devices = self.store.devices(user.id).await?;
        if rec.waited {
            for d in devices.iter().filter(|d| Some(d.id) != new_device) {
                batch.push(Write::RevokeDevice { id: d.id, at: now });
            }
        }
        batch.push(audit(
            now,
            Some(user.id),
            "recovery",
            "completed",
            ctx,
            serde_json::json!({"flow_id": flow.id, "proofs": rec.verified, "waited": rec.waited, "new_device": new_device}),
        ));
        let locale = user.profile.locale.as_deref();
        let id = if new_device.is_some() { "recovered_device" } else { "recovered_password" };
        let older = if rec.waited { self.text(locale, "older_devices_removed", &[]).1 } else { String::new() };
        let link = self.undo_link(user.id, Undo::Lock, new_device, now);
        let args = [("address", ctx.ip.as_deref().unwrap_or("?")), ("older", older.as_str()), ("link", &link)];
        let (subject, body) = self.text(locale, id, &args);
        let data = proto::PushData { kind: "notice".into(), approval_id: None };
        // The devices are told before the batch revokes them.
        for m in self.notify_everywhere(user, &subject, &body, &data, new_device, now).await? {
            batch.push(Write::Enqueue(m));
        }
        Ok(())
    }

    // ----- the owner's veto ------------------------------------------------------------------

    /// The one-tap cancel from a "being recovered" notice (`POST /v1/recovery/cancel`). The token
    /// names its recovery; it works while that recovery waits, once.
    pub(crate) async fn cancel_recovery_by_token(
        &self,
        token: &str,
        ctx: ClientContext,
    ) -> Result<proto::RecoveryCancelled, AuthError> {
        let refused = || AuthError::NotFound;
        let (id, secret) = token.trim().split_once('.').ok_or_else(refused)?;
        let id: FlowId = id.parse().map_err(|_| refused())?;
        let flow = self.store.flow(id).await?.ok_or_else(refused)?;
        let FlowState::AwaitingRecoveryWait { cancel_mac, .. } = &flow.state else { return Err(refused()) };
        let mac = self.keys.mac("recovery_cancel", &flow.id.to_string(), secret);
        if !ct_eq(mac.as_bytes(), cancel_mac.as_bytes()) || flow.expires_at <= self.now() {
            return Err(refused());
        }
        let user = self.user_of(&flow).await?.ok_or_else(refused)?;
        let n = self.cancel_recoveries(&user, vec![flow], "notice_link", ctx).await?;
        if n == 0 {
            return Err(refused());
        }
        Ok(proto::RecoveryCancelled { cancelled: n })
    }

    /// `DELETE /v1/me/recovery` (any session of the account) and `DELETE /v1/device/recovery` (a
    /// signed device request): end every recovery of the account in progress.
    pub async fn cancel_recoveries_of(
        &self,
        user: &User,
        via: &str,
        ctx: ClientContext,
    ) -> Result<proto::RecoveryCancelled, AuthError> {
        let flows = self.store.recovery_flows(user.id, self.now()).await?;
        Ok(proto::RecoveryCancelled { cancelled: self.cancel_recoveries(user, flows, via, ctx).await? })
    }

    /// `DELETE /v1/device/recovery`: the same, signed by one of the account's devices.
    pub async fn cancel_recoveries_of_device(
        &self,
        device: &Device,
        ctx: ClientContext,
    ) -> Result<proto::RecoveryCancelled, AuthError> {
        let user = self.store.user_by_id(device.user_id).await?.ok_or(AuthError::Unauthenticated)?;
        self.cancel_recoveries_of(&user, "device", ctx).await
    }

    /// Cancel those of `flows` still in progress, each by a compare-and-swap (a completion or a
    /// cancel on another replica wins or loses cleanly); the account hears of it everywhere.
    async fn cancel_recoveries(
        &self,
        user: &User,
        flows: Vec<Flow>,
        via: &str,
        ctx: ClientContext,
    ) -> Result<u32, AuthError> {
        let now = self.now();
        let mut cancelled = 0u32;
        for flow in flows.into_iter().filter(|f| !f.state.is_terminal() && f.expires_at > now) {
            let mut batch = Batch::new();
            if let FlowState::AwaitingMfa { push: Some(p), .. } = &flow.state {
                batch.push(Write::WithdrawApproval { id: p.approval_id, at: now });
            }
            let denied = Flow {
                state: FlowState::Denied { reason: DenialReason::Cancelled },
                version: flow.version + 1,
                ..flow.clone()
            };
            batch.push(Write::UpdateFlow { flow: denied, expected_version: flow.version }).push(audit(
                now,
                Some(user.id),
                "recovery",
                "cancelled",
                &ctx,
                serde_json::json!({"flow_id": flow.id, "via": via}),
            ));
            match self.apply(batch).await {
                Ok(()) => cancelled += 1,
                Err(StoreError::Conflict("flow")) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if cancelled > 0 {
            let (subject, body) = self.text(user.profile.locale.as_deref(), "recovery_cancelled", &[]);
            let data = proto::PushData { kind: "notice".into(), approval_id: None };
            let notices = self.notify_everywhere(user, &subject, &body, &data, None, now).await?;
            self.apply(Batch(notices.into_iter().map(Write::Enqueue).collect())).await?;
        }
        Ok(cancelled)
    }

    /// A security notice on every channel the thief cannot silence alone: each verified
    /// address and a push to each enrolled device (but `except`).
    pub(crate) async fn notify_everywhere(
        &self,
        user: &User,
        subject: &str,
        body: &str,
        data: &proto::PushData,
        except: Option<DeviceId>,
        now: OffsetDateTime,
    ) -> Result<Vec<OutboxMessage>, AuthError> {
        let mut out = self.notification(user, subject, body, now)?;
        out.extend(self.push_to_devices(user.id, except, subject, body, data, now).await?);
        Ok(out)
    }
}
