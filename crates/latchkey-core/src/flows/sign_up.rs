//! Sign-up: the account is created unconfirmed and confirmed by a code to its email or phone
//! (or, passwordless, by the phone, the email and the first device).

use crate::auth::{Auth, CODE, FlowOutcome, StepEvent, audit, secs};
use crate::error::AuthError;
use crate::factors::password::{check_policy, normalize};
use crate::identity::{Email, Phone, Username};
use crate::ids::{DeviceId, FlowId, UserId};
use crate::model::*;
use crate::secret::{SecretString, random_token};
use crate::store::{Batch, StoreError, Write};
use latchkey_proto as proto;
use latchkey_proto::Channel;
use time::OffsetDateTime;

impl Auth {
    /// `POST /v1/sign-up`.
    pub async fn sign_up(&self, req: proto::SignUpRequest, ctx: ClientContext) -> Result<FlowOutcome, AuthError> {
        self.require_genuine_app(crate::factors::app_integrity::GatedAction::SignUp, &ctx)?;
        let now = self.now();
        let policy = &self.settings.sign_up;
        let username = Username::parse(&req.username).map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
        let email = req
            .email
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(Email::parse)
            .transpose()
            .map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
        let phone = req
            .phone
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(Phone::parse)
            .transpose()
            .map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
        if let Some(l) = &req.locale {
            crate::messages::check_locale(l).map_err(|m| AuthError::InvalidRequest(m.into()))?;
        }
        if policy.require_email && email.is_none() {
            return Err(AuthError::InvalidRequest("email is required".into()));
        }
        if policy.require_phone && phone.is_none() {
            return Err(AuthError::InvalidRequest("phone is required".into()));
        }
        let password = match req.password.as_deref() {
            Some(p) => Some(normalize(p)),
            None if policy.require_password => {
                return Err(AuthError::InvalidRequest("password is required".into()));
            }
            None => None,
        };
        // Passwordless: the phone is confirmed by SMS, then the first device is enrolled in the
        // same flow (DESIGN.md: the one exception to "SMS never completes a new device").
        let passwordless = password.is_none();
        if passwordless && phone.is_none() {
            return Err(AuthError::InvalidRequest("a phone number is required to sign up without a password".into()));
        }
        if let Some(pw) = &password {
            check_policy(pw, &username.canonical).map_err(AuthError::InvalidPassword)?;
        }
        let (channel, destination, masked) = match (&email, &phone) {
            (_, Some(p)) if passwordless => (Channel::Sms, p.as_str().to_owned(), p.masked()),
            (Some(e), _) => (Channel::Email, e.as_str().to_owned(), e.masked()),
            (None, Some(p)) => (Channel::Sms, p.as_str().to_owned(), p.masked()),
            (None, None) => {
                return Err(AuthError::InvalidRequest("an email or a phone number is required".into()));
            }
        };
        if let Some(p) = &phone
            && !self.settings.limits.sms_allowed(p.as_str())
        {
            return Err(AuthError::InvalidRequest("text messages cannot be sent to this phone number".into()));
        }
        let existing = self.store.user_by_username(&username.canonical).await?;
        // A taken username sends nothing, so it must not spend the account's budget (a stranger
        // could keep its owner from getting codes) — but it is limited just the same.
        if existing.is_some() {
            self.check_look_alike_limits(&username.canonical, Some(&destination), &ctx, channel).await?;
        } else {
            self.check_send_limits(&username.canonical, Some(&destination), &ctx, channel).await?;
        }
        // The app's backend decides before anything is created, for a taken username as for a
        // new one, so its answer says nothing about which it was.
        let facts = crate::flows::hooked::SignUpFacts {
            username: &username.display,
            email: email.as_ref().map(Email::as_str),
            phone: phone.as_ref().map(Phone::as_str),
            locale: req.locale.as_deref(),
        };
        let decision = self.before_sign_up(facts, &ctx).await?;
        if let Some(message) = decision.denied {
            let detail = serde_json::json!({"hook": "before_sign_up"});
            self.apply(Batch(vec![audit(now, None, "sign_up", "denied_by_hook", &ctx, detail)])).await?;
            return Err(AuthError::SignUpDenied(message));
        }
        // Hash even for a taken username, so both answers take the same time.
        let hash = match &password {
            Some(pw) => Some(self.hasher.hash(pw).await?),
            None => None,
        };
        if existing.is_some() {
            return self.duplicate_sign_up(channel, masked, now, ctx).await;
        }

        let mut user = unconfirmed_user(&username, email.as_ref(), phone.as_ref(), hash, req.locale.clone(), now);
        user.profile.custom = decision.attributes;
        let flow_id = FlowId::new();
        let (code, message) = self.issue_code(
            flow_id,
            channel,
            &destination,
            masked,
            ("code_sign_up", user.profile.locale.as_deref()),
            now,
        )?;
        let flow = self.new_flow(
            flow_id,
            FlowKind::SignUp,
            Some(user.id),
            FlowState::AwaitingConfirmation {
                code,
                sign_in_after: false,
                then_enroll_device: passwordless,
                invited: false,
            },
            now,
            ctx.clone(),
        );
        let mut batch = Batch::new();
        batch
            .push(Write::ClaimUsername { digest: self.retired_username(&user.username_canonical), at: now })
            .push(Write::InsertUser(user.clone()))
            .push(Write::InsertFlow(flow.clone()))
            .push(Write::Enqueue(message))
            .push(audit(now, Some(user.id), "sign_up", "success", &ctx, serde_json::json!({"flow_id": flow.id})));
        match self.apply(batch).await {
            Ok(()) => {}
            // Another request took the username between our read and our write.
            Err(StoreError::Conflict("username")) => {
                let masked = flow_masked(&flow);
                return self.duplicate_sign_up(channel, masked, now, ctx).await;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Self::outcome(flow, vec![StepEvent { step: "confirm_sign_up", outcome: "issued" }]))
    }

    /// A sign-up for a taken username: refuse openly, or (default) answer exactly like a new
    /// sign-up with a flow whose code nobody knows, sending nothing.
    pub(crate) async fn duplicate_sign_up(
        &self,
        channel: Channel,
        masked: String,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        if self.settings.sign_up.reveal_username_exists {
            return Err(AuthError::UsernameExists);
        }
        let flow_id = FlowId::new();
        let code = self.unknowable_code(flow_id, channel, masked, now);
        let flow = self.new_flow(
            flow_id,
            FlowKind::SignUp,
            None,
            FlowState::AwaitingConfirmation { code, sign_in_after: false, then_enroll_device: false, invited: false },
            now,
            ctx.clone(),
        );
        let mut batch = Batch::new();
        batch.push(Write::InsertFlow(flow.clone())).push(audit(
            now,
            None,
            "sign_up",
            "duplicate_username",
            &ctx,
            serde_json::json!({"flow_id": flow.id}),
        ));
        self.apply(batch).await?;
        Ok(Self::outcome(flow, vec![StepEvent { step: "confirm_sign_up", outcome: "issued" }]))
    }

    pub(crate) async fn confirm_sign_up(
        &self,
        flow: Flow,
        code: CodeChallenge,
        then: AfterConfirm,
        given: SecretString,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let user = match flow.user_id {
            Some(id) => self.store.user_by_id(id).await?,
            None => None,
        };
        let key = user.as_ref().map(|u| u.username_canonical.clone());
        if let Err(o) = self.check_code(&flow, Some(&code), &given, (key.as_deref(), CODE), now, &ctx).await? {
            return Ok(o);
        }
        // A right code implies a real user: decoy flows carry a code nobody knows.
        let Some(mut user) = user else {
            return Err(AuthError::Internal("confirmed flow without user".into()));
        };
        match code.channel {
            Channel::Sms => user.phone_verified = true,
            _ => user.email_verified = true,
        }
        if user.status == UserStatus::Unconfirmed {
            user.status = UserStatus::Active;
        }
        user.updated_at = now;
        let mut batch = Batch::new();
        batch
            .push(Write::UpdateUser(user.clone()))
            .push(Write::ClearFailures { key: user.username_canonical.clone(), kind: CODE.into() })
            .push(audit(
                now,
                Some(user.id),
                "confirm_sign_up",
                "success",
                &ctx,
                serde_json::json!({"flow_id": flow.id, "channel": code.channel}),
            ));
        let mut tokens = None;
        let state = match then {
            AfterConfirm::SignIn(true) => {
                let (session, t) =
                    self.sessions().new_session(flow.id, &user, &["pwd"], None, now, &ctx, &mut batch).await?;
                tokens = Some(t);
                FlowState::Completed { session_id: Some(session.id) }
            }
            AfterConfirm::SignIn(false) => FlowState::Completed { session_id: None },
            // An invitation: the code proved the address; the invitee chooses a password next,
            // from this client only.
            AfterConfirm::SetPassword => {
                batch.push(Write::BindFlow { id: flow.id, context: ctx.clone() });
                FlowState::AwaitingNewPassword { amr: vec![], recovery: None }
            }
            // A passwordless sign-up goes on to enrol its first device.
            // A passwordless sign-up with an email verifies it too, so the owner has a second
            // proof for a new phone or a recovery from day one; then it enrols the first device.
            AfterConfirm::EnrollDevice => match user.email.clone().filter(|_| !user.email_verified) {
                Some(email) => {
                    let e = Email::parse(&email).map_err(|e| AuthError::Internal(e.to_string()))?;
                    self.check_send_limits(&user.username_canonical, Some(e.as_str()), &ctx, Channel::Email).await?;
                    let (code, message) = self.issue_code(
                        flow.id,
                        Channel::Email,
                        e.as_str(),
                        e.masked(),
                        ("code_verify_email", user.profile.locale.as_deref()),
                        now,
                    )?;
                    batch.push(Write::Enqueue(message));
                    FlowState::AwaitingVerification { channel: Channel::Email, value: e.as_str().to_owned(), code }
                }
                None => self.first_device_state(),
            },
        };
        let expires_at = match state {
            FlowState::AwaitingVerification { .. } => now + secs(self.settings.flows.code_ttl_secs),
            FlowState::AwaitingNewPassword { .. } => now + secs(self.settings.flows.ttl_secs),
            _ => flow.expires_at,
        };
        let done = Flow { state, version: flow.version + 1, expires_at, ..flow.clone() };
        batch.push(Write::UpdateFlow { flow: done.clone(), expected_version: flow.version });
        self.commit(batch, flow.id).await?;
        Ok(FlowOutcome::verified(done, tokens, "confirm_sign_up"))
    }

    /// A sign-up's first device: `enroll_device`, after the SMS code (amr `sms`).
    pub(crate) fn first_device_state(&self) -> FlowState {
        FlowState::AwaitingDeviceEnrollment {
            amr: vec!["sms".into()],
            recovery: None,
            device_id: DeviceId::new(),
            nonce: random_token(self.rng.as_ref(), 32).expose().to_owned(),
        }
    }
}

/// What a right sign-up confirmation code leads to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AfterConfirm {
    /// Done; with a session when the password was verified in this flow.
    SignIn(bool),
    /// A passwordless sign-up: enrol the first device.
    EnrollDevice,
    /// An invitation: choose a password.
    SetPassword,
}

fn flow_masked(flow: &Flow) -> String {
    match &flow.state {
        FlowState::AwaitingConfirmation { code, .. } => code.destination.clone(),
        _ => String::new(),
    }
}

/// A new account, unconfirmed until a code proves its address (a sign-up's, or an invitation's).
pub(crate) fn unconfirmed_user(
    username: &Username,
    email: Option<&Email>,
    phone: Option<&Phone>,
    password_hash: Option<String>,
    locale: Option<String>,
    now: OffsetDateTime,
) -> User {
    User {
        id: UserId::new(),
        username: username.display.clone(),
        username_canonical: username.canonical.clone(),
        email: email.map(|e| e.as_str().to_owned()),
        email_verified: false,
        phone: phone.map(|p| p.as_str().to_owned()),
        phone_verified: false,
        status: UserStatus::Unconfirmed,
        password_hash,
        must_change_password: false,
        preferred_mfa: None,
        phone_changed_at: None,
        email_changed_at: None,
        profile: Profile { locale, ..Profile::default() },
        created_at: now,
        updated_at: now,
    }
}

/// Where a sign-up confirmation code goes: the email if any, else the phone.
pub(crate) fn confirmation_destination(u: &User) -> Result<(Channel, String, String), AuthError> {
    if let Some(e) = u.email.as_deref().and_then(|e| Email::parse(e).ok()) {
        return Ok((Channel::Email, e.as_str().to_owned(), e.masked()));
    }
    if let Some(p) = u.phone.as_deref().and_then(|p| Phone::parse(p).ok()) {
        return Ok((Channel::Sms, p.as_str().to_owned(), p.masked()));
    }
    Err(AuthError::Internal("account has no email or phone".into()))
}
