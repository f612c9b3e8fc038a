//! The operator's actions on an account, by username (`auth.admin()`): disable, enable, unlock, revoke sessions, require a
//! password change.

use crate::auth::{Auth, CODE, OTP, PASSWORD, audit};
use crate::clock::rfc3339;
use crate::error::AuthError;
use crate::identity::lookup_key;
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
        let key = lookup_key(username).map_err(|_| AuthError::NotFound)?;
        let u = self.auth.store.user_by_username(&key).await?.ok_or(AuthError::NotFound)?;
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
            name: u.profile.name,
            locale: u.profile.locale,
            zoneinfo: u.profile.zoneinfo,
            picture: u.profile.picture,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        })
    }

    /// Administrative changes to an account, by username.
    pub async fn update(&self, username: &str, action: AdminAction, ctx: ClientContext) -> Result<(), AuthError> {
        let key = lookup_key(username).map_err(|_| AuthError::NotFound)?;
        let mut user = self.auth.store.user_by_username(&key).await?.ok_or(AuthError::NotFound)?;
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
            serde_json::json!({}),
        ));
        self.auth.store.apply(batch).await?;
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
