//! The signed-in user's account (`auth.account()`): who they are (`/v1/me`), their factors (the
//! list, removing one with the step-up it needs, the preferred method, a new set of recovery
//! codes) and their devices (`devices.rs`). Adding a factor is a flow (`flows/enroll.rs`); the
//! operator's actions are `admin.rs`. Every change is told to the account's verified channels.

use crate::auth::{Auth, Principal, audit};
use crate::clock::rfc3339;
use crate::error::AuthError;
use crate::factors::{ACTIVE, EMAIL, RECOVERY_CODES, SMS, TOTP, is_strong};
use crate::identity::{Email, Phone};
use crate::ids::FactorId;
use crate::model::*;
use crate::settings::MfaMode;
use crate::store::{Batch, Write};
use latchkey_proto as proto;
use latchkey_proto::MfaMethod;

pub mod admin;
mod delete;
mod devices;
mod events;
mod export;
pub(crate) mod import;
mod invite;
mod migration;
mod operator;
mod passkeys;
mod password;
mod profile;
mod remembered;
mod webhooks;

pub use admin::{AdminAction, AdminRole, Operator};
pub use import::{ImportRow, Imported};
pub use operator::{AuditFilter, FACTOR_FILTERS, UserFilter};
pub use webhooks::MAX_ENDPOINTS;

/// The signed-in user's account: a room of the service, borrowing its shared context.
pub struct Account<'a> {
    auth: &'a Auth,
}

impl Auth {
    /// The signed-in user's account: profile, factors, devices.
    pub fn account(&self) -> Account<'_> {
        Account { auth: self }
    }
}

impl Account<'_> {
    /// What the gravest changes need (a first password, deleting the account): a sign-in at
    /// `aal2` within `mfa.step_up_max_age_secs`, not flagged for a step-up (checklist SES-8).
    /// Otherwise `insufficient_user_authentication`, and the app steps up (`POST /v1/step-up`).
    pub(crate) fn require_recent_aal2(&self, p: &Principal) -> Result<(), AuthError> {
        let mfa = &self.auth.settings.mfa;
        let fresh = self.auth.now() - p.session.auth_time <= crate::auth::secs(mfa.step_up_max_age_secs);
        let level = crate::sessions::step_up_level(&p.session, mfa.require_phishing_resistant);
        if !fresh || level == "aal1" || p.session.step_up_required_at.is_some() {
            return Err(AuthError::InsufficientAuthentication { acr: "aal2", max_age: mfa.step_up_max_age_secs });
        }
        Ok(())
    }

    /// `POST /v1/me/recovery-codes`: a new set of ten, shown once, in force at once; the old set
    /// stops working.
    pub async fn regenerate_recovery_codes(
        &self,
        p: &Principal,
        ctx: ClientContext,
    ) -> Result<proto::RecoveryCodes, AuthError> {
        let codes = self.auth.new_recovery_codes(p).await?;
        let mut batch = Batch::new();
        self.auth.recovery_codes_writes(&p.user, &codes, self.auth.now(), &ctx, &mut batch).await?;
        self.auth.apply(batch).await?;
        Ok(proto::RecoveryCodes { codes })
    }

    /// `DELETE /v1/me/factors/{id}` (checklist LIFE-2): needs a fresh `aal2` sign-in; the last
    /// factor that gives `aal2` cannot go when policy requires MFA, and with it go the recovery
    /// codes that stood in for it.
    pub async fn remove_factor(&self, p: &Principal, id: FactorId, ctx: ClientContext) -> Result<(), AuthError> {
        let now = self.auth.now();
        let factors = self.auth.store.factors(p.user.id).await?;
        let factor = factors.iter().find(|f| f.id == id).ok_or(AuthError::NotFound)?;
        if factor.state == ACTIVE {
            self.auth.sessions().require_step_up(p, &factors)?;
        }
        let strong_left = factors.iter().any(|f| f.id != id && is_strong(&f.kind) && f.state == ACTIVE);
        if factor.state == ACTIVE
            && is_strong(&factor.kind)
            && !strong_left
            && self.auth.settings.mfa.mode == MfaMode::Required
        {
            return Err(AuthError::MfaRequired(
                "policy requires a second factor; add another one before removing this",
            ));
        }
        let batch = self.factor_removal(&p.user, &factors, factor, now, &ctx, None)?;
        self.auth.apply(batch).await?;
        Ok(())
    }

    /// The writes that remove `factor` from `user` (with the recovery codes when no strong
    /// factor is left) and tell the user; `admin` names the operator who reset it.
    pub(crate) fn factor_removal(
        &self,
        user: &User,
        factors: &[Factor],
        factor: &Factor,
        now: time::OffsetDateTime,
        ctx: &ClientContext,
        admin: Option<&str>,
    ) -> Result<Batch, AuthError> {
        let mut batch = Batch::new();
        // A factor reset forgets the remembered clients too (checklist SES-9): the next sign-in
        // of each proves a factor the account still has.
        let id = factor.id;
        let strong_left = factors.iter().any(|f| f.id != id && is_strong(&f.kind) && f.state == ACTIVE);
        batch.push(Write::DeleteFactor { id }).push(Write::ForgetUserRememberedClients {
            user_id: user.id,
            at: now,
            reason: "factor_removed".into(),
        });
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
        if method.is_some() && user.preferred_mfa == method {
            batch.push(Write::UpdateUser(User { preferred_mfa: None, updated_at: now, ..user.clone() }));
        }
        let mut detail = serde_json::json!({"factor_id": id, "type": factor.kind});
        if let Some(admin) = admin {
            detail["admin"] = admin.into();
        }
        batch.push(audit(now, Some(user.id), "factor_removed", "success", ctx, detail));
        let notices = if factor.state != ACTIVE {
            vec![]
        } else {
            let id = if admin.is_some() { "factor_reset" } else { "factor_removed" };
            let kind = factor.kind.replace('_', " ");
            let (subject, body) = self.auth.text(user.profile.locale.as_deref(), id, &[("factor", &kind)]);
            self.auth.notification(user, &subject, &body, now)?
        };
        for m in notices {
            batch.push(Write::Enqueue(m));
        }
        Ok(batch)
    }

    /// `PUT /v1/me/factors/preferred`: the method sign-in lists first.
    pub async fn set_preferred_mfa(
        &self,
        p: &Principal,
        method: MfaMethod,
        ctx: ClientContext,
    ) -> Result<(), AuthError> {
        let now = self.auth.now();
        let factors = self.auth.store.factors(p.user.id).await?;
        if method == MfaMethod::RecoveryCode || !self.auth.methods_of(&p.user, &factors).await?.contains(&method) {
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
        let (subject, body) =
            self.auth.text(p.user.profile.locale.as_deref(), "preferred_mfa", &[("method", method.as_str())]);
        for m in self.auth.notification(&p.user, &subject, &body, now)? {
            batch.push(Write::Enqueue(m));
        }
        self.auth.apply(batch).await?;
        Ok(())
    }

    /// `GET /v1/me/factors`. Never returns secret material.
    pub async fn factors(&self, p: &Principal) -> Result<proto::FactorList, AuthError> {
        self.factors_of(&p.user).await
    }

    /// A user's factors, described (for the user, the export and the operator).
    pub(crate) async fn factors_of(&self, u: &User) -> Result<proto::FactorList, AuthError> {
        let factors = self.auth.store.factors(u.id).await?;
        let remaining = if factors.iter().any(|f| f.kind == RECOVERY_CODES) {
            let codes = self.auth.store.recovery_codes(u.id).await?;
            Some(u32::try_from(codes.iter().filter(|c| c.used_at.is_none()).count()).unwrap_or(0))
        } else {
            None
        };
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

    /// `GET /v1/me`.
    pub fn me(&self, p: &Principal) -> proto::Me {
        proto::Me {
            id: p.user.id.to_string(),
            username: p.user.username.clone(),
            email: p.user.email.clone(),
            email_verified: p.user.email_verified,
            phone: p.user.phone.clone(),
            phone_verified: p.user.phone_verified,
            status: p.user.status.as_str().into(),
            session_id: p.session.id.to_string(),
            acr: p.claims.acr.clone(),
            amr: p.claims.amr.clone(),
            name: p.user.profile.name.clone(),
            locale: p.user.profile.locale.clone(),
            zoneinfo: p.user.profile.zoneinfo.clone(),
            picture: p.user.profile.picture.clone(),
            attributes: p.user.profile.custom.clone(),
        }
    }
}
