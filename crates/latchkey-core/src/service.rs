//! The authentication service: every flow as a state machine over stored flow records. This file
//! holds the shared context (`Auth`), the flow dispatcher — the `(state, answer)` table in
//! `submit` — and the step mechanics every flow uses; each flow and each room of the account has
//! a file of its own under `service/`: `sign_up`, `sign_in`, `mfa` (second factors at sign-in),
//! `verification` (a new phone or address), `factors` (managing them), `device` (device keys and
//! PIN), `push` (approval with number matching), `recovery`, `undo` ("this wasn't me"),
//! `authenticator` (TOTP), `sessions` (tokens, refresh, DPoP, sign-out), `admin`, `answers`
//! (what the app is shown) and `limits` (flow records, codes and send limits).
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

mod admin;
mod answers;
mod authenticator;
mod device;
mod factors;
mod limits;
mod mfa;
mod push;
mod recovery;
mod sessions;
mod sign_in;
mod sign_up;
mod undo;
mod verification;
use authenticator::totp_enrolment;
pub use device::{DeviceEnrollment, NewBiometricKey};
use mfa::{EMAIL, SMS};
use sessions::amr_or_pwd;
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
