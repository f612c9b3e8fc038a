//! Second factors at sign-in: which step a sign-in asks for, `select_mfa` and switching, SMS and
//! email codes, recovery codes, and what a verified second factor leads to. Verifying a new
//! destination is `verification.rs`; enrolling one is `enroll.rs`;
//! managing them is `account/`.
//!
//! Every second-factor guess (TOTP, SMS, email, recovery code) counts on the account's one `otp`
//! failure counter (checklist RL-1, REC-5); verifying a new destination counts on `code`.

use crate::auth::{Auth, CODE, FlowOutcome, OTP, StepEvent, audit};
use crate::error::{AuthError, retry_after};
use crate::factors::recovery_codes::normalize_recovery_code;
use crate::factors::{ACTIVE, EMAIL, RECOVERY_CODES, SMS, TOTP, is_strong};
use crate::flows::enroll::TotpMatch;
use crate::hooks::Hook;
use crate::identity::{Email, Phone};
use crate::ids::{DeviceId, FlowId};
use crate::model::*;
use crate::secret::{SecretString, random_token};
use crate::settings::MfaMode;
use crate::store::{Batch, StoreError, Write};
use latchkey_proto as proto;
use latchkey_proto::{Channel, DenialReason, MfaMethod};
use time::OffsetDateTime;

/// What a sign-in asks for after the password: the state and the writes that go with it.
pub(crate) struct MfaStart {
    pub state: FlowState,
    pub writes: Vec<Write>,
    pub event: StepEvent,
}

impl Auth {
    /// The RFC 8176 `amr` value a method adds. A recovery code is a one-time password (`otp`);
    /// an email code gets the unregistered `email`, which never counts towards `aal2`; a custom
    /// challenge what its policy says (`[hooks.custom_challenge] amr`).
    pub(crate) fn amr_of(&self, m: MfaMethod) -> &'static str {
        match m {
            MfaMethod::Sms => "sms",
            MfaMethod::Email => "email",
            // A signature by an enrolled device's key; a passkey's class is its own (`after_proof`).
            MfaMethod::PushApproval | MfaMethod::Passkey => "hwk",
            MfaMethod::CustomChallenge => {
                self.hooks.policy(crate::hooks::Hook::CustomChallenge).map_or("otp", |p| p.amr)
            }
            _ => "otp",
        }
    }

    /// The methods this account can be asked for, the preferred one first, then policy order.
    pub(crate) async fn methods_of(&self, user: &User, factors: &[Factor]) -> Result<Vec<MfaMethod>, AuthError> {
        let policy = &self.settings.mfa;
        let active = |kind: &str| factors.iter().any(|f| f.kind == kind && f.state == ACTIVE);
        let mut out = Vec::new();
        for m in &policy.methods {
            let usable = match m {
                MfaMethod::Totp => active(TOTP),
                MfaMethod::Passkey => {
                    self.settings.passkeys.enabled() && !self.store.passkeys(user.id).await?.is_empty()
                }
                // A number changed within the cooldown is not trusted yet (DESIGN.md).
                MfaMethod::Sms => active(SMS) && self.sms_trusted(user, self.now()),
                MfaMethod::Email => active(EMAIL) && user.email_verified && user.email.is_some(),
                MfaMethod::RecoveryCode => {
                    active(RECOVERY_CODES)
                        && self.store.recovery_codes(user.id).await?.iter().any(|c| c.used_at.is_none())
                }
                MfaMethod::PushApproval => !self.store.devices(user.id).await?.is_empty(),
                // Every account can answer the operator's own challenge.
                MfaMethod::CustomChallenge => self.hooks.policy(crate::hooks::Hook::CustomChallenge).is_some(),
                _ => false,
            };
            if usable && policy.allows(*m) && !out.contains(m) {
                out.push(*m);
            }
        }
        if let Some(p) = user.preferred_mfa
            && let Some(i) = out.iter().position(|m| *m == p)
        {
            let m = out.remove(i);
            out.insert(0, m);
        }
        Ok(out)
    }

    /// After a right password: the second-factor step, the set-up step when policy requires a
    /// factor the account lacks, or `None` when the sign-in is complete. `aal2`: the sign-in
    /// asked for it (`acr_values`), so it goes as if the policy required a second factor, and
    /// offers none that cannot give `aal2` (email).
    pub(crate) async fn start_mfa(
        &self,
        flow_id: FlowId,
        user: &User,
        aal2: bool,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<Option<MfaStart>, AuthError> {
        let policy = &self.settings.mfa;
        if policy.mode == MfaMode::Off {
            if aal2 {
                return Err(AuthError::InvalidRequest("acr_values: second factors are turned off by policy".into()));
            }
            return Ok(None);
        }
        let factors = self.store.factors(user.id).await?;
        let mut methods = self.methods_of(user, &factors).await?;
        if aal2 {
            // Only a method of another class than the password can make `aal2`: not an email
            // code, nor a custom challenge the policy counts as knowledge.
            methods.retain(|m| crate::sessions::two_classes(&["pwd", self.amr_of(*m)]));
        }
        let strong = factors.iter().any(|f| is_strong(&f.kind) && f.state == ACTIVE);
        if (policy.mode == MfaMode::Required || aal2) && !strong {
            // Lead the user through adding an authenticator app inside this sign-in.
            let (factor, state) = self.new_totp_enrolment(user, now)?;
            return Ok(Some(MfaStart {
                state,
                writes: vec![Write::InsertFactor(factor)],
                event: StepEvent { step: "setup_totp", outcome: "issued" },
            }));
        }
        if methods.is_empty() {
            if aal2 {
                return Err(AuthError::MfaRequired("acr_values: no second factor of this account can give aal2 now"));
            }
            return Ok(None);
        }
        Ok(Some(self.ask_for(flow_id, user, methods, user.must_change_password, now, ctx).await?))
    }

    /// After a right password, when the risk policy asks for a second factor whatever the
    /// policy's mode or a remembered client: what the account can answer (a code to its
    /// verified email when it has no factor), only a push approval signed by an enrolled
    /// device's key when `phishing_resistant`. `None`: nothing can answer it. Never a set-up
    /// step: a password alone must not add the factor that vouches for it.
    pub(crate) async fn start_risk_mfa(
        &self,
        flow_id: FlowId,
        user: &User,
        aal2: bool,
        phishing_resistant: bool,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<Option<MfaStart>, AuthError> {
        let factors = self.store.factors(user.id).await?;
        let mut methods = self.methods_of(user, &factors).await?;
        if methods.is_empty() && user.email_verified && user.email.is_some() {
            methods.push(MfaMethod::Email);
        }
        if phishing_resistant {
            methods.retain(|m| m.phishing_resistant());
        }
        if aal2 {
            // Only a method of another class than the password can make `aal2`: not an email
            // code, nor a custom challenge the policy counts as knowledge.
            methods.retain(|m| crate::sessions::two_classes(&["pwd", self.amr_of(*m)]));
        }
        if methods.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.ask_for(flow_id, user, methods, user.must_change_password, now, ctx).await?))
    }

    /// The second-factor step for `methods` (not empty): the one method when there is one
    /// besides recovery codes (its code sent for `sms` and `email`), else `select_mfa`.
    pub(crate) async fn ask_for(
        &self,
        flow_id: FlowId,
        user: &User,
        methods: Vec<MfaMethod>,
        then_new_password: bool,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<MfaStart, AuthError> {
        let primary: Vec<MfaMethod> = methods.iter().copied().filter(|m| *m != MfaMethod::RecoveryCode).collect();
        let method = match (primary.len(), methods.first()) {
            (_, None) => None,
            // Only recovery codes left: ask for one.
            (0, Some(m)) => Some(*m),
            (1, _) => Some(primary[0]),
            _ => None,
        };
        let mut writes = vec![];
        let code = match method {
            Some(m @ (MfaMethod::Sms | MfaMethod::Email)) => {
                let (code, message) = self.mfa_code(flow_id, user, m, ctx, now).await?;
                writes.push(Write::Enqueue(message));
                Some(code)
            }
            _ => None,
        };
        let custom = match method {
            Some(MfaMethod::CustomChallenge) => Some(Box::new(self.create_challenge(flow_id, user, now).await?)),
            _ => None,
        };
        let passkey = match method {
            Some(MfaMethod::Passkey) => Some(Box::new(self.passkey_challenge(user.id, false).await?)),
            _ => None,
        };
        let state = FlowState::AwaitingMfa {
            method,
            methods,
            code,
            then_new_password,
            new_device: None,
            push: None,
            recovery: None,
            step_up: None,
            custom,
            passkey,
        };
        let event = StepEvent { step: state.step_name(), outcome: "issued" };
        Ok(MfaStart { state, writes, event })
    }

    /// A code for `sms` or `email` at sign-in, to the account's verified destination (checklist
    /// OOB-6: never to an unverified number), within the send limits.
    async fn mfa_code(
        &self,
        flow_id: FlowId,
        user: &User,
        method: MfaMethod,
        ctx: &ClientContext,
        now: OffsetDateTime,
    ) -> Result<(CodeChallenge, OutboxMessage), AuthError> {
        let (channel, to, masked) = match method {
            MfaMethod::Sms => {
                let p = user
                    .phone
                    .as_deref()
                    .filter(|_| user.phone_verified)
                    .and_then(|p| Phone::parse(p).ok())
                    .ok_or(AuthError::InvalidRequest("the account has no verified phone".into()))?;
                (Channel::Sms, p.as_str().to_owned(), p.masked())
            }
            _ => {
                let e = user
                    .email
                    .as_deref()
                    .filter(|_| user.email_verified)
                    .and_then(|e| Email::parse(e).ok())
                    .ok_or(AuthError::InvalidRequest("the account has no verified email".into()))?;
                (Channel::Email, e.as_str().to_owned(), e.masked())
            }
        };
        self.check_send_limits(&user.username_canonical, Some(&to), ctx, channel).await?;
        self.issue_code(flow_id, channel, &to, masked, ("code_sign_in", user.profile.locale.as_deref()), now)
    }

    /// `select_mfa`: pick (or switch to) a method. Attempts carry over; a code is sent for `sms`
    /// and `email`, counted against the flow's and the account's send limits.
    pub(crate) async fn select_mfa(
        &self,
        flow: Flow,
        methods: Vec<MfaMethod>,
        then_new_password: bool,
        method: MfaMethod,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        if !methods.contains(&method) {
            return Err(AuthError::InvalidRequest(format!("`{}` is not offered in this sign-in", method.as_str())));
        }
        let (new_device, recovery, step_up) = match &flow.state {
            FlowState::AwaitingMfa { new_device, recovery, step_up, .. } => {
                (new_device.clone(), recovery.clone(), step_up.clone())
            }
            _ => (None, None, None),
        };
        // The first step of a new-device sign-in or a recovery hides where the code went, and a
        // look-alike flow for an unknown account (no user) answers the same without sending
        // anything.
        let first_stage = new_device.as_ref().is_some_and(|nd| nd.verified.is_empty())
            || recovery.as_ref().is_some_and(|r| r.verified.is_empty());
        let user = self.user_of(&flow).await?;
        if user.is_none() && !first_stage {
            return Err(AuthError::FlowExpired);
        }
        let mut batch = Batch::new();
        // A prompt this sign-in asked for earlier is withdrawn, whatever comes next: the phone
        // stops showing it, and asking again is not refused as a second outstanding push.
        if let FlowState::AwaitingMfa { push: Some(p), .. } = &flow.state {
            batch.push(Write::WithdrawApproval { id: p.approval_id, at: now });
        }
        let push = match (method, &user) {
            (MfaMethod::PushApproval, Some(user)) => Some(self.ask_devices(&flow, user, now, &ctx, &mut batch).await?),
            _ => None,
        };
        let code = match method {
            MfaMethod::Sms | MfaMethod::Email => {
                if self.store.reserve_flow_send(flow.id, self.settings.flows.max_sends).await?.is_none() {
                    // This flow sends no more codes; a new one can, once it ends.
                    return Err(AuthError::LimitExceeded {
                        retry_after_secs: retry_after(now, flow.expires_at),
                        limit: "flow_sends",
                    });
                }
                let mut code = match &user {
                    Some(user) => {
                        let (code, message) = self.mfa_code(flow.id, user, method, &ctx, now).await?;
                        batch.push(Write::Enqueue(message));
                        code
                    }
                    None => {
                        let channel = if method == MfaMethod::Sms { Channel::Sms } else { Channel::Email };
                        self.unknowable_code(flow.id, channel, String::new(), now)
                    }
                };
                if first_stage {
                    code.destination = String::new();
                }
                Some(code)
            }
            _ => None,
        };
        let custom = match (method, &user) {
            (MfaMethod::CustomChallenge, Some(user)) => {
                Some(Box::new(self.create_challenge(flow.id, user, now).await?))
            }
            (MfaMethod::CustomChallenge, None) => return Err(AuthError::FlowExpired),
            _ => None,
        };
        let passkey = match (method, &user) {
            (MfaMethod::Passkey, Some(user)) => {
                let aal3 = step_up.as_ref().is_some_and(|su| su.acr == "aal3");
                Some(Box::new(self.passkey_challenge(user.id, aal3).await?))
            }
            (MfaMethod::Passkey, None) => return Err(AuthError::FlowExpired),
            _ => None,
        };
        let state = FlowState::AwaitingMfa {
            method: Some(method),
            methods,
            code,
            then_new_password,
            new_device,
            push,
            recovery,
            step_up,
            custom,
            passkey,
        };
        let step = state.step_name();
        let next = Flow { state, version: flow.version + 1, ..flow.clone() };
        batch.push(Write::UpdateFlow { flow: next.clone(), expected_version: flow.version }).push(audit(
            now,
            flow.user_id,
            "select_mfa",
            "success",
            &ctx,
            serde_json::json!({"flow_id": flow.id, "method": method.as_str()}),
        ));
        self.commit(batch, flow.id).await?;
        let fresh = self.store.flow(flow.id).await?.unwrap_or(next);
        Ok(Self::outcome(fresh, vec![StepEvent { step, outcome: "issued" }]))
    }

    /// `sms_code` / `email_code` at sign-in.
    pub(crate) async fn oob_sign_in(
        &self,
        flow: Flow,
        given: SecretString,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let FlowState::AwaitingMfa { method: Some(method), code, then_new_password, recovery, .. } = flow.state.clone()
        else {
            return Err(AuthError::StepMismatch { expected: flow.state.step_name() });
        };
        // A new-device sign-in for an unknown account has no user: its code never matches.
        let user = self.user_of(&flow).await?;
        let key = user.as_ref().map(|u| u.username_canonical.clone());
        // A recovery's first code proves a channel, like a reset or confirmation code (`code`
        // counter); every later proof counts with sign-in's second factors (`otp`).
        let counter = if recovery.is_some_and(|r| r.verified.is_empty()) { CODE } else { OTP };
        let plain =
            matches!(&flow.state, FlowState::AwaitingMfa { new_device: None, recovery: None, step_up: None, .. });
        if let Some(user) = user
            .as_ref()
            .filter(|_| plain && !then_new_password && self.hooks.policy(Hook::CustomAccessToken).is_none())
        {
            return self.oob_sign_in_at_once(&flow, user, method, code.as_ref(), &given, now, &ctx).await;
        }
        if let Err(o) = self.check_code(&flow, code.as_ref(), &given, (key.as_deref(), counter), now, &ctx).await? {
            return Ok(o);
        }
        let (Some(user), Some(key)) = (user, key) else {
            return Err(AuthError::Internal("a right code in a flow without a user".into()));
        };
        let mut batch = self.oob_used(&user, method, &key, counter, now).await?;
        let (next, tokens) =
            self.after_second_factor(&flow, &user, method, then_new_password, now, &ctx, &mut batch).await?;
        self.commit(batch, flow.id).await?;
        Ok(FlowOutcome::verified(next, tokens, state_step_of(method)))
    }

    /// A plain sign-in's `sms_code` or `email_code` step as one store write (issue 17), as
    /// `totp_sign_in_at_once` makes a TOTP step: the code is checked first, the sign-in's writes
    /// are built whatever the code and made in the transaction that counts the attempt, only if
    /// the count grants it; the tokens are signed after the commit.
    #[allow(clippy::too_many_arguments)] // the step's facts: no natural grouping
    async fn oob_sign_in_at_once(
        &self,
        flow: &Flow,
        user: &User,
        method: MfaMethod,
        code: Option<&CodeChallenge>,
        given: &SecretString,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let step = flow.state.step_name();
        let right = self.code_is_right(flow, code, given, now);
        let key = &user.username_canonical;
        let mut batch = self.oob_used(user, method, key, OTP, now).await?;
        let amr = ["pwd", self.amr_of(method)];
        let (session, refresh) = self.sessions().open_session(flow.id, user, &amr, None, now, ctx, &mut batch);
        let done = FlowState::Completed { session_id: Some(session.id) };
        let next = self.signed_in(flow, user, method, done, now, ctx, &mut batch);
        let account = self.code_counter(Some(key), OTP, now);
        let reserved = self.reserve_and_apply(flow.id, account, batch, right).await?;
        let attempts = match self.reserved(flow, step, reserved.reservation).await? {
            Ok(n) => n,
            Err(o) => return Ok(o),
        };
        match reserved.applied {
            None => return self.refuse(flow, step, attempts, false, now, ctx).await,
            Some(applied) => self.committed(applied, flow.id).await?,
        }
        let tokens = self.sessions().tokens_for(&session, user, refresh, now, "sign_in").await?;
        Ok(FlowOutcome::verified(next, Some(tokens), state_step_of(method)))
    }

    /// The writes of a right SMS or email code: the account's `counter` cleared, the factor used.
    async fn oob_used(
        &self,
        user: &User,
        method: MfaMethod,
        key: &str,
        counter: &str,
        now: OffsetDateTime,
    ) -> Result<Batch, AuthError> {
        let kind = if method == MfaMethod::Sms { SMS } else { EMAIL };
        let factor = self.store.factors(user.id).await?.into_iter().find(|f| f.kind == kind && f.state == ACTIVE);
        let mut batch = Batch::new();
        batch.push(Write::ClearFailures { key: key.to_owned(), kind: counter.into() });
        if let Some(f) = factor {
            batch.push(Write::TouchFactor { id: f.id, at: now });
        }
        Ok(batch)
    }

    /// The sign-in after a verified second factor: a session, or the new-password step first.
    /// Pushes the session and the flow transition onto `batch`.
    #[allow(clippy::too_many_arguments)] // the flow's facts, the batch it adds to: no natural grouping
    pub(crate) async fn after_second_factor(
        &self,
        flow: &Flow,
        user: &User,
        method: MfaMethod,
        then_new_password: bool,
        now: OffsetDateTime,
        ctx: &ClientContext,
        batch: &mut Batch,
    ) -> Result<(Flow, Option<proto::Tokens>), AuthError> {
        let amr = [self.amr_of(method)];
        self.after_proof(flow, user, method, &amr, then_new_password, now, ctx, batch).await
    }

    /// As `after_second_factor`, with the `amr` values the proof gave (a passkey gives its key
    /// class and, when its authenticator verified the user, `user`).
    #[allow(clippy::too_many_arguments)] // the flow's facts, the batch it adds to: no natural grouping
    pub(crate) async fn after_proof(
        &self,
        flow: &Flow,
        user: &User,
        method: MfaMethod,
        proof: &[&str],
        then_new_password: bool,
        now: OffsetDateTime,
        ctx: &ClientContext,
        batch: &mut Batch,
    ) -> Result<(Flow, Option<proto::Tokens>), AuthError> {
        let first = proof.first().copied().unwrap_or_else(|| self.amr_of(method));
        if let FlowState::AwaitingMfa { new_device: Some(nd), .. } = &flow.state {
            return Ok(self.new_device_next(flow, method, first, nd, now, ctx, batch));
        }
        if let FlowState::AwaitingMfa { recovery: Some(rec), .. } = &flow.state {
            return self.recovery_next(flow, user, method, first, rec, now, ctx, batch).await;
        }
        if let FlowState::AwaitingMfa { step_up: Some(su), .. } = &flow.state {
            if su.action.is_some() {
                // An action is approved by the phone only, and its JWT is issued by `settle_push`.
                return Err(AuthError::Internal("an action's step-up completes by push approval".into()));
            }
            let (next, tokens, _) =
                self.finish_step_up(flow, user, proof, Some(method.as_str()), su, now, ctx, batch).await?;
            return Ok((next, tokens));
        }
        let amr: Vec<&str> = ["pwd"].into_iter().chain(proof.iter().copied()).collect();
        let (state, tokens) = if then_new_password {
            (
                FlowState::AwaitingNewPassword { amr: amr.iter().map(|s| (*s).to_owned()).collect(), recovery: None },
                None,
            )
        } else {
            let (session, tokens) = self.sessions().new_session(flow.id, user, &amr, None, now, ctx, batch).await?;
            (FlowState::Completed { session_id: Some(session.id) }, Some(tokens))
        };
        Ok((self.signed_in(flow, user, method, state, now, ctx, batch), tokens))
    }

    /// A sign-in's move to `state` after a verified second factor, pushed onto `batch` with its
    /// audit event.
    #[allow(clippy::too_many_arguments)] // the flow's facts, the batch it adds to: no natural grouping
    fn signed_in(
        &self,
        flow: &Flow,
        user: &User,
        method: MfaMethod,
        state: FlowState,
        now: OffsetDateTime,
        ctx: &ClientContext,
        batch: &mut Batch,
    ) -> Flow {
        let next = Flow { state, version: flow.version + 1, ..flow.clone() };
        batch.push(Write::UpdateFlow { flow: next.clone(), expected_version: flow.version }).push(audit(
            now,
            Some(user.id),
            state_step_of(method),
            "success",
            ctx,
            serde_json::json!({"flow_id": flow.id, "method": method.as_str()}),
        ));
        next
    }

    /// A new-device sign-in after one of its proofs: after the SMS code, the second proof
    /// (`select_mfa` among what the account has; denied if it has none); after that,
    /// `enroll_device`. Never a session before the device is enrolled.
    #[allow(clippy::too_many_arguments)] // the flow's facts, the batch it adds to: no natural grouping
    fn new_device_next(
        &self,
        flow: &Flow,
        method: MfaMethod,
        amr: &str,
        nd: &NewDevice,
        now: OffsetDateTime,
        ctx: &ClientContext,
        batch: &mut Batch,
    ) -> (Flow, Option<proto::Tokens>) {
        let mut verified = nd.verified.clone();
        verified.push(amr.to_owned());
        let state = if nd.verified.is_empty() {
            if nd.second_proofs.is_empty() {
                FlowState::Denied { reason: DenialReason::Denied }
            } else {
                FlowState::AwaitingMfa {
                    method: None,
                    methods: nd.second_proofs.clone(),
                    code: None,
                    then_new_password: false,
                    new_device: Some(NewDevice { verified, second_proofs: nd.second_proofs.clone() }),
                    push: None,
                    recovery: None,
                    step_up: None,
                    custom: None,
                    passkey: None,
                }
            }
        } else {
            FlowState::AwaitingDeviceEnrollment {
                amr: verified,
                recovery: None,
                device_id: DeviceId::new(),
                nonce: random_token(self.rng.as_ref(), 32).expose().to_owned(),
            }
        };
        let outcome = if matches!(state, FlowState::Denied { .. }) { "no_second_proof" } else { "success" };
        let next = Flow { state, version: flow.version + 1, ..flow.clone() };
        batch.push(Write::UpdateFlow { flow: next.clone(), expected_version: flow.version }).push(audit(
            now,
            flow.user_id,
            state_step_of(method),
            outcome,
            ctx,
            serde_json::json!({"flow_id": flow.id, "method": method.as_str(), "new_device": true}),
        ));
        (next, None)
    }

    /// `recovery_code` at sign-in. The conditional update that spends the code is the only
    /// check, so 20 parallel submissions of one code yield one success (checklist REC-3).
    pub(crate) async fn recovery_sign_in(
        &self,
        flow: Flow,
        then_new_password: bool,
        given: SecretString,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let step = "recovery_code";
        let user = self.user_of(&flow).await?.ok_or(AuthError::FlowExpired)?;
        let attempts = match self.reserve_attempt(&flow, step, Some(&user.username_canonical), OTP, now).await? {
            Ok(n) => n,
            Err(o) => return Ok(o),
        };
        let mac = self.keys.mac("recovery", &user.id.to_string(), &normalize_recovery_code(given.expose()));
        let codes = self.store.recovery_codes(user.id).await?;
        let left = codes.iter().filter(|c| c.used_at.is_none() && c.mac != mac).count();
        let mut batch = Batch::new();
        batch
            .push(Write::UseRecoveryCode { user_id: user.id, mac: mac.clone(), at: now })
            .push(Write::ClearFailures { key: user.username_canonical.clone(), kind: OTP.into() });
        let (next, tokens) = self
            .after_second_factor(&flow, &user, MfaMethod::RecoveryCode, then_new_password, now, &ctx, &mut batch)
            .await?;
        // Checklist REC-4: the user hears of every use, with what is left and how to renew.
        let left = left.to_string();
        let (subject, body) = self.text(user.profile.locale.as_deref(), "recovery_code_used", &[("left", &left)]);
        for message in self.notification(&user, &subject, &body, now)? {
            batch.push(Write::Enqueue(message));
        }
        match self.apply(batch).await {
            Ok(()) => {}
            Err(StoreError::Conflict("recovery_code")) => {
                let replay = codes.iter().any(|c| c.mac == mac);
                return self.refuse(&flow, step, attempts, replay, now, &ctx).await;
            }
            Err(StoreError::Conflict("flow")) => return Err(AuthError::FlowCompleted),
            Err(e) => return Err(e.into()),
        }
        Ok(FlowOutcome::verified(next, tokens, step))
    }

    pub(crate) async fn totp_sign_in(
        &self,
        flow: Flow,
        then_new_password: bool,
        given: SecretString,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let plain =
            matches!(&flow.state, FlowState::AwaitingMfa { new_device: None, recovery: None, step_up: None, .. });
        if plain && !then_new_password && self.hooks.policy(Hook::CustomAccessToken).is_none() {
            return self.totp_sign_in_at_once(flow, given, now, ctx).await;
        }
        let found = match self.check_totp(&flow, None, &given, now, &ctx).await? {
            Ok(found) => found,
            Err(o) => return Ok(o),
        };
        let mut batch = Batch(found.accepted(now));
        let (next, tokens) = self
            .after_second_factor(&flow, &found.user, MfaMethod::Totp, then_new_password, now, &ctx, &mut batch)
            .await?;
        if let Some(refused) = self.commit_totp(batch, &flow, found.attempts, now, &ctx).await? {
            return Ok(refused);
        }
        Ok(FlowOutcome::verified(next, tokens, "totp_code"))
    }

    /// A plain sign-in's `totp_code` step as one store write (issue 17): the code is checked
    /// first, and the sign-in's writes are made in the transaction that counts its attempt, only
    /// if the count grants it ([`crate::store::Store::reserve_attempt_and_apply`]) — no answer
    /// takes effect without its attempt counted, and on SQLite the step costs one commit where it
    /// cost two.
    ///
    /// The sign-in's writes are built whatever the code, and nothing leaves the batch before the
    /// commit (the tokens are signed after it; no hook is asked: with a `custom_access_token`
    /// hook the step takes `check_totp`'s way), so the time before the count says nothing about
    /// the code to a client whose attempts are spent or whose account is locked.
    async fn totp_sign_in_at_once(
        &self,
        flow: Flow,
        given: SecretString,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let step = flow.state.step_name();
        let user = self.user_of(&flow).await?.ok_or(AuthError::FlowExpired)?;
        let factor = self.totp_factor(&user, None).await?;
        let matched = self.totp_matches(&factor, &given, now)?;
        let found = TotpMatch { user, factor, step: matched.unwrap_or(0), attempts: 0 };
        let mut batch = Batch(found.accepted(now));
        let amr = ["pwd", self.amr_of(MfaMethod::Totp)];
        let (session, refresh) = self.sessions().open_session(flow.id, &found.user, &amr, None, now, &ctx, &mut batch);
        let done = FlowState::Completed { session_id: Some(session.id) };
        let next = self.signed_in(&flow, &found.user, MfaMethod::Totp, done, now, &ctx, &mut batch);
        let account = self.code_counter(Some(&found.user.username_canonical), OTP, now);
        let reserved = self.reserve_and_apply(flow.id, account, batch, matched.is_ok()).await?;
        let attempts = match self.reserved(&flow, step, reserved.reservation).await? {
            Ok(n) => n,
            Err(o) => return Ok(o),
        };
        match reserved.applied {
            Some(Ok(())) => {}
            // Checklist TOTP-3: a replayed code is refused like a wrong one, but recorded as a replay.
            None => return self.refuse(&flow, step, attempts, matched == Err(true), now, &ctx).await,
            // A parallel request spent the same step first: this one is a replay.
            Some(Err(StoreError::Conflict("totp_step"))) => {
                return self.refuse(&flow, step, attempts, true, now, &ctx).await;
            }
            Some(Err(StoreError::Conflict("flow"))) => return Err(AuthError::FlowCompleted),
            Some(Err(e)) => return Err(e.into()),
        }
        let tokens = self.sessions().tokens_for(&session, &found.user, refresh, now, "sign_in").await?;
        Ok(FlowOutcome::verified(next, Some(tokens), "totp_code"))
    }
}

/// The step name of a second-factor method.
pub(crate) fn state_step_of(m: MfaMethod) -> &'static str {
    match m {
        MfaMethod::Totp => "totp_code",
        MfaMethod::Sms => "sms_code",
        MfaMethod::Email => "email_code",
        MfaMethod::RecoveryCode => "recovery_code",
        MfaMethod::PushApproval => "push_approval",
        MfaMethod::CustomChallenge => "custom_challenge",
        MfaMethod::Passkey => "passkey",
        _ => "select_mfa",
    }
}
