//! The signed-in user's devices: the list, removing one (its sessions and refresh tokens end,
//! the owner is told), and changing a device's PIN.

use super::Account;
use crate::auth::{Principal, audit, secs};
use crate::clock::rfc3339;
use crate::error::AuthError;
use crate::factors::device::{self as dk};
use crate::flows::device::PIN_LIMIT;
use crate::ids::{DeviceId, UserId};
use crate::model::*;
use crate::secret::SecretString;
use crate::store::{Batch, StoreError, Write};
use latchkey_proto as proto;

impl Account<'_> {
    /// `GET /v1/me/devices`.
    pub async fn devices(&self, p: &Principal) -> Result<proto::DeviceList, AuthError> {
        self.devices_of(p.user.id).await
    }

    /// A user's devices and remembered clients, described (never their keys).
    pub(crate) async fn devices_of(&self, user_id: UserId) -> Result<proto::DeviceList, AuthError> {
        Ok(proto::DeviceList {
            devices: self
                .auth
                .store
                .devices(user_id)
                .await?
                .into_iter()
                .map(|d| proto::DeviceInfo {
                    id: d.id.to_string(),
                    name: d.name,
                    platform: d.platform,
                    pin_blocked: d.pin_failures >= PIN_LIMIT,
                    biometric_evidence: d.biometric_evidence.map(|e| format!("{}/{}", e.format, e.security_level)),
                    created_at: rfc3339(d.created_at),
                    last_used_at: d.last_used_at.map(rfc3339),
                })
                .collect(),
            remembered_clients: self
                .auth
                .store
                .remembered_clients(user_id, self.auth.now())
                .await?
                .into_iter()
                .map(super::remembered::info)
                .collect(),
        })
    }

    /// `DELETE /v1/me/devices/{id}`: its keys, PIN and sessions stop working at once.
    pub async fn revoke_device(&self, p: &Principal, id: DeviceId, ctx: ClientContext) -> Result<(), AuthError> {
        let device = self.auth.live_device_of(p, id).await?;
        let batch = self.device_removal(&p.user, &device, self.auth.now(), &ctx, None)?;
        self.auth.apply(batch).await?;
        Ok(())
    }

    /// The writes that revoke `device` (its sessions end) and tell `user`; `admin` names the
    /// operator who revoked it.
    pub(crate) fn device_removal(
        &self,
        user: &User,
        device: &Device,
        now: time::OffsetDateTime,
        ctx: &ClientContext,
        admin: Option<&str>,
    ) -> Result<Batch, AuthError> {
        let mut detail = serde_json::json!({"device_id": device.id});
        if let Some(admin) = admin {
            detail["admin"] = admin.into();
        }
        let mut batch = Batch::new();
        batch.push(Write::RevokeDevice { id: device.id, at: now }).push(audit(
            now,
            Some(user.id),
            "device_revoked",
            "success",
            ctx,
            detail,
        ));
        let id = if admin.is_some() { "device_revoked" } else { "device_removed" };
        let (subject, body) = self.auth.text(user.profile.locale.as_deref(), id, &[("device", &device.name)]);
        for m in self.auth.notification(user, &subject, &body, now)? {
            batch.push(Write::Enqueue(m));
        }
        Ok(batch)
    }

    /// `PUT /v1/me/devices/{id}/pin`: a new app PIN, which also unblocks a blocked one. Needs a
    /// sign-in at `aal2` from the last 10 minutes — with another factor when the PIN is blocked,
    /// which is how the user "recovers with another factor" (DESIGN.md).
    pub async fn set_device_pin(
        &self,
        p: &Principal,
        id: DeviceId,
        pin: SecretString,
        ctx: ClientContext,
    ) -> Result<(), AuthError> {
        let device = self.auth.live_device_of(p, id).await?;
        let now = self.auth.now();
        let max_age = self.auth.settings.mfa.step_up_max_age_secs;
        if now - p.session.auth_time > secs(max_age) || p.session.acr == "aal1" {
            return Err(AuthError::InsufficientAuthentication { acr: "aal2", max_age });
        }
        dk::check_pin(pin.expose()).map_err(|reason| AuthError::InvalidRequest(format!("pin: {reason}")))?;
        let mut batch = Batch::new();
        batch
            .push(Write::UpdateDevice { id, biometric_key: None, pin_hash: Some(self.auth.hasher.hash(&pin).await?) })
            .push(audit(
                now,
                Some(p.user.id),
                "device_pin_changed",
                "success",
                &ctx,
                serde_json::json!({"device_id": id, "was_blocked": device.pin_failures >= PIN_LIMIT}),
            ));
        let (subject, notice) =
            self.auth.text(p.user.profile.locale.as_deref(), "pin_changed", &[("device", &device.name)]);
        for m in self.auth.notification(&p.user, &subject, &notice, now)? {
            batch.push(Write::Enqueue(m));
        }
        match self.auth.apply(batch).await {
            Err(StoreError::Conflict("device")) => return Err(AuthError::NotFound),
            other => other?,
        }
        Ok(())
    }
}
