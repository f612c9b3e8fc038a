//! The signed-in user's second factors: enrolling a phone or address, recovery codes, removing a
//! factor (with the step-up it needs), the preferred method, and the list.

use crate::auth::{Auth, FlowOutcome, Principal, StepEvent, audit, secs};
use crate::clock::rfc3339;
use crate::error::AuthError;
use crate::factors::recovery_codes::{RECOVERY_CODE_COUNT, new_recovery_code, normalize_recovery_code};
use crate::factors::{ACTIVE, EMAIL, RECOVERY_CODES, SMS, TOTP, is_strong};
use crate::identity::{Email, Phone};
use crate::ids::{FactorId, FlowId};
use crate::model::*;
use crate::settings::MfaMode;
use crate::store::{Batch, Write};
use latchkey_proto as proto;
use latchkey_proto::{Channel, MfaMethod};
use time::OffsetDateTime;

pub mod admin;

pub use admin::AdminAction;

impl Auth {
    /// Checklist LIFE-1/LIFE-2: changing factors needs a sign-in within `step_up_max_age_secs`,
    /// at `aal2` once the account has a factor that can give it.
    pub(crate) fn require_step_up(&self, p: &Principal, factors: &[Factor]) -> Result<(), AuthError> {
        let max_age = self.settings.mfa.step_up_max_age_secs;
        let strong = factors.iter().any(|f| is_strong(&f.kind) && f.state == ACTIVE);
        let required = if strong { "aal2" } else { "aal1" };
        let fresh = self.now() - p.session.auth_time <= secs(max_age);
        if !fresh || (strong && p.session.acr == "aal1") {
            return Err(AuthError::InsufficientAuthentication { acr: required, max_age });
        }
        Ok(())
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
        self.require_step_up(p, &factors)?;
        if factors.iter().any(|f| f.kind == req.kind && f.state == ACTIVE) && current == Some(value.as_str()) {
            return Err(AuthError::InvalidRequest(format!("{} codes already go to this destination", req.kind)));
        }
        let flow_id = FlowId::new();
        let (state, message) = self.verification_flow(flow_id, user, (channel, value, masked), now, &ctx).await?;
        self.start_enrollment(p, flow_id, state, &req.kind, vec![Write::Enqueue(message)], now, &ctx).await
    }

    /// `POST /v1/me/recovery-codes`: a new set of ten, shown once, in force at once; the old set
    /// stops working.
    pub async fn regenerate_recovery_codes(
        &self,
        p: &Principal,
        ctx: ClientContext,
    ) -> Result<proto::RecoveryCodes, AuthError> {
        let codes = self.new_recovery_codes(p).await?;
        let mut batch = Batch::new();
        self.recovery_codes_writes(&p.user, &codes, self.now(), &ctx, &mut batch).await?;
        self.store.apply(batch).await?;
        self.outbox_wakeup.notify_one();
        Ok(proto::RecoveryCodes { codes })
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

    /// The codes a `save_recovery_codes` step shows.
    pub(crate) fn sealed_recovery_codes(&self, flow: &Flow, sealed: &str) -> Result<Vec<String>, AuthError> {
        let json = self.keys.open(&flow.id.to_string(), sealed)?;
        serde_json::from_slice(&json).map_err(|e| AuthError::Internal(e.to_string()))
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
        self.outbox_wakeup.notify_one();
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
        self.require_step_up(p, &factors)?;
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
        for m in self.notification(
            user,
            "New recovery codes",
            "A new set of recovery codes was generated for your account; the previous codes no longer work. If this was not you, reset your password and contact support.",
            now,
        )? {
            batch.push(Write::Enqueue(m));
        }
        Ok(())
    }

    /// `DELETE /v1/me/factors/{id}` (checklist LIFE-2): needs a fresh `aal2` sign-in; the last
    /// factor that gives `aal2` cannot go when policy requires MFA, and with it go the recovery
    /// codes that stood in for it.
    pub async fn remove_factor(&self, p: &Principal, id: FactorId, ctx: ClientContext) -> Result<(), AuthError> {
        let now = self.now();
        let factors = self.store.factors(p.user.id).await?;
        let factor = factors.iter().find(|f| f.id == id).ok_or(AuthError::NotFound)?;
        if factor.state == ACTIVE {
            self.require_step_up(p, &factors)?;
        }
        let strong_left = factors.iter().any(|f| f.id != id && is_strong(&f.kind) && f.state == ACTIVE);
        if factor.state == ACTIVE
            && is_strong(&factor.kind)
            && !strong_left
            && self.settings.mfa.mode == MfaMode::Required
        {
            return Err(AuthError::MfaRequired(
                "policy requires a second factor; add another one before removing this",
            ));
        }
        let mut batch = Batch::new();
        batch.push(Write::DeleteFactor { id });
        if !strong_left && is_strong(&factor.kind) {
            for f in factors.iter().filter(|f| f.kind == RECOVERY_CODES) {
                batch.push(Write::DeleteFactor { id: f.id });
            }
        }
        let method = match factor.kind.as_str() {
            TOTP => Some(MfaMethod::Totp),
            SMS => Some(MfaMethod::Sms),
            EMAIL => Some(MfaMethod::Email),
            _ => None,
        };
        if method.is_some() && p.user.preferred_mfa == method {
            batch.push(Write::UpdateUser(User { preferred_mfa: None, updated_at: now, ..p.user.clone() }));
        }
        batch.push(audit(
            now,
            Some(p.user.id),
            "factor_removed",
            "success",
            &ctx,
            serde_json::json!({"factor_id": id, "type": factor.kind}),
        ));
        let notices = if factor.state != ACTIVE {
            vec![]
        } else {
            self.notification(
                &p.user,
                "A second factor was removed",
                &format!(
                    "A second factor ({}) was removed from your account. If this was not you, reset your password and contact support.",
                    factor.kind.replace('_', " ")
                ),
                now,
            )?
        };
        for m in notices {
            batch.push(Write::Enqueue(m));
        }
        self.store.apply(batch).await?;
        self.outbox_wakeup.notify_one();
        Ok(())
    }

    /// `PUT /v1/me/factors/preferred`: the method sign-in lists first.
    pub async fn set_preferred_mfa(
        &self,
        p: &Principal,
        method: MfaMethod,
        ctx: ClientContext,
    ) -> Result<(), AuthError> {
        let now = self.now();
        let factors = self.store.factors(p.user.id).await?;
        if method == MfaMethod::RecoveryCode || !self.methods_of(&p.user, &factors).await?.contains(&method) {
            return Err(AuthError::InvalidRequest(format!("`{}` is not an enrolled method", method.as_str())));
        }
        let mut batch = Batch::new();
        batch.push(Write::UpdateUser(User { preferred_mfa: Some(method), updated_at: now, ..p.user.clone() })).push(
            audit(
                now,
                Some(p.user.id),
                "preferred_mfa",
                "success",
                &ctx,
                serde_json::json!({"method": method.as_str()}),
            ),
        );
        for m in self.notification(
            &p.user,
            "Your sign-in method changed",
            &format!(
                "Sign-in now asks for {} first. If this was not you, reset your password and contact support.",
                method.as_str()
            ),
            now,
        )? {
            batch.push(Write::Enqueue(m));
        }
        self.store.apply(batch).await?;
        self.outbox_wakeup.notify_one();
        Ok(())
    }

    /// `GET /v1/me/factors`. Never returns secret material.
    pub async fn factors(&self, p: &Principal) -> Result<proto::FactorList, AuthError> {
        let factors = self.store.factors(p.user.id).await?;
        let remaining = if factors.iter().any(|f| f.kind == RECOVERY_CODES) {
            let codes = self.store.recovery_codes(p.user.id).await?;
            Some(u32::try_from(codes.iter().filter(|c| c.used_at.is_none()).count()).unwrap_or(0))
        } else {
            None
        };
        let u = &p.user;
        Ok(proto::FactorList {
            factors: factors
                .into_iter()
                .map(|f| {
                    let method = match f.kind.as_str() {
                        TOTP => Some(MfaMethod::Totp),
                        SMS => Some(MfaMethod::Sms),
                        EMAIL => Some(MfaMethod::Email),
                        _ => None,
                    };
                    let destination = match f.kind.as_str() {
                        SMS => u.phone.as_deref().and_then(|p| Phone::parse(p).ok()).map(|p| p.masked()),
                        EMAIL => u.email.as_deref().and_then(|e| Email::parse(e).ok()).map(|e| e.masked()),
                        _ => None,
                    };
                    proto::FactorInfo {
                        id: f.id.to_string(),
                        remaining: if f.kind == RECOVERY_CODES { remaining } else { None },
                        preferred: method.is_some() && u.preferred_mfa == method,
                        destination,
                        kind: f.kind,
                        state: f.state,
                        created_at: rfc3339(f.created_at),
                        last_used_at: f.last_used_at.map(rfc3339),
                    }
                })
                .collect(),
        })
    }
}
