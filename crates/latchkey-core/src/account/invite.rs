//! The operator invites someone (`POST /admin/v1/users`): the account is created unconfirmed and
//! without a password, and an invitation goes to its email (else its phone) with a link carrying
//! the invitation's flow and code. The invitee answers the flow as any sign-up is answered:
//! `confirm_sign_up` with the code (which proves the address), then `new_password`, which
//! completes it with a session.

use super::admin::{Admin, AdminRole, Operator};
use crate::auth::{audit, secs};
use crate::clock::rfc3339;
use crate::error::AuthError;
use crate::flows::sign_up::unconfirmed_user;
use crate::identity::{Email, Phone, Username};
use crate::ids::FlowId;
use crate::model::*;
use crate::secret::random_digits;
use crate::store::{Batch, StoreError, Write};
use latchkey_proto as proto;
use latchkey_proto::Channel;

impl Admin<'_> {
    /// `POST /admin/v1/users`.
    pub async fn invite(&self, req: proto::InviteRequest, by: &Operator) -> Result<proto::Invitation, AuthError> {
        by.may_change()?;
        let auth = self.auth;
        let invalid = |e: crate::identity::IdentifierError| AuthError::InvalidRequest(e.to_string());
        let username = Username::parse(&req.username).map_err(invalid)?;
        let email =
            req.email.as_deref().filter(|s| !s.trim().is_empty()).map(Email::parse).transpose().map_err(invalid)?;
        let phone =
            req.phone.as_deref().filter(|s| !s.trim().is_empty()).map(Phone::parse).transpose().map_err(invalid)?;
        let role = match req.role.as_deref() {
            None => None,
            Some(r) => {
                Some(AdminRole::parse(r).ok_or_else(|| AuthError::InvalidRequest("role: admin or read_only".into()))?)
            }
        };
        let locale = req.locale.clone();
        if let Some(l) = &locale {
            crate::messages::check_locale(l).map_err(|m| AuthError::InvalidRequest(m.into()))?;
        }
        let (channel, to, masked) = match (&email, &phone) {
            (Some(e), _) => (Channel::Email, e.as_str().to_owned(), e.masked()),
            (None, Some(p)) => (Channel::Sms, p.as_str().to_owned(), p.masked()),
            (None, None) => return Err(AuthError::InvalidRequest("an email or a phone number is required".into())),
        };
        let now = auth.now();
        // No password yet: the invitee chooses one after the code.
        let user = User {
            must_change_password: true,
            ..unconfirmed_user(&username, email.as_ref(), phone.as_ref(), None, locale.clone(), now)
        };
        let flow_id = FlowId::new();
        let ttl = auth.settings.sign_up.invite_ttl_secs;
        let expires_at = now + secs(ttl);
        let code = random_digits(auth.rng.as_ref(), 6);
        let challenge = CodeChallenge {
            mac: auth.keys.mac("code", &flow_id.to_string(), code.expose()),
            channel,
            destination: masked.clone(),
            expires_at,
        };
        let base = match &auth.settings.sign_up.invite_url {
            Some(url) => url.clone(),
            None => format!("{}/console/invite", auth.settings.tokens.issuer),
        };
        let link = format!("{base}#flow_id={flow_id}&code={}", code.expose());
        let until = rfc3339(expires_at);
        let args =
            [("username", username.display.as_str()), ("link", &link), ("code", code.expose()), ("until", &until)];
        let (subject, body) = auth.text(locale.as_deref(), "invitation", &args);
        let message = auth.sealed_message(channel, &to, &subject, &body, now)?;
        let state = FlowState::AwaitingConfirmation {
            code: challenge,
            sign_in_after: false,
            then_enroll_device: false,
            invited: true,
        };
        let ctx = ClientContext::default();
        let mut flow = auth.new_flow(flow_id, FlowKind::SignUp, Some(user.id), state, now, ctx.clone());
        flow.expires_at = expires_at;
        let mut batch = Batch::new();
        batch
            .push(Write::ClaimUsername { digest: auth.retired_username(&user.username_canonical), at: now })
            .push(Write::InsertUser(user.clone()))
            .push(Write::InsertFlow(flow))
            .push(Write::Enqueue(message));
        if let Some(role) = role {
            batch.push(Write::SetAdminRole { user_id: user.id, role: Some(role.as_str().into()), at: now });
        }
        let detail = serde_json::json!({"admin": by.name, "flow_id": flow_id, "role": role.map(AdminRole::as_str)});
        batch.push(audit(now, Some(user.id), "admin_invite", "success", &ctx, detail));
        match auth.apply(batch).await {
            Ok(()) => {}
            Err(StoreError::Conflict("username")) => return Err(AuthError::UsernameExists),
            Err(e) => return Err(e.into()),
        }
        Ok(proto::Invitation {
            user_id: user.id.to_string(),
            flow_id: flow_id.to_string(),
            destination: masked,
            expires_at: rfc3339(expires_at),
        })
    }
}
