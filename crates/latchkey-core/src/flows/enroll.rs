//! Enrolling a factor (`POST /v1/me/factors`) as an `enroll` flow: an authenticator app
//! (`setup_totp`), a phone or address (`verify_code`, then `verification.rs`), a set of recovery
//! codes (`save_recovery_codes`); and checking a TOTP code once per time step, which a sign-in's
//! `totp_code` step (`second_factor.rs`) uses too.

use crate::auth::{Auth, FlowOutcome, OTP, Principal, StepEvent, audit};
use crate::error::AuthError;
use crate::factors::recovery_codes::{RECOVERY_CODE_COUNT, new_recovery_code, normalize_recovery_code};
use crate::factors::totp::{self, TotpParams};
use crate::factors::{ACTIVE, EMAIL, PENDING, RECOVERY_CODES, SMS, TOTP, is_strong};
use crate::identity::{Email, Phone};
use crate::ids::{FactorId, FlowId};
use crate::model::*;
use crate::secret::{SecretString, random_bytes};
use crate::settings::MfaMode;
use crate::store::{Batch, StoreError, Write};
use latchkey_proto as proto;
use latchkey_proto::{Channel, MfaMethod};
use time::OffsetDateTime;

impl Auth {
    /// `POST /v1/me/factors`: an `enroll` flow — `setup_totp` for `totp`, `verify_code` for `sms`
    /// and `email`. Needs a sign-in from the last `step_up_max_age_secs`, at `aal2` once the
    /// account has a factor that gives it (checklist LIFE-1).
    pub async fn enroll(
        &self,
        p: &Principal,
        req: &proto::EnrollFactorRequest,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        if self.settings.mfa.mode == MfaMode::Off {
            return Err(AuthError::InvalidRequest("second factors are turned off by policy".into()));
        }
        if req.attested.is_some() && req.kind != "passkey" {
            return Err(AuthError::InvalidRequest("attested: only for a passkey".into()));
        }
        match req.kind.as_str() {
            TOTP => {}
            SMS | EMAIL => return self.enroll_destination(p, req, ctx).await,
            RECOVERY_CODES => return self.enroll_recovery_codes(p, ctx).await,
            "passkey" => return self.enroll_passkey(p, req.attested.unwrap_or(false), ctx).await,
            _ => {
                return Err(AuthError::InvalidRequest(
                    "type must be totp, sms, email, recovery_codes or passkey".into(),
                ));
            }
        }
        if !self.settings.mfa.allows(MfaMethod::Totp) {
            return Err(AuthError::InvalidRequest("policy does not allow authenticator apps".into()));
        }
        let now = self.now();
        let factors = self.store.factors(p.user.id).await?;
        self.sessions().require_step_up(p, &factors)?;
        if factors.iter().any(|f| f.kind == TOTP && f.state == ACTIVE) {
            return Err(AuthError::InvalidRequest("an authenticator app is already enrolled".into()));
        }
        let (factor, state) = self.new_totp_enrolment(&p.user, now)?;
        // An earlier enrolment left unfinished is superseded.
        let mut writes: Vec<Write> = factors
            .iter()
            .filter(|f| f.kind == TOTP && f.state == PENDING)
            .map(|f| Write::DeleteFactor { id: f.id })
            .collect();
        writes.push(Write::InsertFactor(factor));
        self.start_enrollment(p, FlowId::new(), state, TOTP, writes, now, &ctx).await
    }

    /// Store a new `enroll` flow at `state` with `writes` and its audit event; the answer shows
    /// the flow's first step.
    #[allow(clippy::too_many_arguments)] // what is enrolled and how: all needed, none derivable
    pub(crate) async fn start_enrollment(
        &self,
        p: &Principal,
        flow_id: FlowId,
        state: FlowState,
        kind: &str,
        mut writes: Vec<Write>,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let flow = self.new_flow(flow_id, FlowKind::Enroll, Some(p.user.id), state, now, ctx.clone());
        writes.push(Write::InsertFlow(flow.clone()));
        writes.push(audit(
            now,
            Some(p.user.id),
            "enroll",
            "started",
            ctx,
            serde_json::json!({"flow_id": flow.id, "type": kind}),
        ));
        self.apply(Batch(writes)).await?;
        let step = flow.state.step_name();
        Ok(Self::outcome(flow, vec![StepEvent { step, outcome: "issued" }]))
    }

    /// A pending TOTP factor with a fresh 160-bit secret (RFC 4226 R6; NIST §3.1.4.1 asks for at
    /// least 112), sealed with the data key, and the `setup_totp` state that shows it.
    pub(crate) fn new_totp_enrolment(
        &self,
        user: &User,
        now: OffsetDateTime,
    ) -> Result<(Factor, FlowState), AuthError> {
        let id = FactorId::new();
        let secret = random_bytes(self.rng.as_ref(), 20);
        let sealed = self.keys.seal(self.rng.as_ref(), &id.to_string(), &secret)?;
        let factor = Factor {
            id,
            user_id: user.id,
            kind: TOTP.into(),
            state: PENDING.into(),
            secret_sealed: Some(sealed.clone()),
            last_step: None,
            created_at: now,
            last_used_at: None,
        };
        Ok((
            factor,
            FlowState::AwaitingTotpSetup { factor_id: id, account: user.username.clone(), secret_sealed: sealed },
        ))
    }

    /// Reserve an attempt and check a TOTP code. `Ok(Ok(found))`: the code matches a step after the
    /// factor's last one; `Ok(Err(answer))`: refused (wrong, replayed, locked).
    pub(crate) async fn check_totp(
        &self,
        flow: &Flow,
        factor_id: Option<FactorId>,
        given: &SecretString,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<Result<TotpMatch, FlowOutcome>, AuthError> {
        let step = flow.state.step_name();
        let user = self.user_of(flow).await?.ok_or(AuthError::FlowExpired)?;
        let attempts = match self.reserve_attempt(flow, step, Some(&user.username_canonical), OTP, now).await? {
            Ok(n) => n,
            Err(o) => return Ok(Err(o)),
        };
        let factor = self.totp_factor(&user, factor_id).await?;
        match self.totp_matches(&factor, given, now)? {
            Ok(matched) => Ok(Ok(TotpMatch { user, factor, step: matched, attempts })),
            // Checklist TOTP-3: a replayed code is refused like a wrong one, but recorded as a replay.
            Err(replay) => Ok(Err(self.refuse(flow, step, attempts, replay, now, ctx).await?)),
        }
    }

    /// The authenticator app `factor_id` names (an enrolment's pending one) or, without one, the
    /// account's active one (a sign-in's).
    pub(crate) async fn totp_factor(&self, user: &User, factor_id: Option<FactorId>) -> Result<Factor, AuthError> {
        let factor = self.store.factors(user.id).await?.into_iter().find(|f| match factor_id {
            Some(id) => f.id == id,
            None => f.kind == TOTP && f.state == ACTIVE,
        });
        factor.ok_or(AuthError::FlowExpired)
    }

    /// `given` against `factor` at `now`: `Ok(step)`, it matches a step after the factor's last
    /// one; `Err(replay)`, it does not, and `replay` says whether it matches one already spent.
    /// Both checks are made whatever the code, so the time taken says nothing about it.
    pub(crate) fn totp_matches(
        &self,
        factor: &Factor,
        given: &SecretString,
        now: OffsetDateTime,
    ) -> Result<Result<u64, bool>, AuthError> {
        let secret = factor
            .secret_sealed
            .as_deref()
            .ok_or_else(|| AuthError::Internal("totp factor without a secret".into()))
            .and_then(|s| Ok(self.keys.open(&factor.id.to_string(), s)?))?;
        let params = TotpParams::default();
        let t = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        let last = factor.last_step.and_then(|s| u64::try_from(s).ok());
        let fresh = totp::verify(&secret, given.expose(), t, last, &params);
        let any = totp::verify(&secret, given.expose(), t, None, &params);
        Ok(fresh.ok_or(any.is_some()))
    }

    /// Commit a TOTP success; a parallel request that spent the same step first makes this one a
    /// replay (refused like a wrong code).
    pub(crate) async fn commit_totp(
        &self,
        batch: Batch,
        flow: &Flow,
        attempts: u32,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<Option<FlowOutcome>, AuthError> {
        match self.apply(batch).await {
            Err(StoreError::Conflict("totp_step")) => {
                Ok(Some(self.refuse(flow, flow.state.step_name(), attempts, true, now, ctx).await?))
            }
            // A parallel enrolment activated another authenticator app first.
            Err(StoreError::Conflict("factor")) => {
                Err(AuthError::InvalidRequest("an authenticator app is already enrolled".into()))
            }
            Err(StoreError::Conflict("flow")) => Err(AuthError::FlowCompleted),
            Err(e) => Err(e.into()),
            Ok(()) => Ok(None),
        }
    }

    pub(crate) async fn confirm_totp_setup(
        &self,
        flow: Flow,
        factor_id: FactorId,
        given: SecretString,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let found = match self.check_totp(&flow, Some(factor_id), &given, now, &ctx).await? {
            Ok(found) => found,
            Err(o) => return Ok(o),
        };
        let (user, factor) = (&found.user, &found.factor);
        let mut batch = Batch(found.accepted(now));
        batch.push(Write::ActivateFactor { id: factor.id });
        // Inside a sign-in (policy requires MFA), the first code also completes the sign-in.
        let (done, tokens) = if flow.kind == FlowKind::SignIn {
            self.after_second_factor(&flow, user, MfaMethod::Totp, user.must_change_password, now, &ctx, &mut batch)
                .await?
        } else {
            let done =
                Flow { state: FlowState::Completed { session_id: None }, version: flow.version + 1, ..flow.clone() };
            batch.push(Write::UpdateFlow { flow: done.clone(), expected_version: flow.version });
            (done, None)
        };
        batch.push(audit(
            now,
            Some(user.id),
            "factor_added",
            "success",
            &ctx,
            serde_json::json!({"factor_id": factor.id, "type": TOTP}),
        ));
        // Checklist LIFE-1: every new factor is announced to the account's address.
        for message in {
            let (subject, body) = self.text(user.profile.locale.as_deref(), "totp_added", &[]);
            self.notification(user, &subject, &body, now)?
        } {
            batch.push(Write::Enqueue(message));
        }
        if let Some(refused) = self.commit_totp(batch, &flow, found.attempts, now, &ctx).await? {
            return Ok(refused);
        }
        Ok(FlowOutcome::verified(done, tokens, "setup_totp"))
    }

    /// `POST /v1/me/factors` for `sms` or `email`: an `enroll` flow whose step is `verify_code`.
    pub(crate) async fn enroll_destination(
        &self,
        p: &Principal,
        req: &proto::EnrollFactorRequest,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let now = self.now();
        let user = &p.user;
        let (channel, value, masked, current) = if req.kind == SMS {
            if !self.settings.mfa.allows(MfaMethod::Sms) {
                return Err(AuthError::InvalidRequest("policy does not allow SMS codes".into()));
            }
            let raw = req.phone.clone().or_else(|| user.phone.clone()).unwrap_or_default();
            let phone = Phone::parse(&raw).map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
            if !self.settings.limits.sms_allowed(phone.as_str()) {
                return Err(AuthError::InvalidRequest("text messages cannot be sent to this phone number".into()));
            }
            (Channel::Sms, phone.as_str().to_owned(), phone.masked(), user.phone.as_deref())
        } else {
            if !self.settings.mfa.allows(MfaMethod::Email) {
                return Err(AuthError::InvalidRequest("policy does not allow email codes".into()));
            }
            let raw = req.email.clone().or_else(|| user.email.clone()).unwrap_or_default();
            let email = Email::parse(&raw).map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
            (Channel::Email, email.as_str().to_owned(), email.masked(), user.email.as_deref())
        };
        let factors = self.store.factors(user.id).await?;
        self.sessions().require_step_up(p, &factors)?;
        if factors.iter().any(|f| f.kind == req.kind && f.state == ACTIVE) && current == Some(value.as_str()) {
            return Err(AuthError::InvalidRequest(format!("{} codes already go to this destination", req.kind)));
        }
        let flow_id = FlowId::new();
        let (state, message) = self.verification_flow(flow_id, user, (channel, value, masked), now, &ctx).await?;
        self.start_enrollment(p, flow_id, state, &req.kind, vec![Write::Enqueue(message)], now, &ctx).await
    }

    /// `POST /v1/me/factors {"type":"recovery_codes"}`: an `enroll` flow that shows a new set at
    /// `save_recovery_codes`; the set replaces the old one only when the app confirms it was saved.
    pub(crate) async fn enroll_recovery_codes(
        &self,
        p: &Principal,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let codes = self.new_recovery_codes(p).await?;
        let now = self.now();
        let flow_id = FlowId::new();
        let json = serde_json::to_vec(&codes).map_err(|e| AuthError::Internal(e.to_string()))?;
        let codes_sealed = self.keys.seal(self.rng.as_ref(), &flow_id.to_string(), &json)?;
        let state = FlowState::AwaitingRecoveryCodesSaved { codes_sealed };
        self.start_enrollment(p, flow_id, state, RECOVERY_CODES, vec![], now, &ctx).await
    }

    /// `save_recovery_codes`: the app confirms the user saved the set; it now replaces the old one.
    pub(crate) async fn save_recovery_codes(
        &self,
        flow: Flow,
        sealed: String,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let user = self.user_of(&flow).await?.ok_or(AuthError::FlowExpired)?;
        let codes = self.sealed_recovery_codes(&flow, &sealed)?;
        let mut batch = Batch::new();
        self.recovery_codes_writes(&user, &codes, now, &ctx, &mut batch).await?;
        let done = Flow { state: FlowState::Completed { session_id: None }, version: flow.version + 1, ..flow.clone() };
        batch.push(Write::UpdateFlow { flow: done.clone(), expected_version: flow.version });
        self.commit(batch, flow.id).await?;
        Ok(Self::outcome(done, vec![StepEvent { step: "save_recovery_codes", outcome: "verified" }]))
    }

    /// A fresh set, after the checks: policy allows them, a TOTP or SMS factor exists for them to
    /// stand in for, and the sign-in is a recent `aal2` one (checklist REC-4, LIFE-1).
    pub(crate) async fn new_recovery_codes(&self, p: &Principal) -> Result<Vec<String>, AuthError> {
        if !self.settings.mfa.allows(MfaMethod::RecoveryCode) {
            return Err(AuthError::InvalidRequest("policy does not allow recovery codes".into()));
        }
        let factors = self.store.factors(p.user.id).await?;
        if !factors.iter().any(|f| is_strong(&f.kind) && f.state == ACTIVE) {
            return Err(AuthError::InvalidRequest(
                "add an authenticator app or a phone first; recovery codes stand in for one".into(),
            ));
        }
        self.sessions().require_step_up(p, &factors)?;
        Ok((0..RECOVERY_CODE_COUNT).map(|_| new_recovery_code(self.rng.as_ref())).collect())
    }

    /// The writes that put `codes` in force in place of any earlier set, with the audit event and
    /// the notice.
    pub(crate) async fn recovery_codes_writes(
        &self,
        user: &User,
        codes: &[String],
        now: OffsetDateTime,
        ctx: &ClientContext,
        batch: &mut Batch,
    ) -> Result<(), AuthError> {
        let macs = codes
            .iter()
            .map(|c| self.keys.mac("recovery", &user.id.to_string(), &normalize_recovery_code(c)))
            .collect();
        if !self.store.factors(user.id).await?.iter().any(|f| f.kind == RECOVERY_CODES) {
            batch.push(Write::InsertFactor(Factor {
                id: FactorId::new(),
                user_id: user.id,
                kind: RECOVERY_CODES.into(),
                state: ACTIVE.into(),
                secret_sealed: None,
                last_step: None,
                created_at: now,
                last_used_at: None,
            }));
        }
        batch.push(Write::ReplaceRecoveryCodes { user_id: user.id, macs, at: now }).push(audit(
            now,
            Some(user.id),
            "recovery_codes_generated",
            "success",
            ctx,
            serde_json::json!({"count": codes.len()}),
        ));
        let (subject, body) = self.text(user.profile.locale.as_deref(), "recovery_codes_new", &[]);
        for m in self.notification(user, &subject, &body, now)? {
            batch.push(Write::Enqueue(m));
        }
        Ok(())
    }
}

/// A TOTP code that matched: whose, which factor, the step to consume, the attempt it used.
pub(crate) struct TotpMatch {
    pub(crate) user: User,
    pub(crate) factor: Factor,
    pub(crate) step: u64,
    pub(crate) attempts: u32,
}

impl TotpMatch {
    /// The writes every accepted code makes: spend its step (refused if a parallel request spent
    /// it first) and reset the account's TOTP failure counter.
    pub(crate) fn accepted(&self, now: OffsetDateTime) -> Vec<Write> {
        vec![
            Write::ConsumeTotpStep { id: self.factor.id, step: i64::try_from(self.step).unwrap_or(i64::MAX), at: now },
            Write::ClearFailures { key: self.user.username_canonical.clone(), kind: OTP.into() },
        ]
    }
}
