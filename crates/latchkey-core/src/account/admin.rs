//! The operator's actions on an account, by username (`auth.admin()`): disable, enable, unlock, revoke sessions, require a
//! password change.

use crate::auth::{Auth, CODE, OTP, PASSWORD, Principal, audit};
use crate::clock::rfc3339;
use crate::error::AuthError;
use crate::identity::lookup_key;
use crate::ids::UserId;
use crate::model::*;
use crate::store::{Batch, Write};
use latchkey_proto as proto;

/// The operator's actions on accounts: a room of the service, borrowing its shared context.
pub struct Admin<'a> {
    pub(super) auth: &'a Auth,
}

impl Auth {
    /// The operator's actions on accounts.
    pub fn admin(&self) -> Admin<'_> {
        Admin { auth: self }
    }
}

impl Admin<'_> {
    /// `GET /admin/v1/users/{username}`: the account, its factors, devices, remembered clients,
    /// live sessions and newest events.
    pub async fn show(&self, username: &str) -> Result<proto::AdminUser, AuthError> {
        let u = self.user(username).await?;
        let account = self.auth.account();
        Ok(proto::AdminUser {
            factors: account.factors_of(&u).await?,
            devices: account.devices_of(u.id).await?,
            sessions: self.auth.sessions().list_of(u.id, None).await?,
            recent_events: account.events_of(u.id, None, Some(50)).await?.events,
            id: u.id.to_string(),
            username: u.username,
            email: u.email,
            email_verified: u.email_verified,
            phone: u.phone,
            phone_verified: u.phone_verified,
            status: u.status.as_str().into(),
            must_change_password: u.must_change_password,
            admin_role: self.auth.store.admin_role(u.id).await?,
            name: u.profile.name,
            locale: u.profile.locale,
            zoneinfo: u.profile.zoneinfo,
            attributes: u.profile.custom,
            picture: u.profile.picture,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        })
    }

    /// Administrative changes to an account, by username.
    pub async fn update(
        &self,
        username: &str,
        action: AdminAction,
        by: &Operator,
        ctx: ClientContext,
    ) -> Result<(), AuthError> {
        by.may_change()?;
        let mut user = self.user(username).await?;
        let now = self.auth.now();
        let mut batch = Batch::new();
        let kind = match action {
            AdminAction::RequirePasswordChange => {
                user.must_change_password = true;
                "admin_require_password_change"
            }
            AdminAction::Disable => {
                user.status = UserStatus::Disabled;
                batch.push(Write::RevokeUserSessions { user_id: user.id, at: now, reason: "account_disabled".into() });
                "admin_disable"
            }
            AdminAction::Enable => {
                user.status = if user.email_verified || user.phone_verified {
                    UserStatus::Active
                } else {
                    UserStatus::Unconfirmed
                };
                "admin_enable"
            }
            AdminAction::RevokeSessions => {
                batch.push(Write::RevokeUserSessions { user_id: user.id, at: now, reason: "admin_revoke_all".into() });
                "admin_revoke_sessions"
            }
            AdminAction::Unlock => {
                for kind in [PASSWORD, CODE, OTP] {
                    batch.push(Write::ClearFailures { key: user.username_canonical.clone(), kind: kind.into() });
                }
                "admin_unlock"
            }
        };
        user.updated_at = now;
        batch.push(Write::UpdateUser(user.clone())).push(audit(
            now,
            Some(user.id),
            kind,
            "success",
            &ctx,
            serde_json::json!({"admin": by.name}),
        ));
        self.auth.apply(batch).await?;
        Ok(())
    }
}

/// Administrative actions on an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// The next sign-in must set a new password.
    RequirePasswordChange,
    /// Disable the account and end its sessions.
    Disable,
    /// Enable a disabled account.
    Enable,
    /// End every session.
    RevokeSessions,
    /// Clear the password and second-factor lockouts.
    Unlock,
}

/// What an admin may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRole {
    /// Everything.
    Admin,
    /// Look, never change.
    ReadOnly,
}

impl AdminRole {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Admin => "admin",
            AdminRole::ReadOnly => "read_only",
        }
    }
    /// From the wire or database name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(AdminRole::Admin),
            "read_only" => Some(AdminRole::ReadOnly),
            _ => None,
        }
    }
}

/// Who is acting on the admin API: the static token (automation) or an admin account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// How the audit log names them: `admin_token`, or the account's username.
    pub name: String,
    /// The account's id (none for the token).
    pub user_id: Option<UserId>,
    /// What they may do.
    pub role: AdminRole,
}

impl Operator {
    /// The static admin token: every action, named `admin_token` in the audit log.
    pub fn token() -> Self {
        Self { name: "admin_token".into(), user_id: None, role: AdminRole::Admin }
    }

    /// `Forbidden` unless the operator may change things.
    pub fn may_change(&self) -> Result<(), AuthError> {
        match self.role {
            AdminRole::Admin => Ok(()),
            AdminRole::ReadOnly => Err(AuthError::Forbidden),
        }
    }
}

impl Auth {
    /// The operator behind a signed-in session: an account with an admin role, signed in at
    /// `aal2` (a remembered client's key does not count) within `policy.admin.session_max_age_secs`,
    /// not flagged for a step-up. An account without a role is `Forbidden`; one whose session is
    /// not (or no longer) good enough is `insufficient_user_authentication`: sign in again.
    pub async fn operator(&self, p: &Principal) -> Result<Operator, AuthError> {
        let role = self.store.admin_role(p.user.id).await?.and_then(|r| AdminRole::parse(&r));
        let role = role.ok_or(AuthError::Forbidden)?;
        let max_age = self.settings.admin.session_max_age_secs;
        let fresh = self.now() - p.session.auth_time <= crate::auth::secs(max_age);
        let level = crate::sessions::step_up_level(&p.session, self.settings.mfa.require_phishing_resistant);
        if !fresh || level == "aal1" || p.session.step_up_required_at.is_some() {
            return Err(AuthError::InsufficientAuthentication { acr: "aal2", max_age });
        }
        Ok(Operator { name: p.user.username.clone(), user_id: Some(p.user.id), role })
    }
}

impl Admin<'_> {
    /// `PUT /admin/v1/users/{username}/role`: give an account an admin role, or take it away.
    pub async fn set_role(&self, username: &str, role: Option<AdminRole>, by: &Operator) -> Result<(), AuthError> {
        by.may_change()?;
        let user = self.user(username).await?;
        let now = self.auth.now();
        let detail = serde_json::json!({"role": role.map(AdminRole::as_str), "admin": by.name});
        self.auth
            .store
            .apply(Batch(vec![
                Write::SetAdminRole { user_id: user.id, role: role.map(|r| r.as_str().to_owned()), at: now },
                audit(now, Some(user.id), "admin_role", "success", &ClientContext::default(), detail),
            ]))
            .await?;
        Ok(())
    }
}

impl Admin<'_> {
    /// `DELETE /admin/v1/users/{username}/factors/{id}`: reset a lost factor. No step-up and no
    /// "last factor" guard: the user sets a factor up again at the next sign-in when policy
    /// requires one. The user is told, and the audit log names the admin.
    pub async fn reset_factor(
        &self,
        username: &str,
        id: &str,
        by: &Operator,
        ctx: ClientContext,
    ) -> Result<(), AuthError> {
        by.may_change()?;
        let user = self.user(username).await?;
        let id: crate::ids::FactorId = id.parse().map_err(|_| AuthError::NotFound)?;
        let factors = self.auth.store.factors(user.id).await?;
        let factor = factors.iter().find(|f| f.id == id).ok_or(AuthError::NotFound)?;
        let account = self.auth.account();
        let batch = account.factor_removal(&user, &factors, factor, self.auth.now(), &ctx, Some(&by.name))?;
        self.auth.apply(batch).await?;
        Ok(())
    }

    /// `DELETE /admin/v1/users/{username}/devices/{id}`: revoke a device (its sessions end).
    /// The user is told, and the audit log names the admin.
    pub async fn revoke_device(
        &self,
        username: &str,
        id: &str,
        by: &Operator,
        ctx: ClientContext,
    ) -> Result<(), AuthError> {
        by.may_change()?;
        let user = self.user(username).await?;
        let id: crate::ids::DeviceId = id.parse().map_err(|_| AuthError::NotFound)?;
        let device = self.auth.store.device(id).await?;
        let device = device.filter(|d| d.user_id == user.id && d.revoked_at.is_none()).ok_or(AuthError::NotFound)?;
        let account = self.auth.account();
        let batch = account.device_removal(&user, &device, self.auth.now(), &ctx, Some(&by.name))?;
        self.auth.apply(batch).await?;
        Ok(())
    }

    /// An account by username, matched as sign-in matches it; `NotFound` otherwise.
    /// An account by its username, or by its id (what event webhooks and the audit log carry).
    pub(super) async fn user(&self, username: &str) -> Result<User, AuthError> {
        if let Ok(id) = username.parse::<UserId>()
            && let Some(u) = self.auth.store.user_by_id(id).await?
        {
            return Ok(u);
        }
        let key = lookup_key(username).map_err(|_| AuthError::NotFound)?;
        self.auth.store.user_by_username(&key).await?.ok_or(AuthError::NotFound)
    }
}

impl Admin<'_> {
    /// `PATCH /admin/v1/users/{username}`: the profile as `PATCH /v1/me` sets it, custom
    /// attributes only admins write included; answers the account. Told to nobody (the user sees
    /// it in `/v1/me`); the audit log names the admin and the fields.
    pub async fn update_profile(
        &self,
        username: &str,
        req: latchkey_proto::ProfileUpdate,
        by: &Operator,
        ctx: ClientContext,
    ) -> Result<proto::AdminUser, AuthError> {
        by.may_change()?;
        let mut user = self.user(username).await?;
        let (profile, changed) =
            self.auth.account().updated_profile(&user.profile, req, crate::attributes::Writer::Admin)?;
        if !changed.is_empty() {
            let now = self.auth.now();
            user.profile = profile;
            user.updated_at = now;
            let detail = serde_json::json!({"fields": changed, "admin": by.name});
            self.auth
                .store
                .apply(Batch(vec![
                    Write::UpdateUser(user.clone()),
                    audit(now, Some(user.id), "profile", "updated", &ctx, detail),
                ]))
                .await?;
        }
        self.show(&user.username).await
    }
}
