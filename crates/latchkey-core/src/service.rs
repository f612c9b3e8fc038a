//! The authentication service: every flow as a state machine over stored flow records.
//!
//! Invariants:
//! - A transition is a compare-and-swap on the flow's version, committed in one batch with its
//!   outbox messages and audit events; concurrent answers to one step yield exactly one success.
//! - An attempt is reserved (counted) atomically *before* it is evaluated, so a parallel burst
//!   cannot evaluate more answers than the cap.
//! - Failure counters are keyed by the canonical username whether or not the account exists, so
//!   lockouts reveal nothing and case or normalisation variants share one counter.

use crate::clock::{Clock, rfc3339};
use crate::crypto::{Keys, sha256_b64};
use crate::dpop::{self, DpopProof};
use crate::error::{AuthError, retry_after};
use crate::identity::{Email, Phone, Username, lookup_key};
use crate::ids::{DeviceId, EventId, FactorId, FlowId, MessageId, SessionId, UserId};
use crate::model::*;
use crate::password::{SecretHasher, check_policy, normalize};
use crate::secret::{Random, SecretString, ct_eq, random_bytes, random_digits, random_token};
use crate::settings::{MfaMode, Settings};
use crate::store::{Batch, RotateOutcome, Store, StoreError, Write};
use crate::tokens::{AccessClaims, AccessTokenSigner, Confirmation, TokenError};
use crate::totp::{self, TotpParams};
use latchkey_proto as proto;
use latchkey_proto::{Channel, DenialReason, MfaMethod, StepAnswer, codes};

mod device;
mod mfa;
mod push;
mod recovery;
mod undo;
pub use device::{DeviceEnrollment, NewBiometricKey};
use mfa::{EMAIL, SMS};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// Failure-counter kinds.
const PASSWORD: &str = "password";
const CODE: &str = "code";
const OTP: &str = "otp";
/// Factor kinds and states.
const TOTP: &str = "totp";
const PENDING: &str = "pending";
const ACTIVE: &str = "active";

/// Which provider delivers each channel (chosen by the server from its configuration).
#[derive(Debug, Clone)]
pub struct OutboxRoutes {
    /// `smtp` or `dev`.
    pub email: String,
    /// `sms_webhook` or `dev`.
    pub sms: String,
    /// The device push providers configured (`fcm`, `apns`, `webhook`); a device registered with
    /// another is notified through `dev`.
    pub push: Vec<String>,
}

/// What happened at a step, for metrics: the step and `issued`, `verified`, `failed` or `denied`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepEvent {
    /// The step.
    pub step: &'static str,
    /// The outcome.
    pub outcome: &'static str,
}

/// The result of a flow request: the flow after it, tokens if it just completed a sign-in, and
/// why the answer was refused if it was.
#[derive(Debug, Clone)]
pub struct FlowOutcome {
    /// The flow as stored now.
    pub flow: Flow,
    /// Tokens, only on the request that completed a sign-in.
    pub tokens: Option<proto::Tokens>,
    /// Why the last answer was refused.
    pub error: Option<proto::StepError>,
    /// For metrics.
    pub events: Vec<StepEvent>,
}

/// An access token as a request presented it.
#[derive(Debug, Clone)]
pub struct Presented<'a> {
    /// The token.
    pub token: &'a str,
    /// It came as `Authorization: DPoP …` rather than `Bearer …`.
    pub dpop_scheme: bool,
    /// The request's DPoP proof, its signature verified.
    pub proof: Option<DpopProof>,
    /// The request's method.
    pub method: &'a str,
    /// The request's path (the issuer URL is put in front to compare with `htu`).
    pub path: &'a str,
}

/// A verified access token and what it stands for.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's claims.
    pub claims: AccessClaims,
    /// The live session.
    pub session: Session,
    /// The user.
    pub user: User,
}

/// The service. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn Random>,
    keys: Keys,
    hasher: SecretHasher,
    signer: Arc<dyn AccessTokenSigner>,
    settings: Settings,
    routes: OutboxRoutes,
    outbox_wakeup: Arc<tokio::sync::Notify>,
    /// Wakes held `GET /v1/flows/{id}` requests on this replica when a push is answered.
    push_wakeup: Arc<tokio::sync::Notify>,
}

/// The collaborators of [`Auth`].
pub struct AuthParts {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Randomness.
    pub rng: Arc<dyn Random>,
    /// Keys.
    pub keys: Keys,
    /// Password hashing.
    pub hasher: SecretHasher,
    /// Token signing.
    pub signer: Arc<dyn AccessTokenSigner>,
    /// Policy.
    pub settings: Settings,
    /// Delivery routes.
    pub routes: OutboxRoutes,
    /// Notified whenever a message is queued.
    pub outbox_wakeup: Arc<tokio::sync::Notify>,
}

fn audit(
    at: OffsetDateTime,
    user: Option<UserId>,
    kind: &str,
    outcome: &str,
    ctx: &ClientContext,
    detail: serde_json::Value,
) -> Write {
    Write::Audit(AuditEvent {
        id: EventId::new(),
        at,
        user_id: user,
        kind: kind.into(),
        outcome: outcome.into(),
        ip: ctx.ip.clone(),
        user_agent: ctx.user_agent.clone(),
        detail,
    })
}

fn step_error(code: &str, message: &str) -> Option<proto::StepError> {
    Some(proto::StepError { code: code.into(), message: message.into() })
}

fn secs(s: u64) -> Duration {
    Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))
}

impl Auth {
    /// Assemble the service.
    pub fn new(p: AuthParts) -> Self {
        Self {
            store: p.store,
            clock: p.clock,
            rng: p.rng,
            keys: p.keys,
            hasher: p.hasher,
            signer: p.signer,
            settings: p.settings,
            routes: p.routes,
            outbox_wakeup: p.outbox_wakeup,
            push_wakeup: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// The policy in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Now, from the injected clock.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    // ----- answers ---------------------------------------------------------------------------

    /// The wire answer for a flow outcome.
    pub fn answer(&self, o: &FlowOutcome) -> Result<proto::FlowAnswer, AuthError> {
        let attempts_left = self.settings.flows.max_attempts.saturating_sub(o.flow.attempts);
        let next_step = match &o.flow.state {
            FlowState::AwaitingConfirmation { code, .. } => proto::NextStep::ConfirmSignUp {
                channel: code.channel,
                destination: code.destination.clone(),
                attempts_left,
            },
            FlowState::AwaitingNewPassword { .. } => proto::NextStep::NewPassword { attempts_left },
            FlowState::AwaitingTotpSetup { factor_id, account, secret_sealed } => {
                let secret = self.keys.open(&factor_id.to_string(), secret_sealed)?;
                let enrolment = totp_enrolment(&self.settings.product_name, account, &secret)?;
                let mfa = &self.settings.mfa;
                let sms = o.flow.kind == FlowKind::SignIn && mfa.allow_sms_setup && mfa.allows(MfaMethod::Sms);
                proto::NextStep::SetupTotp {
                    secret: enrolment.secret,
                    uri: enrolment.uri,
                    qr_svg: enrolment.qr_svg,
                    attempts_left,
                    other_methods: if sms { vec![MfaMethod::Sms] } else { vec![] },
                }
            }
            FlowState::AwaitingMfa { method, methods, code, push, .. } => {
                let other_methods: Vec<MfaMethod> = methods.iter().copied().filter(|m| Some(*m) != *method).collect();
                let destination = code.as_ref().map(|c| c.destination.clone()).unwrap_or_default();
                match method {
                    None => proto::NextStep::SelectMfa { methods: methods.clone() },
                    Some(MfaMethod::Sms) => proto::NextStep::SmsCode { destination, attempts_left, other_methods },
                    Some(MfaMethod::Email) => proto::NextStep::EmailCode { destination, attempts_left, other_methods },
                    Some(MfaMethod::RecoveryCode) => proto::NextStep::RecoveryCode { attempts_left, other_methods },
                    Some(MfaMethod::PushApproval) => match push {
                        Some(p) => proto::NextStep::PushApproval {
                            approval_id: p.approval_id.to_string(),
                            number: p.number.clone(),
                            expires_at: rfc3339(p.expires_at),
                            other_methods,
                        },
                        None => proto::NextStep::SelectMfa { methods: methods.clone() },
                    },
                    Some(_) => proto::NextStep::TotpCode { attempts_left, other_methods },
                }
            }
            FlowState::AwaitingDeviceEnrollment { device_id, nonce, .. } => {
                proto::NextStep::EnrollDevice { device_id: device_id.to_string(), nonce: nonce.clone(), attempts_left }
            }
            FlowState::AwaitingDeviceSignature { nonce, .. } => {
                proto::NextStep::DeviceSignature { nonce: nonce.clone(), attempts_left }
            }
            FlowState::AwaitingBiometricKey { device_id, nonce } => proto::NextStep::RekeyBiometric {
                device_id: device_id.to_string(),
                nonce: nonce.clone(),
                attempts_left,
            },
            FlowState::AwaitingRecoveryCodesSaved { codes_sealed } => {
                proto::NextStep::SaveRecoveryCodes { codes: self.sealed_recovery_codes(&o.flow, codes_sealed)? }
            }
            FlowState::AwaitingVerification { channel, code, .. } => {
                proto::NextStep::VerifyCode { channel: *channel, destination: code.destination.clone(), attempts_left }
            }
            FlowState::AwaitingReset { code } => {
                let reveal = self.settings.sign_up.reveal_username_exists;
                proto::NextStep::ResetPassword {
                    channel: if reveal { code.as_ref().map(|c| c.channel) } else { None },
                    destination: if reveal {
                        code.as_ref().map(|c| c.destination.clone()).unwrap_or_default()
                    } else {
                        String::new()
                    },
                    attempts_left,
                }
            }
            FlowState::AwaitingRecoveryWait { ready_at, .. } => {
                proto::NextStep::RecoveryWait { ready_at: rfc3339(*ready_at) }
            }
            FlowState::Completed { .. } => proto::NextStep::Done,
            FlowState::Denied { reason } => proto::NextStep::Denied { reason: *reason },
        };
        Ok(proto::FlowAnswer {
            flow_id: o.flow.id.to_string(),
            expires_at: rfc3339(o.flow.expires_at),
            next_step,
            tokens: o.tokens.clone(),
            error: o.error.clone(),
        })
    }

    fn outcome(flow: Flow, events: Vec<StepEvent>) -> FlowOutcome {
        FlowOutcome { flow, tokens: None, error: None, events }
    }

    // ----- sign-up ---------------------------------------------------------------------------

    /// `POST /v1/sign-up`.
    pub async fn sign_up(&self, req: proto::SignUpRequest, ctx: ClientContext) -> Result<FlowOutcome, AuthError> {
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
        // Hash even for a taken username, so both answers take the same time.
        let hash = match &password {
            Some(pw) => Some(self.hasher.hash(pw).await?),
            None => None,
        };
        if existing.is_some() {
            return self.duplicate_sign_up(channel, masked, now, ctx).await;
        }

        let user = User {
            id: UserId::new(),
            username: username.display.clone(),
            username_canonical: username.canonical.clone(),
            email: email.as_ref().map(|e| e.as_str().to_owned()),
            email_verified: false,
            phone: phone.as_ref().map(|p| p.as_str().to_owned()),
            phone_verified: false,
            status: UserStatus::Unconfirmed,
            password_hash: hash,
            must_change_password: false,
            preferred_mfa: None,
            phone_changed_at: None,
            email_changed_at: None,
            created_at: now,
            updated_at: now,
        };
        let flow_id = FlowId::new();
        let (code, message) = self.issue_code(flow_id, channel, &destination, masked, "Confirm your sign-up", now)?;
        let flow = self.new_flow(
            flow_id,
            FlowKind::SignUp,
            Some(user.id),
            FlowState::AwaitingConfirmation { code, sign_in_after: false, then_enroll_device: passwordless },
            now,
            ctx.clone(),
        );
        let mut batch = Batch::new();
        batch
            .push(Write::InsertUser(user.clone()))
            .push(Write::InsertFlow(flow.clone()))
            .push(Write::Enqueue(message))
            .push(audit(now, Some(user.id), "sign_up", "success", &ctx, serde_json::json!({"flow_id": flow.id})));
        match self.store.apply(batch).await {
            Ok(()) => {}
            // Another request took the username between our read and our write.
            Err(StoreError::Conflict("username")) => {
                let masked = flow_masked(&flow);
                return self.duplicate_sign_up(channel, masked, now, ctx).await;
            }
            Err(e) => return Err(e.into()),
        }
        self.outbox_wakeup.notify_one();
        Ok(Self::outcome(flow, vec![StepEvent { step: "confirm_sign_up", outcome: "issued" }]))
    }

    /// A sign-up for a taken username: refuse openly, or (default) answer exactly like a new
    /// sign-up with a flow whose code nobody knows, sending nothing.
    async fn duplicate_sign_up(
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
            FlowState::AwaitingConfirmation { code, sign_in_after: false, then_enroll_device: false },
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
        self.store.apply(batch).await?;
        Ok(Self::outcome(flow, vec![StepEvent { step: "confirm_sign_up", outcome: "issued" }]))
    }

    // ----- sign-in ---------------------------------------------------------------------------

    /// `POST /v1/sign-in` with a username and password.
    pub async fn sign_in(&self, req: proto::SignInRequest, ctx: ClientContext) -> Result<FlowOutcome, AuthError> {
        if let Some(device_id) = req.device_id.as_deref() {
            if req.username.is_some() || req.password.is_some() {
                return Err(AuthError::InvalidRequest("sign in with a device_id, or a username and password".into()));
            }
            return self.device_sign_in(device_id, ctx).await;
        }
        let (Some(raw_username), Some(raw_password)) = (req.username.as_deref(), req.password.as_deref()) else {
            return match req.username.as_deref() {
                // No password: a passwordless account's first sign-in on a new device.
                Some(username) => self.new_device_sign_in(username, ctx).await,
                None => Err(AuthError::InvalidRequest("a username (and password), or a device_id, is required".into())),
            };
        };
        let now = self.now();
        let key = lookup_key(raw_username).map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
        let password = normalize(raw_password);
        if let Reservation::Locked(until) =
            self.store.reserve_failure(&key, PASSWORD, now, &self.settings.limits.password).await?
        {
            self.store.apply(Batch(vec![audit(now, None, "sign_in", "locked", &ctx, serde_json::json!({}))])).await?;
            // At the hard cap only a reset helps; the longest delay is the hint not to hammer.
            let retry_after_secs = until.map_or(self.settings.limits.password.max_delay_secs, |t| retry_after(now, t));
            return Err(AuthError::LimitExceeded { retry_after_secs, limit: "password_lockout" });
        }
        let user = self.store.user_by_username(&key).await?;
        let matched = self.hasher.verify(&password, user.as_ref().and_then(|u| u.password_hash.as_deref())).await?;
        let user = match user {
            Some(u) if matched && matches!(u.status, UserStatus::Active | UserStatus::Unconfirmed) => u,
            other => {
                let uid = other.map(|u| u.id);
                self.store
                    .apply(Batch(vec![audit(
                        now,
                        uid,
                        "sign_in",
                        "failure",
                        &ctx,
                        serde_json::json!({"method": "pwd"}),
                    )]))
                    .await?;
                return Err(AuthError::NotAuthorized);
            }
        };
        let clear = Write::ClearFailures { key: key.clone(), kind: PASSWORD.into() };
        let flow_id = FlowId::new();

        if user.status == UserStatus::Unconfirmed {
            let (channel, destination, masked) = confirmation_destination(&user)?;
            self.check_send_limits(&key, Some(&destination), &ctx, channel).await?;
            let (code, message) =
                self.issue_code(flow_id, channel, &destination, masked, "Confirm your sign-up", now)?;
            let flow = self.new_flow(
                flow_id,
                FlowKind::SignIn,
                Some(user.id),
                FlowState::AwaitingConfirmation { code, sign_in_after: true, then_enroll_device: false },
                now,
                ctx.clone(),
            );
            let mut batch = Batch::new();
            batch.push(clear).push(Write::InsertFlow(flow.clone())).push(Write::Enqueue(message)).push(audit(
                now,
                Some(user.id),
                "sign_in",
                "needs_confirmation",
                &ctx,
                serde_json::json!({"flow_id": flow.id}),
            ));
            self.store.apply(batch).await?;
            self.outbox_wakeup.notify_one();
            return Ok(Self::outcome(flow, vec![StepEvent { step: "confirm_sign_up", outcome: "issued" }]));
        }
        if let Some(start) = self.start_mfa(flow_id, &user, now, &ctx).await? {
            let flow = self.new_flow(flow_id, FlowKind::SignIn, Some(user.id), start.state, now, ctx.clone());
            let step = flow.state.step_name();
            let mut batch = Batch(start.writes);
            batch.push(clear).push(Write::InsertFlow(flow.clone())).push(audit(
                now,
                Some(user.id),
                "sign_in",
                "needs_second_factor",
                &ctx,
                serde_json::json!({"flow_id": flow.id, "step": step}),
            ));
            self.store.apply(batch).await?;
            self.outbox_wakeup.notify_one();
            return Ok(Self::outcome(flow, vec![StepEvent { step: "password", outcome: "verified" }, start.event]));
        }
        if user.must_change_password {
            let flow = self.new_flow(
                flow_id,
                FlowKind::SignIn,
                Some(user.id),
                FlowState::AwaitingNewPassword { amr: vec!["pwd".into()], recovery: None },
                now,
                ctx.clone(),
            );
            let mut batch = Batch::new();
            batch.push(clear).push(Write::InsertFlow(flow.clone())).push(audit(
                now,
                Some(user.id),
                "sign_in",
                "needs_new_password",
                &ctx,
                serde_json::json!({"flow_id": flow.id}),
            ));
            self.store.apply(batch).await?;
            return Ok(Self::outcome(flow, vec![StepEvent { step: "new_password", outcome: "issued" }]));
        }

        let mut batch = Batch::new();
        let (session, tokens) = self.new_session(&user, &["pwd"], None, now, &ctx, &mut batch)?;
        let done = self.new_flow(
            flow_id,
            FlowKind::SignIn,
            Some(user.id),
            FlowState::Completed { session_id: Some(session.id) },
            now,
            ctx.clone(),
        );
        batch.push(clear).push(Write::InsertFlow(done.clone())).push(audit(
            now,
            Some(user.id),
            "sign_in",
            "success",
            &ctx,
            serde_json::json!({"flow_id": done.id, "session_id": session.id, "amr": ["pwd"]}),
        ));
        self.store.apply(batch).await?;
        Ok(FlowOutcome {
            flow: done,
            tokens: Some(tokens),
            error: None,
            events: vec![StepEvent { step: "password", outcome: "verified" }],
        })
    }

    // ----- flows -----------------------------------------------------------------------------

    /// `GET /v1/flows/{id}`.
    /// A flow at `push_approval` learns the phone's answer here.
    pub async fn current(&self, id: FlowId, ctx: &ClientContext) -> Result<FlowOutcome, AuthError> {
        let flow = self.load_flow(id, ctx).await?;
        if !flow.state.is_terminal() && flow.expires_at <= self.now() {
            return Err(expired(&flow.state));
        }
        self.settle_push(flow, ctx).await
    }

    async fn load_flow(&self, id: FlowId, ctx: &ClientContext) -> Result<Flow, AuthError> {
        let flow = self.store.flow(id).await?.ok_or(AuthError::FlowNotFound)?;
        // A flow answers only the client that started it (same User-Agent).
        if flow.context.user_agent != ctx.user_agent {
            return Err(AuthError::ContextMismatch);
        }
        Ok(flow)
    }

    /// `POST /v1/flows/{id}`: answer the step the flow waits for.
    pub async fn submit(&self, id: FlowId, answer: StepAnswer, ctx: ClientContext) -> Result<FlowOutcome, AuthError> {
        let flow = self.load_flow(id, &ctx).await?;
        let now = self.now();
        match &flow.state {
            FlowState::Completed { .. } => return Err(AuthError::FlowCompleted),
            FlowState::Denied { .. } => return Ok(Self::outcome(flow, vec![])),
            s if flow.expires_at <= now => return Err(expired(s)),
            _ => {}
        }
        match (flow.state.clone(), answer) {
            (
                FlowState::AwaitingConfirmation { code, sign_in_after, then_enroll_device },
                StepAnswer::ConfirmSignUp { code: given },
            ) => {
                let then =
                    if then_enroll_device { AfterConfirm::EnrollDevice } else { AfterConfirm::SignIn(sign_in_after) };
                self.confirm_sign_up(flow, code, then, SecretString::new(given), now, ctx).await
            }
            (FlowState::AwaitingNewPassword { recovery: Some(rec), .. }, StepAnswer::NewPassword { password }) => {
                self.recovery_new_password(flow, rec, normalize(&password), now, ctx).await
            }
            (FlowState::AwaitingNewPassword { amr, .. }, StepAnswer::NewPassword { password }) => {
                self.set_new_password(flow, amr, normalize(&password), now, ctx).await
            }
            (FlowState::AwaitingRecoveryWait { .. }, StepAnswer::RecoveryWait {}) => {
                self.recovery_wait(flow, now, ctx).await
            }
            (
                FlowState::AwaitingMfa { methods, recovery: Some(_), .. },
                StepAnswer::SelectMfa { method: MfaMethod::RecoveryWait },
            ) if methods.contains(&MfaMethod::RecoveryWait) => self.choose_wait(flow, now, ctx).await,
            (FlowState::AwaitingTotpSetup { factor_id, .. }, StepAnswer::SetupTotp { code }) => {
                self.confirm_totp_setup(flow, factor_id, SecretString::new(code), now, ctx).await
            }
            (FlowState::AwaitingTotpSetup { factor_id, .. }, StepAnswer::SetupSms { phone }) => {
                self.setup_sms(flow, factor_id, phone, now, ctx).await
            }
            (FlowState::AwaitingMfa { methods, then_new_password, .. }, StepAnswer::SelectMfa { method }) => {
                self.select_mfa(flow, methods, then_new_password, method, now, ctx).await
            }
            (
                FlowState::AwaitingMfa { method: Some(MfaMethod::Totp), then_new_password, .. },
                StepAnswer::TotpCode { code },
            ) => self.totp_sign_in(flow, then_new_password, SecretString::new(code), now, ctx).await,
            (FlowState::AwaitingMfa { method: Some(MfaMethod::PushApproval), .. }, StepAnswer::PushApproval {}) => {
                self.settle_push(flow, &ctx).await
            }
            (FlowState::AwaitingMfa { method: Some(MfaMethod::Sms), .. }, StepAnswer::SmsCode { code })
            | (FlowState::AwaitingMfa { method: Some(MfaMethod::Email), .. }, StepAnswer::EmailCode { code }) => {
                self.oob_sign_in(flow, SecretString::new(code), now, ctx).await
            }
            (
                FlowState::AwaitingMfa { method: Some(MfaMethod::RecoveryCode), then_new_password, .. },
                StepAnswer::RecoveryCode { code },
            ) => self.recovery_sign_in(flow, then_new_password, SecretString::new(code), now, ctx).await,
            (
                FlowState::AwaitingDeviceEnrollment { .. },
                StepAnswer::EnrollDevice {
                    name,
                    platform,
                    possession_key,
                    biometric_key,
                    possession_signature,
                    biometric_signature,
                    pin,
                    attestation,
                },
            ) => {
                let e = DeviceEnrollment {
                    name,
                    platform,
                    possession_key,
                    biometric_key,
                    possession_signature,
                    biometric_signature,
                    pin: SecretString::new(pin),
                    attestation,
                };
                self.complete_device_enrollment(flow, e, now, ctx).await
            }
            (FlowState::AwaitingDeviceSignature { .. }, StepAnswer::DeviceSignature { key, signature, pin }) => {
                self.device_signature(flow, key, signature, pin, now, ctx).await
            }
            (
                FlowState::AwaitingBiometricKey { device_id, nonce },
                StepAnswer::RekeyBiometric { biometric_key, biometric_signature, attestation },
            ) => {
                let key = NewBiometricKey { key: biometric_key, signature: biometric_signature, attestation };
                self.complete_rekey(flow, device_id, nonce, key, now, ctx).await
            }
            (FlowState::AwaitingRecoveryCodesSaved { codes_sealed }, StepAnswer::SaveRecoveryCodes {}) => {
                self.save_recovery_codes(flow, codes_sealed, now, ctx).await
            }
            (FlowState::AwaitingVerification { .. }, StepAnswer::VerifyCode { code }) => {
                self.verify_destination(flow, SecretString::new(code), now, ctx).await
            }
            (FlowState::AwaitingReset { code }, StepAnswer::ResetPassword { code: given, password }) => {
                self.reset_password(flow, code, SecretString::new(given), normalize(&password), now, ctx).await
            }
            (state, _) => Err(AuthError::StepMismatch { expected: state.step_name() }),
        }
    }

    /// Reserve an attempt on the flow and, for a known user, on the account's code counter, then
    /// check the code. `Ok(Ok(()))`: right; `Ok(Err(outcome))`: the answer to return.
    async fn check_code(
        &self,
        flow: &Flow,
        code: Option<&CodeChallenge>,
        given: &SecretString,
        counter: (Option<&str>, &str),
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<Result<(), FlowOutcome>, AuthError> {
        let step = flow.state.step_name();
        let (account_key, kind) = counter;
        let attempts = match self.reserve_attempt(flow, step, account_key, kind, now).await? {
            Ok(n) => n,
            Err(o) => return Ok(Err(o)),
        };
        // Checklist OOB-3: a wrong, expired or absent code is one and the same refusal.
        let right = code.is_some_and(|c| {
            let mac = self.keys.mac("code", &flow.id.to_string(), given.expose().trim());
            ct_eq(mac.as_bytes(), c.mac.as_bytes()) && c.expires_at > now
        });
        if right {
            return Ok(Ok(()));
        }
        Ok(Err(self.refuse(flow, step, attempts, false, now, ctx).await?))
    }

    /// Count one more answer on the flow and on the account's `kind` counter, before evaluating
    /// it. `Ok(Ok(n))`: go ahead, this is attempt `n`; `Ok(Err(answer))`: refused unevaluated.
    async fn reserve_attempt(
        &self,
        flow: &Flow,
        step: &'static str,
        account_key: Option<&str>,
        kind: &str,
        now: OffsetDateTime,
    ) -> Result<Result<u32, FlowOutcome>, AuthError> {
        let max = self.settings.flows.max_attempts;
        let Some(attempts) = self.store.reserve_flow_attempt(flow.id, max).await? else {
            // Every attempt is taken (evaluated or in flight). No transition here: an in-flight
            // right answer may still complete the flow; a wrong one that used the last attempt
            // denies it. A right and a wrong code get the same answer (checklist RL-7).
            let current = self.store.flow(flow.id).await?.unwrap_or_else(|| flow.clone());
            return match current.state {
                FlowState::Completed { .. } => Err(AuthError::FlowCompleted),
                FlowState::Denied { .. } => {
                    Ok(Err(Self::outcome(current, vec![StepEvent { step, outcome: "denied" }])))
                }
                _ => {
                    let mut o =
                        Self::outcome(Flow { attempts: max, ..current }, vec![StepEvent { step, outcome: "failed" }]);
                    o.error = step_error(codes::LIMIT_EXCEEDED, "too many attempts");
                    Ok(Err(o))
                }
            };
        };
        if let Some(key) = account_key
            && let Reservation::Locked(_) =
                self.store.reserve_failure(key, kind, now, &self.settings.limits.code).await?
        {
            // A locked counter answers a right code exactly as a wrong one (checklist RL-7); the
            // operators' metric says it was the lockout.
            let mut o = Self::outcome(Flow { attempts, ..flow.clone() }, vec![StepEvent { step, outcome: "locked" }]);
            o.error = step_error(codes::LIMIT_EXCEEDED, "too many wrong codes; try again later");
            return Ok(Err(o));
        }
        Ok(Ok(attempts))
    }

    /// End a flow whose attempts are exhausted. Concurrent callers all answer `denied`.
    async fn deny(
        &self,
        flow: &Flow,
        step: &'static str,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let denied = Flow {
            state: FlowState::Denied { reason: DenialReason::TooManyAttempts },
            version: flow.version + 1,
            attempts: self.settings.flows.max_attempts,
            ..flow.clone()
        };
        let mut batch = Batch::new();
        batch.push(Write::UpdateFlow { flow: denied.clone(), expected_version: flow.version }).push(audit(
            now,
            flow.user_id,
            step,
            "denied",
            ctx,
            serde_json::json!({"flow_id": flow.id, "reason": "too_many_attempts"}),
        ));
        match self.store.apply(batch).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let current = self.store.flow(flow.id).await?.unwrap_or(denied);
        if let FlowState::Completed { .. } = current.state {
            return Err(AuthError::FlowCompleted);
        }
        Ok(Self::outcome(current, vec![StepEvent { step, outcome: "denied" }]))
    }

    /// Commit a transition; if another request won the race, answer as the flow now stands.
    async fn commit(&self, batch: Batch, flow_id: FlowId) -> Result<(), AuthError> {
        match self.store.apply(batch).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict("flow")) => {
                let now = self.store.flow(flow_id).await?;
                match now.map(|f| f.state) {
                    // Denied by a parallel wrong answer: a new flow may start at once.
                    Some(FlowState::Denied { .. }) => {
                        Err(AuthError::LimitExceeded { retry_after_secs: 1, limit: "push_denied" })
                    }
                    _ => Err(AuthError::FlowCompleted),
                }
            }
            // Another approval is outstanding for the account (checklist PUSH-4).
            Err(StoreError::Conflict("approval_pending")) => Err(AuthError::LimitExceeded {
                retry_after_secs: self.settings.push.approval_ttl_secs.max(1),
                limit: "push_outstanding",
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn confirm_sign_up(
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
                let (session, t) = self.new_session(&user, &["pwd"], None, now, &ctx, &mut batch)?;
                tokens = Some(t);
                FlowState::Completed { session_id: Some(session.id) }
            }
            AfterConfirm::SignIn(false) => FlowState::Completed { session_id: None },
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
                        "Verify your email address",
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
            _ => flow.expires_at,
        };
        let done = Flow { state, version: flow.version + 1, expires_at, ..flow.clone() };
        batch.push(Write::UpdateFlow { flow: done.clone(), expected_version: flow.version });
        self.commit(batch, flow.id).await?;
        self.outbox_wakeup.notify_one();
        Ok(FlowOutcome {
            flow: done,
            tokens,
            error: None,
            events: vec![StepEvent { step: "confirm_sign_up", outcome: "verified" }],
        })
    }

    /// A sign-up's first device: `enroll_device`, after the SMS code (amr `sms`).
    pub(super) fn first_device_state(&self) -> FlowState {
        FlowState::AwaitingDeviceEnrollment {
            amr: vec!["sms".into()],
            recovery: None,
            device_id: DeviceId::new(),
            nonce: random_token(self.rng.as_ref(), 32).expose().to_owned(),
        }
    }

    async fn set_new_password(
        &self,
        flow: Flow,
        amr: Vec<String>,
        password: SecretString,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let Some(mut user) = self.user_of(&flow).await? else {
            return Err(expired(&flow.state));
        };
        if let Err(reason) = check_policy(&password, &user.username_canonical) {
            let mut o = Self::outcome(flow, vec![StepEvent { step: "new_password", outcome: "failed" }]);
            o.error = step_error(codes::INVALID_PASSWORD, &reason.to_string());
            return Ok(o);
        }
        user.password_hash = Some(self.hasher.hash(&password).await?);
        user.must_change_password = false;
        user.updated_at = now;
        let mut batch = Batch::new();
        let (session, tokens) = self.new_session(&user, &amr_or_pwd(&amr), None, now, &ctx, &mut batch)?;
        let done = Flow {
            state: FlowState::Completed { session_id: Some(session.id) },
            version: flow.version + 1,
            ..flow.clone()
        };
        batch
            .push(Write::UpdateUser(user.clone()))
            .push(Write::UpdateFlow { flow: done.clone(), expected_version: flow.version })
            .push(audit(
                now,
                Some(user.id),
                "new_password",
                "success",
                &ctx,
                serde_json::json!({"flow_id": flow.id, "session_id": session.id}),
            ));
        let body = format!(
            "The password of your {} account was changed. If this was not you, put the account on hold: {}",
            self.settings.product_name,
            self.undo_link(user.id, undo::Undo::Lock, None, now)
        );
        let data = proto::PushData { kind: "notice".into(), approval_id: None };
        for m in self.notify_everywhere(&user, "Your password was changed", &body, &data, None, now).await? {
            batch.push(Write::Enqueue(m));
        }
        self.commit(batch, flow.id).await?;
        self.outbox_wakeup.notify_one();
        Ok(FlowOutcome {
            flow: done,
            tokens: Some(tokens),
            error: None,
            events: vec![StepEvent { step: "new_password", outcome: "verified" }],
        })
    }

    /// `POST /v1/flows/{id}/resend`: a new code for the current step. The attempt count is
    /// kept (NIST §3.1.3.2: a new code SHALL NOT reset the failure count).
    pub async fn resend(&self, id: FlowId, ctx: ClientContext) -> Result<FlowOutcome, AuthError> {
        let flow = self.load_flow(id, &ctx).await?;
        let now = self.now();
        if flow.state.is_terminal() {
            return Err(AuthError::FlowCompleted);
        }
        if flow.expires_at <= now {
            return Err(expired(&flow.state));
        }
        let code = match &flow.state {
            FlowState::AwaitingConfirmation { code, .. } | FlowState::AwaitingVerification { code, .. } => {
                Some(code.clone())
            }
            FlowState::AwaitingReset { code } => code.clone(),
            FlowState::AwaitingMfa { code: Some(code), .. } => Some(code.clone()),
            other => return Err(AuthError::StepMismatch { expected: other.step_name() }),
        };
        let user = self.user_of(&flow).await?;
        let key = user.as_ref().map(|u| u.username_canonical.clone()).unwrap_or_else(|| format!("flow:{}", flow.id));
        // Where the new code goes: the address of the code being replaced (none for decoy flows);
        // for a verification, the new address being verified.
        let target = match (&user, &code, &flow.state) {
            (Some(_), Some(c), FlowState::AwaitingVerification { value, .. }) => {
                Some((c.channel, value.clone(), c.destination.clone()))
            }
            (Some(u), Some(c), _) => match c.channel {
                Channel::Sms => u.phone.clone(),
                _ => u.email.clone(),
            }
            .map(|dest| (c.channel, dest, c.destination.clone())),
            _ => None,
        };
        if self.store.reserve_flow_send(flow.id, self.settings.flows.max_sends).await?.is_none() {
            // This flow sends no more codes; a new one can, once it ends.
            return Err(AuthError::LimitExceeded {
                retry_after_secs: retry_after(now, flow.expires_at),
                limit: "flow_sends",
            });
        }
        let channel = code.as_ref().map(|c| c.channel).unwrap_or(Channel::Email);
        self.check_send_limits(&key, target.as_ref().map(|t| t.1.as_str()), &ctx, channel).await?;

        let mut batch = Batch::new();
        let new_code = match (&target, flow.user_id) {
            (Some((channel, dest, masked)), Some(_)) => {
                let subject = match (&flow.state, flow.kind) {
                    (_, FlowKind::Recovery) => "Recover your account",
                    (FlowState::AwaitingMfa { .. }, _) => "Your sign-in code",
                    (FlowState::AwaitingVerification { .. }, _) => "Verify your new address",
                    _ => "Confirm your sign-up",
                };
                let (c, message) = self.issue_code(flow.id, *channel, dest, masked.clone(), subject, now)?;
                batch.push(Write::Enqueue(message));
                Some(c)
            }
            // Decoy flows (unknown user or taken username) send nothing but look the same.
            _ => code.map(|c| CodeChallenge { expires_at: now + secs(self.settings.flows.code_ttl_secs), ..c }),
        };
        // A second-factor step keeps its short lifetime (checklist FLOW-3); code steps live as
        // long as their newest code.
        let expires_at = match flow.state {
            FlowState::AwaitingMfa { .. } => flow.expires_at,
            _ => now + secs(self.settings.flows.code_ttl_secs),
        };
        let updated =
            Flow { state: with_code(&flow.state, new_code), version: flow.version + 1, expires_at, ..flow.clone() };
        batch.push(Write::UpdateFlow { flow: updated.clone(), expected_version: flow.version }).push(audit(
            now,
            flow.user_id,
            "resend",
            "success",
            &ctx,
            serde_json::json!({"flow_id": flow.id}),
        ));
        self.commit(batch, flow.id).await?;
        self.outbox_wakeup.notify_one();
        let fresh = self.store.flow(flow.id).await?.unwrap_or(updated);
        Ok(Self::outcome(fresh, vec![StepEvent { step: flow.state.step_name(), outcome: "issued" }]))
    }

    async fn user_of(&self, flow: &Flow) -> Result<Option<User>, AuthError> {
        Ok(match flow.user_id {
            Some(id) => self.store.user_by_id(id).await?,
            None => None,
        })
    }

    // ----- tokens and sessions ---------------------------------------------------------------

    fn new_session(
        &self,
        user: &User,
        amr: &[&str],
        device: Option<&Device>,
        now: OffsetDateTime,
        ctx: &ClientContext,
        batch: &mut Batch,
    ) -> Result<(Session, proto::Tokens), AuthError> {
        let t = &self.settings.tokens;
        let session = Session {
            id: SessionId::new(),
            user_id: user.id,
            acr: assurance(amr, self.settings.mfa.require_phishing_resistant).into(),
            amr: with_mfa(amr),
            auth_time: now,
            created_at: now,
            last_refresh_at: now,
            expires_at: now + secs(t.session_absolute_ttl_secs),
            revoked_at: None,
            revoke_reason: None,
            context: ctx.clone(),
            device_id: device.map(|d| d.id),
            // A device session is bound to its possession key (RFC 9449).
            dpop_jkt: device.and_then(|d| dpop::thumbprint(&d.possession_key)),
        };
        let refresh = random_token(self.rng.as_ref(), 32);
        batch.push(Write::InsertSession(session.clone())).push(Write::InsertRefreshToken {
            hash: sha256_b64(refresh.expose().as_bytes()),
            session_id: session.id,
            created_at: now,
        });
        let tokens = self.tokens_for(&session, refresh, now)?;
        Ok((session, tokens))
    }

    fn tokens_for(
        &self,
        session: &Session,
        refresh: SecretString,
        now: OffsetDateTime,
    ) -> Result<proto::Tokens, AuthError> {
        let t = &self.settings.tokens;
        let claims = AccessClaims {
            iss: t.issuer.clone(),
            aud: t.audience.clone(),
            sub: session.user_id.to_string(),
            sid: session.id.to_string(),
            exp: (now + secs(t.access_ttl_secs)).unix_timestamp(),
            iat: now.unix_timestamp(),
            jti: random_token(self.rng.as_ref(), 16).expose().to_owned(),
            client_id: t.audience.clone(),
            acr: session.acr.clone(),
            amr: session.amr.clone(),
            auth_time: session.auth_time.unix_timestamp(),
            cnf: session.dpop_jkt.clone().map(|jkt| Confirmation { jkt }),
        };
        Ok(proto::Tokens {
            access_token: self.signer.sign(&claims)?,
            refresh_token: refresh.expose().to_owned(),
            // RFC 9449 §5: a bound token's type is DPoP.
            token_type: if session.dpop_jkt.is_some() { "DPoP" } else { "Bearer" }.into(),
            expires_in: t.access_ttl_secs,
        })
    }

    /// `POST /v1/token` with `grant_type=refresh_token`: rotate (RFC 9700 §4.14.2).
    /// A device session's refresh needs `proof`, a DPoP proof by the device's possession key
    /// (RFC 9449 §5); without it, or with another key's, nothing changes and the answer is
    /// `invalid_dpop_proof`.
    pub async fn refresh(
        &self,
        req: proto::TokenRequest,
        proof: Option<DpopProof>,
        ctx: ClientContext,
    ) -> Result<proto::Tokens, AuthError> {
        if req.grant_type != "refresh_token" {
            return Err(AuthError::UnsupportedGrantType);
        }
        let now = self.now();
        let refused = |reason| AuthError::InvalidDpopProof { reason, resource: false };
        if let Some(p) = &proof {
            self.check_dpop(p, "POST", "/v1/token", None, now, false).await?;
        }
        let old = sha256_b64(req.refresh_token.as_bytes());
        let fresh = random_token(self.rng.as_ref(), 32);
        let idle_cutoff = now - secs(self.settings.tokens.session_idle_ttl_secs);
        let jkt = proof.as_ref().map(|p| p.jkt.as_str());
        match self.store.rotate_refresh(&old, &sha256_b64(fresh.expose().as_bytes()), now, idle_cutoff, jkt).await? {
            RotateOutcome::Rotated(session) => {
                let user = self.store.user_by_id(session.user_id).await?;
                if !user.is_some_and(|u| u.status == UserStatus::Active) {
                    self.store
                        .apply(Batch(vec![Write::RevokeSession {
                            id: session.id,
                            at: now,
                            reason: "account_inactive".into(),
                        }]))
                        .await?;
                    return Err(AuthError::InvalidGrant);
                }
                self.store
                    .apply(Batch(vec![audit(
                        now,
                        Some(session.user_id),
                        "refresh",
                        "success",
                        &ctx,
                        serde_json::json!({"session_id": session.id}),
                    )]))
                    .await?;
                self.tokens_for(&session, fresh, now)
            }
            RotateOutcome::Reused(sid) => {
                let user = self.store.session(sid).await?.map(|s| s.user_id);
                self.store
                    .apply(Batch(vec![audit(
                        now,
                        user,
                        "refresh_reuse",
                        "family_revoked",
                        &ctx,
                        serde_json::json!({"session_id": sid}),
                    )]))
                    .await?;
                Err(AuthError::InvalidGrant)
            }
            RotateOutcome::Invalid => Err(AuthError::InvalidGrant),
            RotateOutcome::ProofMismatch => Err(refused(if proof.is_some() {
                "the proof is not signed by the key this session is bound to"
            } else {
                "this refresh token is bound to a device key: send a DPoP proof by it"
            })),
        }
    }

    /// The checks on a DPoP proof that need the clock, the store and the issuer (RFC 9449
    /// §4.3): method, URL, `iat` within ±60 s, `ath` when an access token comes with it, and
    /// first use of its `jti`. The signature was checked by the HTTP layer.
    async fn check_dpop(
        &self,
        p: &DpopProof,
        method: &str,
        path: &str,
        ath: Option<&str>,
        now: OffsetDateTime,
        resource: bool,
    ) -> Result<(), AuthError> {
        let refused = |reason| Err(AuthError::InvalidDpopProof { reason, resource });
        if p.htm != method {
            return refused("htm is not this request's method");
        }
        if dpop::target_uri(&p.htu) != format!("{}{path}", self.settings.tokens.issuer) {
            return refused("htu is not this request's URL");
        }
        // abs_diff: an iat near i64::MIN or MAX must not overflow.
        if p.iat.abs_diff(now.unix_timestamp()) > dpop::IAT_WINDOW_SECS.unsigned_abs() {
            return refused("iat is more than 60 seconds from the server's time");
        }
        if let Some(ath) = ath
            && p.ath.as_deref().is_none_or(|a| !ct_eq(a.as_bytes(), ath.as_bytes()))
        {
            return refused("ath is not the hash of this access token");
        }
        let id = sha256_b64(format!("{}.{}", p.jkt, p.jti).as_bytes());
        let keep_until = OffsetDateTime::from_unix_timestamp(p.iat + dpop::IAT_WINDOW_SECS).unwrap_or(now);
        if !self.store.use_dpop_proof(&id, keep_until.max(now)).await? {
            return refused("this proof (jti) was used already");
        }
        Ok(())
    }

    /// Verify an access token and load its live session and user. Revocation and account
    /// disablement take effect here, on the next request. A token bound to a device key
    /// (`cnf.jkt`) must come as `Authorization: DPoP` with a proof by that key for this request.
    pub async fn authenticate(&self, presented: Presented<'_>) -> Result<Principal, AuthError> {
        let claims = self.signer.verify(presented.token).map_err(|e| match e {
            TokenError::Signing(m) => AuthError::Internal(m),
            _ => AuthError::Unauthenticated,
        })?;
        let at = self.now();
        let now = at.unix_timestamp();
        if claims.exp <= now || claims.iat > now + 60 {
            return Err(AuthError::Unauthenticated);
        }
        let refused = |reason| AuthError::InvalidDpopProof { reason, resource: true };
        match (&claims.cnf, presented.dpop_scheme) {
            (Some(cnf), true) => {
                let p = presented.proof.as_ref().ok_or(refused("a DPoP proof is required with this token"))?;
                if !ct_eq(p.jkt.as_bytes(), cnf.jkt.as_bytes()) {
                    return Err(refused("the proof is not signed by the key this token is bound to"));
                }
                let ath = dpop::access_token_hash(presented.token);
                self.check_dpop(p, presented.method, presented.path, Some(&ath), at, true).await?;
            }
            // RFC 9449 §7.2: a bound token sent as a plain bearer token is refused.
            (Some(_), false) => return Err(refused("this token is bound to a device key: use Authorization: DPoP")),
            (None, true) => return Err(AuthError::Unauthenticated),
            (None, false) => {}
        }
        let sid: SessionId = claims.sid.parse().map_err(|_| AuthError::Unauthenticated)?;
        let session = self.store.session(sid).await?.ok_or(AuthError::Unauthenticated)?;
        if session.revoked_at.is_some() || session.user_id.to_string() != claims.sub {
            return Err(AuthError::Unauthenticated);
        }
        let user = self.store.user_by_id(session.user_id).await?.ok_or(AuthError::Unauthenticated)?;
        if user.status != UserStatus::Active {
            return Err(AuthError::Unauthenticated);
        }
        Ok(Principal { claims, session, user })
    }

    /// `POST /v1/sign-out`.
    pub async fn sign_out(
        &self,
        p: &Principal,
        scope: proto::SignOutScope,
        ctx: ClientContext,
    ) -> Result<(), AuthError> {
        let now = self.now();
        let revoke = match scope {
            proto::SignOutScope::Session => {
                Write::RevokeSession { id: p.session.id, at: now, reason: "sign_out".into() }
            }
            proto::SignOutScope::All => {
                Write::RevokeUserSessions { user_id: p.user.id, at: now, reason: "sign_out_all".into() }
            }
        };
        let scope_name = if scope == proto::SignOutScope::All { "all" } else { "session" };
        self.store
            .apply(Batch(vec![
                revoke,
                audit(
                    now,
                    Some(p.user.id),
                    "sign_out",
                    "success",
                    &ctx,
                    serde_json::json!({"scope": scope_name, "session_id": p.session.id}),
                ),
            ]))
            .await?;
        Ok(())
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
        }
    }

    /// `GET /v1/me/sessions`.
    pub async fn sessions(&self, p: &Principal) -> Result<proto::SessionList, AuthError> {
        let sessions = self.store.live_sessions(p.user.id, self.now()).await?;
        Ok(proto::SessionList {
            sessions: sessions
                .into_iter()
                .map(|s| proto::SessionInfo {
                    id: s.id.to_string(),
                    current: s.id == p.session.id,
                    acr: s.acr,
                    amr: s.amr,
                    auth_time: rfc3339(s.auth_time),
                    created_at: rfc3339(s.created_at),
                    last_refresh_at: rfc3339(s.last_refresh_at),
                    ip: s.context.ip,
                    user_agent: s.context.user_agent,
                })
                .collect(),
        })
    }

    /// `DELETE /v1/me/sessions/{id}`: only the caller's own sessions.
    pub async fn revoke_session(&self, p: &Principal, id: SessionId, ctx: ClientContext) -> Result<(), AuthError> {
        let session = self.store.session(id).await?.filter(|s| s.user_id == p.user.id).ok_or(AuthError::NotFound)?;
        let now = self.now();
        self.store
            .apply(Batch(vec![
                Write::RevokeSession { id: session.id, at: now, reason: "revoked_by_user".into() },
                audit(
                    now,
                    Some(p.user.id),
                    "session_revoked",
                    "success",
                    &ctx,
                    serde_json::json!({"session_id": session.id}),
                ),
            ]))
            .await?;
        Ok(())
    }

    // ----- administration --------------------------------------------------------------------

    /// Administrative changes to an account, by username.
    pub async fn admin_update(&self, username: &str, action: AdminAction, ctx: ClientContext) -> Result<(), AuthError> {
        let key = lookup_key(username).map_err(|_| AuthError::NotFound)?;
        let mut user = self.store.user_by_username(&key).await?.ok_or(AuthError::NotFound)?;
        let now = self.now();
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
        self.store.apply(batch).await?;
        Ok(())
    }

    // ----- TOTP ------------------------------------------------------------------------------

    /// `POST /v1/me/factors`: an `enroll` flow — `setup_totp` for `totp`, `verify_code` for `sms`
    /// and `email`. Needs a sign-in from the last `step_up_max_age_secs`, at `aal2` once the
    /// account has a factor that gives it (checklist LIFE-1).
    pub async fn enroll(
        &self,
        p: &Principal,
        req: &proto::EnrollFactorRequest,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        if self.settings.mfa.mode == MfaMode::Off {
            return Err(AuthError::InvalidRequest("second factors are turned off by policy".into()));
        }
        match req.kind.as_str() {
            TOTP => {}
            SMS | EMAIL => return self.enroll_destination(p, req, ctx).await,
            mfa::RECOVERY_CODES => return self.enroll_recovery_codes(p, ctx).await,
            "passkey" => return Err(AuthError::NotImplemented("passkeys are not supported yet")),
            _ => {
                return Err(AuthError::InvalidRequest(
                    "type must be totp, sms, email, recovery_codes or passkey".into(),
                ));
            }
        }
        if !self.settings.mfa.allows(MfaMethod::Totp) {
            return Err(AuthError::InvalidRequest("policy does not allow authenticator apps".into()));
        }
        let now = self.now();
        let factors = self.store.factors(p.user.id).await?;
        self.require_step_up(p, &factors)?;
        if factors.iter().any(|f| f.kind == TOTP && f.state == ACTIVE) {
            return Err(AuthError::InvalidRequest("an authenticator app is already enrolled".into()));
        }
        let (factor, state) = self.new_totp_enrolment(&p.user, now)?;
        // An earlier enrolment left unfinished is superseded.
        let mut writes: Vec<Write> = factors
            .iter()
            .filter(|f| f.kind == TOTP && f.state == PENDING)
            .map(|f| Write::DeleteFactor { id: f.id })
            .collect();
        writes.push(Write::InsertFactor(factor));
        self.start_enrollment(p, FlowId::new(), state, TOTP, writes, now, &ctx).await
    }

    /// Store a new `enroll` flow at `state` with `writes` and its audit event; the answer shows
    /// the flow's first step.
    #[allow(clippy::too_many_arguments)] // what is enrolled and how: all needed, none derivable
    async fn start_enrollment(
        &self,
        p: &Principal,
        flow_id: FlowId,
        state: FlowState,
        kind: &str,
        mut writes: Vec<Write>,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let flow = self.new_flow(flow_id, FlowKind::Enroll, Some(p.user.id), state, now, ctx.clone());
        writes.push(Write::InsertFlow(flow.clone()));
        writes.push(audit(
            now,
            Some(p.user.id),
            "enroll",
            "started",
            ctx,
            serde_json::json!({"flow_id": flow.id, "type": kind}),
        ));
        self.store.apply(Batch(writes)).await?;
        self.outbox_wakeup.notify_one();
        let step = flow.state.step_name();
        Ok(Self::outcome(flow, vec![StepEvent { step, outcome: "issued" }]))
    }

    /// A pending TOTP factor with a fresh 160-bit secret (RFC 4226 R6; NIST §3.1.4.1 asks for at
    /// least 112), sealed with the data key, and the `setup_totp` state that shows it.
    fn new_totp_enrolment(&self, user: &User, now: OffsetDateTime) -> Result<(Factor, FlowState), AuthError> {
        let id = FactorId::new();
        let secret = random_bytes(self.rng.as_ref(), 20);
        let sealed = self.keys.seal(self.rng.as_ref(), &id.to_string(), &secret)?;
        let factor = Factor {
            id,
            user_id: user.id,
            kind: TOTP.into(),
            state: PENDING.into(),
            secret_sealed: Some(sealed.clone()),
            last_step: None,
            created_at: now,
            last_used_at: None,
        };
        Ok((
            factor,
            FlowState::AwaitingTotpSetup { factor_id: id, account: user.username.clone(), secret_sealed: sealed },
        ))
    }

    /// Reserve an attempt and check a TOTP code. `Ok(Ok(found))`: the code matches a step after the
    /// factor's last one; `Ok(Err(answer))`: refused (wrong, replayed, locked).
    async fn check_totp(
        &self,
        flow: &Flow,
        factor_id: Option<FactorId>,
        given: &SecretString,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<Result<TotpMatch, FlowOutcome>, AuthError> {
        let step = flow.state.step_name();
        let user = self.user_of(flow).await?.ok_or(AuthError::FlowExpired)?;
        let attempts = match self.reserve_attempt(flow, step, Some(&user.username_canonical), OTP, now).await? {
            Ok(n) => n,
            Err(o) => return Ok(Err(o)),
        };
        // An enrolment names its pending factor; a sign-in uses the active authenticator app.
        let factor = self.store.factors(user.id).await?.into_iter().find(|f| match factor_id {
            Some(id) => f.id == id,
            None => f.kind == TOTP && f.state == ACTIVE,
        });
        let Some(factor) = factor else { return Err(AuthError::FlowExpired) };
        let secret = factor
            .secret_sealed
            .as_deref()
            .ok_or_else(|| AuthError::Internal("totp factor without a secret".into()))
            .and_then(|s| Ok(self.keys.open(&factor.id.to_string(), s)?))?;
        let params = TotpParams::default();
        let t = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        let last = factor.last_step.and_then(|s| u64::try_from(s).ok());
        if let Some(matched) = totp::verify(&secret, given.expose(), t, last, &params) {
            return Ok(Ok(TotpMatch { user, factor, step: matched, attempts }));
        }
        // Checklist TOTP-3: a replayed code is refused like a wrong one, but recorded as a replay.
        let replay = totp::verify(&secret, given.expose(), t, None, &params).is_some();
        Ok(Err(self.refuse(flow, step, attempts, replay, now, ctx).await?))
    }

    /// A wrong (or replayed) answer: the same step with one attempt fewer, or `denied` when it was
    /// the last attempt.
    async fn refuse(
        &self,
        flow: &Flow,
        step: &'static str,
        attempts: u32,
        replay: bool,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let outcome = if replay { "replay" } else { "failure" };
        let event = audit(now, flow.user_id, step, outcome, ctx, serde_json::json!({"flow_id": flow.id}));
        self.store.apply(Batch(vec![event])).await?;
        if attempts >= self.settings.flows.max_attempts {
            return self.deny(flow, step, now, ctx).await;
        }
        let mut o = Self::outcome(Flow { attempts, ..flow.clone() }, vec![StepEvent { step, outcome: "failed" }]);
        let message = match step {
            "device_signature" | "enroll_device" => "the signature or the PIN is not correct",
            _ => "the code is not correct",
        };
        o.error = step_error(codes::CODE_MISMATCH, message);
        Ok(o)
    }

    /// Commit a TOTP success; a parallel request that spent the same step first makes this one a
    /// replay (refused like a wrong code).
    async fn commit_totp(
        &self,
        batch: Batch,
        flow: &Flow,
        attempts: u32,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<Option<FlowOutcome>, AuthError> {
        match self.store.apply(batch).await {
            Err(StoreError::Conflict("totp_step")) => {
                Ok(Some(self.refuse(flow, flow.state.step_name(), attempts, true, now, ctx).await?))
            }
            // A parallel enrolment activated another authenticator app first.
            Err(StoreError::Conflict("factor")) => {
                Err(AuthError::InvalidRequest("an authenticator app is already enrolled".into()))
            }
            Err(StoreError::Conflict("flow")) => Err(AuthError::FlowCompleted),
            Err(e) => Err(e.into()),
            Ok(()) => Ok(None),
        }
    }

    async fn confirm_totp_setup(
        &self,
        flow: Flow,
        factor_id: FactorId,
        given: SecretString,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let found = match self.check_totp(&flow, Some(factor_id), &given, now, &ctx).await? {
            Ok(found) => found,
            Err(o) => return Ok(o),
        };
        let (user, factor) = (&found.user, &found.factor);
        let mut batch = Batch(found.accepted(now));
        batch.push(Write::ActivateFactor { id: factor.id });
        // Inside a sign-in (policy requires MFA), the first code also completes the sign-in.
        let (done, tokens) = if flow.kind == FlowKind::SignIn {
            self.after_second_factor(&flow, user, MfaMethod::Totp, user.must_change_password, now, &ctx, &mut batch)
                .await?
        } else {
            let done =
                Flow { state: FlowState::Completed { session_id: None }, version: flow.version + 1, ..flow.clone() };
            batch.push(Write::UpdateFlow { flow: done.clone(), expected_version: flow.version });
            (done, None)
        };
        batch.push(audit(
            now,
            Some(user.id),
            "factor_added",
            "success",
            &ctx,
            serde_json::json!({"factor_id": factor.id, "type": TOTP}),
        ));
        // Checklist LIFE-1: every new factor is announced to the account's address.
        for message in self.notification(user, "An authenticator app was added", "An authenticator app was added as a second factor to your account. If this was not you, reset your password and contact support.", now)? {
            batch.push(Write::Enqueue(message));
        }
        if let Some(refused) = self.commit_totp(batch, &flow, found.attempts, now, &ctx).await? {
            return Ok(refused);
        }
        self.outbox_wakeup.notify_one();
        Ok(FlowOutcome {
            flow: done,
            tokens,
            error: None,
            events: vec![StepEvent { step: "setup_totp", outcome: "verified" }],
        })
    }

    async fn totp_sign_in(
        &self,
        flow: Flow,
        then_new_password: bool,
        given: SecretString,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let found = match self.check_totp(&flow, None, &given, now, &ctx).await? {
            Ok(found) => found,
            Err(o) => return Ok(o),
        };
        let mut batch = Batch(found.accepted(now));
        let (next, tokens) = self
            .after_second_factor(&flow, &found.user, MfaMethod::Totp, then_new_password, now, &ctx, &mut batch)
            .await?;
        if let Some(refused) = self.commit_totp(batch, &flow, found.attempts, now, &ctx).await? {
            return Ok(refused);
        }
        Ok(FlowOutcome {
            flow: next,
            tokens,
            error: None,
            events: vec![StepEvent { step: "totp_code", outcome: "verified" }],
        })
    }

    /// A security notice to each verified address of the account (email and phone).
    fn notification(
        &self,
        user: &User,
        subject: &str,
        body: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<OutboxMessage>, AuthError> {
        // Checklist LIFE-1: every verified address of the account hears of a change.
        let email = user.email.as_deref().filter(|_| user.email_verified).map(|e| (Channel::Email, e));
        let phone = user.phone.as_deref().filter(|_| user.phone_verified).map(|p| (Channel::Sms, p));
        email.into_iter().chain(phone).map(|(c, to)| self.sealed_message(c, to, subject, body, now)).collect()
    }

    // ----- codes and limits ------------------------------------------------------------------

    fn new_flow(
        &self,
        id: FlowId,
        kind: FlowKind,
        user_id: Option<UserId>,
        state: FlowState,
        now: OffsetDateTime,
        context: ClientContext,
    ) -> Flow {
        let ttl = match state {
            FlowState::AwaitingConfirmation { .. }
            | FlowState::AwaitingReset { .. }
            | FlowState::AwaitingVerification { .. }
            | FlowState::AwaitingRecoveryCodesSaved { .. }
            | FlowState::AwaitingTotpSetup { .. } => self.settings.flows.code_ttl_secs,
            FlowState::AwaitingDeviceSignature { .. } => {
                device::DEVICE_NONCE_TTL_SECS.min(self.settings.flows.ttl_secs)
            }
            _ => self.settings.flows.ttl_secs,
        };
        Flow {
            id,
            kind,
            user_id,
            state,
            attempts: 0,
            sends: 1,
            version: 0,
            created_at: now,
            expires_at: now + secs(ttl),
            context,
        }
    }

    /// A fresh 6-digit code (CSPRNG), its MAC for the flow, and the sealed message carrying it.
    fn issue_code(
        &self,
        flow_id: FlowId,
        channel: Channel,
        to: &str,
        masked: String,
        subject: &str,
        now: OffsetDateTime,
    ) -> Result<(CodeChallenge, OutboxMessage), AuthError> {
        let code = random_digits(self.rng.as_ref(), 6);
        let ttl = self.settings.flows.code_ttl_secs;
        let challenge = CodeChallenge {
            mac: self.keys.mac("code", &flow_id.to_string(), code.expose()),
            channel,
            destination: masked,
            expires_at: now + secs(ttl),
        };
        let body = format!(
            "Your {} code is {}. It expires in {} minutes. If you did not ask for it, ignore this message.",
            self.settings.product_name,
            code.expose(),
            ttl / 60
        );
        Ok((challenge, self.sealed_message(channel, to, subject, &body, now)?))
    }

    /// A code nobody knows, for look-alike flows (a taken username, an unknown account): the
    /// answer has the same shape, nothing is sent and no answer matches.
    fn unknowable_code(
        &self,
        flow_id: FlowId,
        channel: Channel,
        destination: String,
        now: OffsetDateTime,
    ) -> CodeChallenge {
        let unknowable = random_token(self.rng.as_ref(), 32);
        CodeChallenge {
            mac: self.keys.mac("code", &flow_id.to_string(), unknowable.expose()),
            channel,
            destination,
            expires_at: now + secs(self.settings.flows.code_ttl_secs),
        }
    }

    /// A message for the outbox, its body sealed with the data key (it may hold a code).
    fn sealed_message(
        &self,
        channel: Channel,
        to: &str,
        subject: &str,
        body: &str,
        now: OffsetDateTime,
    ) -> Result<OutboxMessage, AuthError> {
        let id = MessageId::new();
        let (channel_name, provider) = match channel {
            Channel::Sms => ("sms", self.routes.sms.clone()),
            _ => ("email", self.routes.email.clone()),
        };
        Ok(OutboxMessage {
            id,
            channel: channel_name.into(),
            provider,
            to: to.into(),
            subject: format!("{} – {}", self.settings.product_name, subject),
            body_sealed: Some(self.keys.seal(self.rng.as_ref(), &id.to_string(), body.as_bytes())?),
            status: OutboxStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            created_at: now,
            sent_at: None,
        })
    }

    /// Checklist OOB-5: per account, destination and IP per window, plus the daily SMS share of
    /// the client and the server's daily SMS budget.
    async fn check_send_limits(
        &self,
        account: &str,
        destination: Option<&str>,
        ctx: &ClientContext,
        channel: Channel,
    ) -> Result<(), AuthError> {
        self.send_limits(&format!("send:account:{account}"), destination, ctx, channel, true).await
    }

    /// The limits of a request that sends nothing (a look-alike answer for a taken or unknown
    /// username): counted like a real send so the answers stay alike, but on a bucket of its own,
    /// so strangers never spend a real account's budget.
    async fn check_look_alike_limits(
        &self,
        account: &str,
        destination: Option<&str>,
        ctx: &ClientContext,
        channel: Channel,
    ) -> Result<(), AuthError> {
        self.send_limits(&format!("send:look_alike:{account}"), destination, ctx, channel, false).await
    }

    async fn send_limits(
        &self,
        account_bucket: &str,
        destination: Option<&str>,
        ctx: &ClientContext,
        channel: Channel,
        real: bool,
    ) -> Result<(), AuthError> {
        let l = &self.settings.limits;
        if channel == Channel::Sms
            && let Some(d) = destination
            && !l.sms_allowed(d)
        {
            return Err(AuthError::InvalidRequest("text messages cannot be sent to this phone number".into()));
        }
        let now = self.now();
        let window = i64::try_from(l.send_window_secs.max(1)).unwrap_or(900);
        let start = OffsetDateTime::from_unix_timestamp(now.unix_timestamp() - now.unix_timestamp().rem_euclid(window))
            .unwrap_or(now);
        let mut buckets = vec![(account_bucket.to_owned(), l.sends_per_account)];
        if let Some(d) = destination {
            buckets.push((format!("send:destination:{d}"), l.sends_per_destination));
        }
        if let Some(ip) = &ctx.ip {
            buckets.push((format!("send:ip:{ip}"), l.sends_per_ip));
        }
        if !self.store.hit_rate_limits(&buckets, start).await? {
            return Err(AuthError::LimitExceeded {
                retry_after_secs: retry_after(now, start + secs(l.send_window_secs)),
                limit: "send_rate",
            });
        }
        if channel == Channel::Sms && !self.sms_day_allows(ctx, real && destination.is_some()).await? {
            let next_day = 86_400 - u64::try_from(now.unix_timestamp().rem_euclid(86_400)).unwrap_or(0);
            return Err(AuthError::LimitExceeded { retry_after_secs: next_day.max(1), limit: "sms_daily" });
        }
        Ok(())
    }

    /// One more text message today: within the client IP's daily share (so no single client
    /// spends the server's budget) and, for a real send (`real`), the server's daily budget.
    async fn sms_day_allows(&self, ctx: &ClientContext, real: bool) -> Result<bool, AuthError> {
        let l = &self.settings.limits;
        let now = self.now();
        let day = OffsetDateTime::from_unix_timestamp(now.unix_timestamp() - now.unix_timestamp().rem_euclid(86_400))
            .unwrap_or(now);
        if let Some(ip) = &ctx.ip
            && !self.store.hit_rate_limits(&[(format!("sms:daily:ip:{ip}"), l.sms_daily_per_ip)], day).await?
        {
            return Ok(false);
        }
        if !real {
            return Ok(true);
        }
        Ok(self.store.hit_rate_limits(&[("sms:daily".into(), l.sms_daily_budget)], day).await?)
    }
}

/// What a right sign-up confirmation code leads to.
#[derive(Debug, Clone, Copy)]
enum AfterConfirm {
    /// Done; with a session when the password was verified in this flow.
    SignIn(bool),
    /// A passwordless sign-up: enrol the first device.
    EnrollDevice,
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

/// The same code step with a new code.
fn with_code(state: &FlowState, code: Option<CodeChallenge>) -> FlowState {
    match (state, code) {
        (FlowState::AwaitingConfirmation { sign_in_after, then_enroll_device, .. }, Some(code)) => {
            FlowState::AwaitingConfirmation {
                code,
                sign_in_after: *sign_in_after,
                then_enroll_device: *then_enroll_device,
            }
        }
        (FlowState::AwaitingReset { .. }, code) => FlowState::AwaitingReset { code },
        (FlowState::AwaitingVerification { channel, value, .. }, Some(code)) => {
            FlowState::AwaitingVerification { channel: *channel, value: value.clone(), code }
        }
        (FlowState::AwaitingMfa { method, methods, then_new_password, new_device, push, recovery, .. }, Some(code)) => {
            FlowState::AwaitingMfa {
                method: *method,
                methods: methods.clone(),
                code: Some(code),
                then_new_password: *then_new_password,
                new_device: new_device.clone(),
                push: push.clone(),
                recovery: recovery.clone(),
            }
        }
        (other, _) => other.clone(),
    }
}

/// A flow past its expiry: at a code step the code expired with it (Cognito's `ExpiredCode`).
fn expired(state: &FlowState) -> AuthError {
    match state {
        FlowState::AwaitingConfirmation { .. }
        | FlowState::AwaitingReset { .. }
        | FlowState::AwaitingVerification { .. }
        | FlowState::AwaitingMfa { code: Some(_), .. } => AuthError::ExpiredCode,
        _ => AuthError::FlowExpired,
    }
}

fn flow_masked(flow: &Flow) -> String {
    match &flow.state {
        FlowState::AwaitingConfirmation { code, .. } => code.destination.clone(),
        _ => String::new(),
    }
}

/// Where a sign-up confirmation code goes: the email if any, else the phone.
fn confirmation_destination(u: &User) -> Result<(Channel, String, String), AuthError> {
    if let Some(e) = u.email.as_deref().and_then(|e| Email::parse(e).ok()) {
        return Ok((Channel::Email, e.as_str().to_owned(), e.masked()));
    }
    if let Some(p) = u.phone.as_deref().and_then(|p| Phone::parse(p).ok()) {
        return Ok((Channel::Sms, p.as_str().to_owned(), p.masked()));
    }
    Err(AuthError::Internal("account has no email or phone".into()))
}

/// Whether the methods verified cover two distinct factor classes (knowledge, possession,
/// inherence). An email code is not a possession factor (NIST SP 800-63B-4 §3.1.3.1, checklist
/// OOB-7), and the same class twice is still one (checklist FLOW-2). A biometric (`fpt`, `face`,
/// `iris`) appears only with the device key it unlocked, as evidenced (checklist DEV-4).
fn two_classes(amr: &[&str]) -> bool {
    let knowledge = amr.iter().any(|m| matches!(*m, "pwd" | "pin"));
    let possession = amr.iter().any(|m| matches!(*m, "otp" | "hwk" | "sms"));
    let inherence = amr.iter().any(|m| matches!(*m, "fpt" | "face" | "iris"));
    u8::from(knowledge) + u8::from(possession) + u8::from(inherence) >= 2
}

/// NIST SP 800-63B-4 §2.2: two factors of different classes make `aal2`; one makes `aal1`.
/// Where policy requires a phishing-resistant authenticator, only a hardware key (`hwk`) counts
/// (checklist FLOW-5). Computed from the methods verified in this flow, never cached.
fn assurance(amr: &[&str], phishing_resistant: bool) -> &'static str {
    let resistant = !phishing_resistant || amr.contains(&"hwk");
    if two_classes(amr) && resistant { "aal2" } else { "aal1" }
}

/// The RFC 8176 `amr`, with `mfa` when more than one factor class was verified.
fn with_mfa(amr: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = amr.iter().map(|s| (*s).to_owned()).collect();
    if two_classes(amr) {
        out.push("mfa".into());
    }
    out
}

fn amr_or_pwd(amr: &[String]) -> Vec<&str> {
    if amr.is_empty() { vec!["pwd"] } else { amr.iter().map(String::as_str).collect() }
}

/// A TOTP code that matched: whose, which factor, the step to consume, the attempt it used.
struct TotpMatch {
    user: User,
    factor: Factor,
    step: u64,
    attempts: u32,
}

impl TotpMatch {
    /// The writes every accepted code makes: spend its step (refused if a parallel request spent
    /// it first) and reset the account's TOTP failure counter.
    fn accepted(&self, now: OffsetDateTime) -> Vec<Write> {
        vec![
            Write::ConsumeTotpStep { id: self.factor.id, step: i64::try_from(self.step).unwrap_or(i64::MAX), at: now },
            Write::ClearFailures { key: self.user.username_canonical.clone(), kind: OTP.into() },
        ]
    }
}

/// What an authenticator app needs, from the secret.
struct TotpEnrolment {
    secret: String,
    uri: String,
    qr_svg: String,
}

/// The Key URI Format (`otpauth://totp/Issuer:account?secret=…&issuer=…`) with SHA1, 6 digits,
/// 30 s spelled out, and the QR code of it as SVG.
fn totp_enrolment(issuer: &str, account: &str, secret: &[u8]) -> Result<TotpEnrolment, AuthError> {
    let b32 = data_encoding::BASE32_NOPAD.encode(secret);
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let uri = format!(
        "otpauth://totp/{}:{}?secret={b32}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer),
        enc(account),
        enc(issuer)
    );
    let qr = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| AuthError::Internal(e.to_string()))?;
    let qr_svg = qr.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).build();
    Ok(TotpEnrolment { secret: b32, uri, qr_svg })
}
