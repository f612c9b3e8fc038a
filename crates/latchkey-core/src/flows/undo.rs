//! "This wasn't me": the one-tap link in a security notice, which undoes what the notice reports
//! (DESIGN.md: notices the thief cannot suppress, each with a way back). A new device is removed;
//! a recovery, a password change or a new phone or email holds the account — every session
//! ends and nobody signs in — until it is recovered (two proofs, or the delay the owner can veto).
//!
//! The token names what it undoes and whose, until when, under a MAC with the server's pepper, so
//! nothing is stored until it is used; using it spends it in the same transaction as its effect.

use crate::auth::{Auth, audit, secs};
use crate::crypto::sha256_b64;
use crate::error::AuthError;
use crate::ids::{DeviceId, FlowId, RememberedClientId, UserId};
use crate::model::*;
use crate::risk::Decision;
use crate::secret::ct_eq;
use crate::settings::RiskAction;
use crate::store::{Batch, StoreError, Write};
use latchkey_proto as proto;
use time::OffsetDateTime;

/// What a "this wasn't me" token undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Undo {
    /// Hold the account until it is recovered (and remove the device the change enrolled).
    Lock,
    /// Remove the device the notice announced.
    Device,
    /// End the sign-in an unfamiliar-sign-in notice announced (its session, and the remembered
    /// client it named), and ask the account's next sign-ins for a second factor.
    SignIn,
}

impl Undo {
    fn as_str(self) -> &'static str {
        match self {
            Undo::Lock => "lock",
            Undo::Device => "device",
            Undo::SignIn => "sign_in",
        }
    }
}

/// A token's prefix; a waiting recovery's cancel token starts with its flow id instead.
const PREFIX: &str = "u";

impl Auth {
    /// The "this wasn't me" link for a notice to `user` about what `undo` would reverse;
    /// `device`: the device to remove.
    pub(crate) fn undo_link(&self, user: UserId, undo: Undo, device: Option<DeviceId>, now: OffsetDateTime) -> String {
        let subject = device.map_or_else(|| "-".to_owned(), |d| d.to_string());
        self.undo_link_for(user, undo, &subject, now)
    }

    /// The link for `undo` of `subject` (a device id, or for a sign-in `flow[:remembered client]`).
    pub(crate) fn undo_link_for(&self, user: UserId, undo: Undo, subject: &str, now: OffsetDateTime) -> String {
        let exp = (now + secs(self.settings.recovery.notice_link_ttl_secs)).unix_timestamp();
        let signed = format!("{}.{subject}.{exp}", undo.as_str());
        let mac = self.keys.mac("undo", &user.to_string(), &signed);
        format!("{}/v1/recovery/cancel?token={PREFIX}.{user}.{signed}.{mac}", self.settings.tokens.issuer)
    }

    /// `POST /v1/recovery/cancel {token}`: a waiting recovery's cancel, or the undo a notice
    /// offered. Unknown, tampered, expired and used tokens are one `not_found`.
    pub async fn this_wasnt_me(&self, token: &str, ctx: ClientContext) -> Result<proto::UndoOutcome, AuthError> {
        let token = token.trim();
        if !token.starts_with("u.") {
            self.cancel_recovery_by_token(token, ctx).await?;
            return Ok(proto::UndoOutcome { outcome: "recovery_cancelled".into() });
        }
        let now = self.now();
        let refused = || AuthError::NotFound;
        let parts: Vec<&str> = token.split('.').collect();
        let [_, user_id, action, subject, exp, mac] = parts.as_slice() else { return Err(refused()) };
        let signed = format!("{action}.{subject}.{exp}");
        if !ct_eq(self.keys.mac("undo", user_id, &signed).as_bytes(), mac.as_bytes()) {
            return Err(refused());
        }
        let exp =
            exp.parse::<i64>().ok().and_then(|e| OffsetDateTime::from_unix_timestamp(e).ok()).ok_or_else(refused)?;
        if exp <= now {
            return Err(refused());
        }
        let user_id = user_id.parse::<uuid::Uuid>().map(UserId).map_err(|_| refused())?;
        if *action == "sign_in" {
            return self.sign_in_reported(user_id, subject, token, exp, now, ctx).await;
        }
        let device = match *subject {
            "-" => None,
            d => Some(d.parse::<uuid::Uuid>().map(DeviceId).map_err(|_| refused())?),
        };
        let mut user = self.store.user_by_id(user_id).await?.ok_or_else(refused)?;
        let mut batch = Batch::new();
        batch.push(Write::UseOnce { id: sha256_b64(format!("undo:{token}").as_bytes()), expires_at: exp });
        let live = |id: DeviceId| async move {
            Ok::<_, AuthError>(self.store.device(id).await?.filter(|d| d.user_id == user_id && d.revoked_at.is_none()))
        };
        let (outcome, subject_line, body) = match *action {
            "lock" => {
                if user.status == UserStatus::Active {
                    user.status = UserStatus::Locked;
                    user.updated_at = now;
                    batch.push(Write::UpdateUser(user.clone()));
                }
                batch.push(Write::RevokeUserSessions { user_id, at: now, reason: "this_wasnt_me".into() });
                if let Some(d) = device
                    && live(d).await?.is_some()
                {
                    batch.push(Write::RevokeDevice { id: d, at: now });
                }
                let (subject, body) = self.text(user.profile.locale.as_deref(), "account_on_hold", &[]);
                ("account_locked", subject, body)
            }
            "device" => {
                let d = live(device.ok_or_else(refused)?).await?.ok_or_else(refused)?;
                batch.push(Write::RevokeDevice { id: d.id, at: now });
                let (subject, body) =
                    self.text(user.profile.locale.as_deref(), "device_removed", &[("device", &d.name)]);
                ("device_removed", subject, body)
            }
            _ => return Err(refused()),
        };
        batch.push(audit(now, Some(user_id), "this_wasnt_me", outcome, &ctx, serde_json::json!({"device_id": device})));
        let data = proto::PushData { kind: "notice".into(), approval_id: None };
        for m in self.notify_everywhere(&user, &subject_line, &body, &data, None, now).await? {
            batch.push(Write::Enqueue(m));
        }
        match self.apply(batch).await {
            Ok(()) => {}
            Err(StoreError::Conflict("used_once")) => return Err(refused()),
            Err(e) => return Err(e.into()),
        }
        Ok(proto::UndoOutcome { outcome: outcome.into() })
    }

    /// "This wasn't me" from an unfamiliar-sign-in notice: the session that sign-in started
    /// ends (or, still under way, the sign-in is denied), the remembered client it named is
    /// forgotten, and the report itself makes the next sign-ins ask for a second factor (the
    /// risk policy's `recent_change`). The owner is told what happened.
    async fn sign_in_reported(
        &self,
        user_id: UserId,
        subject: &str,
        token: &str,
        exp: OffsetDateTime,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<proto::UndoOutcome, AuthError> {
        let refused = || AuthError::NotFound;
        let (flow, client) = subject.split_once(':').map_or((subject, None), |(f, c)| (f, Some(c)));
        let flow = match flow {
            "-" => None,
            f => Some(f.parse::<uuid::Uuid>().map(FlowId).map_err(|_| refused())?),
        };
        let client =
            client.map(|c| c.parse::<uuid::Uuid>().map(RememberedClientId).map_err(|_| refused())).transpose()?;
        let user = self.store.user_by_id(user_id).await?.ok_or_else(refused)?;
        for _ in 0..3 {
            let mut batch = Batch::new();
            batch.push(Write::UseOnce { id: sha256_b64(format!("undo:{token}").as_bytes()), expires_at: exp });
            let mut pending = None;
            if let Some(f) = flow {
                batch.push(Write::RevokeFlowSession { flow_id: f, user_id, at: now, reason: "this_wasnt_me".into() });
                // A sign-in still under way ends here too.
                if let Some(live) = self.store.flow(f).await?.filter(|l| {
                    l.user_id == Some(user_id)
                        && !matches!(l.state, FlowState::Completed { .. } | FlowState::Denied { .. })
                }) {
                    let denied = Flow {
                        state: FlowState::Denied { reason: proto::DenialReason::Denied },
                        version: live.version + 1,
                        ..live.clone()
                    };
                    batch.push(Write::UpdateFlow { flow: denied, expected_version: live.version });
                    pending = Some(live.id);
                }
            }
            if let Some(c) = client {
                batch.push(Write::ForgetRememberedClient { id: c, user_id, at: now, reason: "this_wasnt_me".into() });
            }
            batch.push(audit(
                now,
                Some(user_id),
                "this_wasnt_me",
                "sign_in_reported",
                &ctx,
                serde_json::json!({"flow_id": flow, "remembered_client_id": client}),
            ));
            let (subject, body) = self.text(user.profile.locale.as_deref(), "sign_in_reported", &[]);
            let data = proto::PushData { kind: "notice".into(), approval_id: None };
            for m in self.notify_everywhere(&user, &subject, &body, &data, None, now).await? {
                batch.push(Write::Enqueue(m));
            }
            match self.apply(batch).await {
                Ok(()) => return Ok(proto::UndoOutcome { outcome: "sign_in_ended".into() }),
                // The sign-in moved on meanwhile: look again.
                Err(StoreError::Conflict("flow")) if pending.is_some() => {}
                Err(StoreError::Conflict("used_once")) => return Err(refused()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(AuthError::Unavailable("the reported sign-in kept changing".into()))
    }

    /// The notice of an unfamiliar sign-in (the password was right): where it came from, why it
    /// stood out, and the one-tap "this wasn't me" that ends the session `flow` starts (and
    /// forgets `remembered`) and makes the account's next sign-ins ask for a second factor.
    pub(crate) async fn risk_notice(
        &self,
        user: &User,
        decision: &Decision,
        flow: Option<FlowId>,
        remembered: Option<RememberedClientId>,
        ctx: &ClientContext,
        now: OffsetDateTime,
    ) -> Result<Vec<Write>, AuthError> {
        let place = self.place_of(ctx.ip.as_deref());
        // Language-neutral pieces: the place in parentheses, the client as it named itself.
        let place = match (place.as_ref().and_then(|p| p.city.clone()), place.and_then(|p| p.country)) {
            (Some(city), Some(country)) => format!(" ({city}, {country})"),
            (None, Some(country)) => format!(" ({country})"),
            _ => String::new(),
        };
        let address = ctx.ip.as_deref().unwrap_or("?");
        let agent = ctx.user_agent.as_deref().map_or_else(|| "?".to_owned(), |a| a.chars().take(80).collect());
        let id = if decision.action == RiskAction::Deny { "sign_in_refused" } else { "sign_in_notice" };
        let subject_of = |f: Option<FlowId>| f.map_or_else(|| "-".to_owned(), |f| f.to_string());
        let token_subject = match remembered {
            Some(r) => format!("{}:{r}", subject_of(flow)),
            None => subject_of(flow),
        };
        let link = self.undo_link_for(user.id, Undo::SignIn, &token_subject, now);
        let reasons = decision.reasons.join(", ");
        let args = [("address", address), ("place", &place), ("agent", &agent), ("reasons", &reasons), ("link", &link)];
        let (subject, body) = self.text(user.profile.locale.as_deref(), id, &args);
        let data = proto::PushData { kind: "notice".into(), approval_id: None };
        Ok(self
            .notify_everywhere(user, &subject, &body, &data, None, now)
            .await?
            .into_iter()
            .map(Write::Enqueue)
            .collect())
    }
}
