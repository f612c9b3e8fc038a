//! The signed-in user's password (`PUT /v1/me/password`): changing it with the current one, or
//! adding a first one to a passwordless account after a recent `aal2` sign-in.
//!
//! Invariants:
//! - A wrong current password counts against the account's password lockout, like a sign-in's:
//!   a stolen session cannot guess its way to the password.
//! - The other sessions end (and remembered clients are forgotten) unless the user keeps them;
//!   every verified channel and enrolled device is told, with a way to put the account on hold.

use super::Account;
use crate::auth::{PASSWORD, Principal, audit};
use crate::error::{AuthError, retry_after};
use crate::factors::password::{check_policy, normalize};
use crate::flows::undo::Undo;
use crate::model::*;
use crate::store::{Batch, Write};
use latchkey_proto as proto;

impl Account<'_> {
    /// `PUT /v1/me/password`.
    pub async fn change_password(
        &self,
        p: &Principal,
        req: proto::ChangePasswordRequest,
        ctx: ClientContext,
    ) -> Result<proto::PasswordChanged, AuthError> {
        let auth = self.auth;
        let now = auth.now();
        let user = &p.user;
        match (&user.password_hash, &req.current_password) {
            (Some(_), None) => {
                return Err(AuthError::InvalidRequest("current_password: this account has a password".into()));
            }
            (Some(hash), Some(current)) => {
                let key = &user.username_canonical;
                if let Reservation::Locked(until) =
                    auth.store.reserve_failure(key, PASSWORD, now, &auth.settings.limits.password).await?
                {
                    let retry_after_secs =
                        until.map_or(auth.settings.limits.password.max_delay_secs, |t| retry_after(now, t));
                    return Err(AuthError::LimitExceeded { retry_after_secs, limit: "password_lockout" });
                }
                if !auth.hasher.verify(&normalize(current), Some(hash)).await? {
                    let detail = serde_json::json!({"session_id": p.session.id});
                    auth.apply(Batch(vec![audit(now, Some(user.id), "password_change", "failure", &ctx, detail)]))
                        .await?;
                    return Err(AuthError::NotAuthorized);
                }
            }
            // A first password: the session must be a recent `aal2` sign-in.
            (None, _) => self.require_recent_aal2(p)?,
        }
        let new = normalize(&req.new_password);
        check_policy(&new, &user.username_canonical).map_err(AuthError::InvalidPassword)?;
        let mut changed = user.clone();
        changed.password_hash = Some(auth.hasher.hash(&new).await?);
        changed.must_change_password = false;
        changed.updated_at = now;
        let mut batch = Batch::new();
        batch
            .push(Write::UpdateUser(changed.clone()))
            .push(Write::ClearFailures { key: user.username_canonical.clone(), kind: PASSWORD.into() });
        let mut ended = 0u32;
        if !req.keep_other_sessions {
            for s in auth.store.live_sessions(user.id, now).await?.into_iter().filter(|s| s.id != p.session.id) {
                batch.push(Write::RevokeSession { id: s.id, at: now, reason: "password_changed".into() });
                ended += 1;
            }
            batch.push(Write::ForgetUserRememberedClients {
                user_id: user.id,
                at: now,
                reason: "password_changed".into(),
            });
        }
        let first = user.password_hash.is_none();
        batch.push(audit(
            now,
            Some(user.id),
            "password_change",
            "success",
            &ctx,
            serde_json::json!({"session_id": p.session.id, "first": first, "other_sessions_ended": ended}),
        ));
        let link = auth.undo_link(user.id, Undo::Lock, None, now);
        let id = if first { "password_added" } else { "password_changed" };
        let (subject, body) = auth.text(user.profile.locale.as_deref(), id, &[("link", &link)]);
        let data = proto::PushData { kind: "notice".into(), approval_id: None };
        for m in auth.notify_everywhere(user, &subject, &body, &data, None, now).await? {
            batch.push(Write::Enqueue(m));
        }
        auth.apply(batch).await?;
        Ok(proto::PasswordChanged { other_sessions_ended: ended })
    }
}
