//! Remembered clients ("remember this device", checklist SES-9), from the account's side:
//! remembering the calling client after a sign-in with a real second factor, listing and
//! forgetting them. Signing in with one is `flows/remembered.rs`.

use super::Account;
use crate::auth::{Principal, audit, secs};
use crate::clock::rfc3339;
use crate::error::AuthError;
use crate::factors::device as dk;
use crate::flows::device::shown_safely;
use crate::ids::RememberedClientId;
use crate::model::*;
use crate::sessions::step_up_level;
use crate::store::{Batch, Write};
use latchkey_proto as proto;

pub(crate) fn info(c: RememberedClient) -> proto::RememberedClient {
    proto::RememberedClient {
        id: c.id.to_string(),
        name: c.name,
        created_at: rfc3339(c.created_at),
        expires_at: rfc3339(c.expires_at),
        last_used_at: c.last_used_at.map(rfc3339),
    }
}

impl Account<'_> {
    /// `POST /v1/me/remembered-clients`: remember the calling client's key. Only from a sign-in
    /// in the last `step_up_max_age_secs` whose second factor was real (`aal2` without a
    /// remembered key), and with a signature proving the caller holds the key. Beyond
    /// `max_per_account`, the oldest is forgotten.
    pub async fn remember(
        &self,
        p: &Principal,
        req: &proto::RememberClientRequest,
        ctx: ClientContext,
    ) -> Result<proto::RememberedClient, AuthError> {
        let policy = &self.auth.settings.remember;
        if !policy.enabled {
            return Err(AuthError::InvalidRequest("remembering clients is turned off by policy".into()));
        }
        let now = self.auth.now();
        let max_age = self.auth.settings.mfa.step_up_max_age_secs;
        let level = step_up_level(&p.session, self.auth.settings.mfa.require_phishing_resistant);
        if level == "aal1" || now - p.session.auth_time > secs(max_age) {
            return Err(AuthError::InsufficientAuthentication { acr: "aal2", max_age });
        }
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 64 || !shown_safely(name) {
            return Err(AuthError::InvalidRequest("name: 1–64 characters, no links or markup".into()));
        }
        let point = dk::parse_public_key(&req.public_key)
            .map_err(|_| AuthError::InvalidRequest("public_key: a P-256 key, SPKI DER or X9.63, Base64url".into()))?;
        let message = proto::remember_message(&p.session.id.to_string(), &req.public_key);
        if !dk::verify(&point, message.as_bytes(), &req.signature) {
            return Err(AuthError::InvalidRequest("signature: does not verify with public_key".into()));
        }
        let client = RememberedClient {
            id: RememberedClientId::new(),
            user_id: p.user.id,
            public_key: point,
            name: name.to_owned(),
            created_at: now,
            expires_at: now + secs(policy.max_age_secs),
            last_used_at: None,
            revoked_at: None,
            revoke_reason: None,
        };
        let mut batch = Batch::new();
        let live = self.auth.store.remembered_clients(p.user.id, now).await?;
        let keep = (policy.max_per_account as usize).saturating_sub(1);
        for old in live.iter().take(live.len().saturating_sub(keep)) {
            batch.push(Write::ForgetRememberedClient {
                id: old.id,
                user_id: p.user.id,
                at: now,
                reason: "replaced".into(),
            });
        }
        batch.push(Write::InsertRememberedClient(client.clone())).push(audit(
            now,
            Some(p.user.id),
            "client_remembered",
            "success",
            &ctx,
            serde_json::json!({"remembered_client_id": client.id, "session_id": p.session.id}),
        ));
        self.auth.apply(batch).await?;
        Ok(info(client))
    }

    /// `DELETE /v1/me/remembered-clients/{id}`: forget one; its next sign-in asks for the
    /// second factor again. Any live session of the account may.
    pub async fn forget(&self, p: &Principal, id: RememberedClientId, ctx: ClientContext) -> Result<(), AuthError> {
        let now = self.auth.now();
        self.auth
            .store
            .remembered_client(id)
            .await?
            .filter(|c| c.user_id == p.user.id && c.revoked_at.is_none() && c.expires_at > now)
            .ok_or(AuthError::NotFound)?;
        self.auth
            .store
            .apply(Batch(vec![
                Write::ForgetRememberedClient { id, user_id: p.user.id, at: now, reason: "forgotten_by_user".into() },
                audit(
                    now,
                    Some(p.user.id),
                    "client_forgotten",
                    "success",
                    &ctx,
                    serde_json::json!({"remembered_client_id": id}),
                ),
            ]))
            .await?;
        Ok(())
    }
}
