//! The account's passkeys (`/v1/me/passkeys`): listing, renaming, removing. Registering one is a
//! flow (`flows/passkey.rs`).

use super::Account;
use crate::auth::{Principal, audit};
use crate::clock::rfc3339;
use crate::error::AuthError;
use crate::factors::passkey::authenticator_name;
use crate::flows::device::shown_safely;
use crate::ids::PasskeyId;
use crate::model::*;
use crate::store::{Batch, StoreError, Write};
use latchkey_proto as proto;
use latchkey_proto::MfaMethod;

/// A passkey as listed; `trusted`: the name of the trusted models it is (it gives `aal3`).
fn info(k: Passkey, trusted: Option<String>) -> proto::PasskeyInfo {
    proto::PasskeyInfo {
        id: k.id.to_string(),
        attested: trusted.is_some(),
        authenticator: trusted.or_else(|| k.aaguid.as_deref().and_then(authenticator_name).map(str::to_owned)),
        name: k.name,
        aaguid: k.aaguid,
        backup_eligible: k.backup_eligible,
        backed_up: k.backed_up,
        created_at: rfc3339(k.created_at),
        last_used_at: k.last_used_at.map(rfc3339),
    }
}

impl Account<'_> {
    /// `GET /v1/me/passkeys`: oldest first.
    pub async fn passkeys(&self, p: &Principal) -> Result<proto::PasskeyList, AuthError> {
        let keys = self.auth.store.passkeys(p.user.id).await?;
        let passkeys = keys
            .into_iter()
            .map(|k| {
                let trusted = self.auth.attested(&k);
                info(k, trusted)
            })
            .collect();
        Ok(proto::PasskeyList { passkeys })
    }

    /// `PATCH /v1/me/passkeys/{id}`: a new name. Any live session of the account may.
    pub async fn rename_passkey(
        &self,
        p: &Principal,
        id: PasskeyId,
        req: &proto::RenamePasskeyRequest,
        ctx: ClientContext,
    ) -> Result<proto::PasskeyInfo, AuthError> {
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 64 || !shown_safely(name) {
            return Err(AuthError::InvalidRequest("name: 1–64 characters, no links or markup".into()));
        }
        let key = self.own(p, id).await?;
        let now = self.auth.now();
        let batch = Batch(vec![
            Write::RenamePasskey { id, user_id: p.user.id, name: name.to_owned() },
            audit(now, Some(p.user.id), "passkey_renamed", "success", &ctx, serde_json::json!({"passkey_id": id})),
        ]);
        match self.auth.apply(batch).await {
            Err(StoreError::Conflict("passkey")) => return Err(AuthError::NotFound),
            other => other?,
        }
        let trusted = self.auth.attested(&key);
        Ok(info(Passkey { name: name.to_owned(), ..key }, trusted))
    }

    /// `DELETE /v1/me/passkeys/{id}`: needs a sign-in at `aal2` within `step_up_max_age_secs`
    /// (as removing any factor); the owner is told, and remembered clients are forgotten.
    pub async fn remove_passkey(&self, p: &Principal, id: PasskeyId, ctx: ClientContext) -> Result<(), AuthError> {
        let key = self.own(p, id).await?;
        self.require_recent_aal2(p)?;
        let now = self.auth.now();
        let user = &p.user;
        let mut batch = Batch::new();
        batch
            .push(Write::DeletePasskey { id, user_id: user.id })
            .push(Write::ForgetUserRememberedClients { user_id: user.id, at: now, reason: "factor_removed".into() })
            .push(audit(
                now,
                Some(user.id),
                "factor_removed",
                "success",
                &ctx,
                serde_json::json!({"passkey_id": id, "type": "passkey"}),
            ));
        let last = self.auth.store.passkeys(user.id).await?.len() <= 1;
        if last && user.preferred_mfa == Some(MfaMethod::Passkey) {
            batch.push(Write::UpdateUser(User { preferred_mfa: None, updated_at: now, ..user.clone() }));
        }
        let (subject, body) = self.auth.text(user.profile.locale.as_deref(), "passkey_removed", &[("name", &key.name)]);
        for m in self.auth.notification(user, &subject, &body, now)? {
            batch.push(Write::Enqueue(m));
        }
        match self.auth.apply(batch).await {
            Err(StoreError::Conflict("passkey")) => return Err(AuthError::NotFound),
            other => other?,
        }
        Ok(())
    }

    async fn own(&self, p: &Principal, id: PasskeyId) -> Result<Passkey, AuthError> {
        let keys = self.auth.store.passkeys(p.user.id).await?;
        keys.into_iter().find(|k| k.id == id).ok_or(AuthError::NotFound)
    }
}
