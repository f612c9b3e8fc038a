//! The flow engine: loading a flow record for the client that started it, expiry, and the step
//! mechanics every flow uses — attempt reservation, code checks, refusal and denial, the
//! compare-and-swap commit, resending a code — plus flow records, codes and send limits
//! (`limits`) and what a flow shows the app (`answers`). The `(state, answer)` table that
//! dispatches to the flows is `flows/mod.rs`; the flow record and its states are
//! `model::flow`.
//!
//! Invariants:
//! - A transition is a compare-and-swap on the flow's version, committed in one batch with its
//!   outbox messages and audit events; concurrent answers to one step yield exactly one success.
//! - An attempt is reserved (counted) atomically *before* its answer is evaluated, or (a
//!   sign-in's TOTP, SMS or email code, a biometric device signature) before it takes effect:
//!   the answer is checked first and its writes are made in the transaction that counts it,
//!   only if the count grants it (`Store::reserve_attempt_and_apply`). Either way, however
//!   parallel the burst, no more answers than the cap take effect or are answered.
//! - Failure counters are keyed by the canonical username whether or not the account exists, so
//!   lockouts reveal nothing and case or normalisation variants share one counter.

use crate::auth::{Auth, FlowOutcome, StepEvent, audit, secs, step_error};
use crate::error::{AuthError, retry_after};
use crate::ids::FlowId;
use crate::model::*;
use crate::secret::{SecretString, ct_eq};
use crate::store::{Batch, StoreError, Write};
use latchkey_proto::{Channel, DenialReason, codes};
use time::OffsetDateTime;

/// A device sign-in's nonce lives this long (seconds).
pub(crate) const DEVICE_NONCE_TTL_SECS: u64 = 120;

mod answers;
mod genuine;
mod limits;
pub(crate) mod risk;

impl Auth {
    /// `GET /v1/flows/{id}`.
    /// A flow at `push_approval` learns the phone's answer here.
    pub async fn current(&self, id: FlowId, ctx: &ClientContext) -> Result<FlowOutcome, AuthError> {
        let flow = self.load_flow(id, ctx).await?;
        if !flow.state.is_terminal() && flow.expires_at <= self.now() {
            return Err(expired(&flow.state));
        }
        self.settle_push(flow, ctx).await
    }

    pub(crate) async fn load_flow(&self, id: FlowId, ctx: &ClientContext) -> Result<Flow, AuthError> {
        let flow = self.store.flow(id).await?.ok_or(AuthError::FlowNotFound)?;
        // A flow answers only the client that started it (same User-Agent). An operator's
        // invitation is answered first by the invitee's client, which its code binds it to.
        let unbound_invitation = flow.context.user_agent.is_none()
            && matches!(flow.state, FlowState::AwaitingConfirmation { invited: true, .. });
        if flow.context.user_agent != ctx.user_agent && !unbound_invitation {
            return Err(AuthError::ContextMismatch);
        }
        Ok(flow)
    }

    /// Reserve an attempt on the flow and, for a known user, on the account's code counter, then
    /// check the code. `Ok(Ok(()))`: right; `Ok(Err(outcome))`: the answer to return.
    pub(crate) async fn check_code(
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
        if self.code_is_right(flow, code, given, now) {
            return Ok(Ok(()));
        }
        Ok(Err(self.refuse(flow, step, attempts, false, now, ctx).await?))
    }

    /// Whether `given` is the flow's code and the code has not expired. Checklist OOB-3: a wrong,
    /// expired or absent code is one and the same refusal.
    pub(crate) fn code_is_right(
        &self,
        flow: &Flow,
        code: Option<&CodeChallenge>,
        given: &SecretString,
        now: OffsetDateTime,
    ) -> bool {
        let mac = self.keys.mac("code", &flow.id.to_string(), given.expose().trim());
        code.is_some_and(|c| ct_eq(mac.as_bytes(), c.mac.as_bytes()) && c.expires_at > now)
    }

    /// Count one more answer on the flow and on the account's `kind` counter, before evaluating
    /// it. `Ok(Ok(n))`: go ahead, this is attempt `n`; `Ok(Err(answer))`: refused unevaluated.
    pub(crate) async fn reserve_attempt(
        &self,
        flow: &Flow,
        step: &'static str,
        account_key: Option<&str>,
        kind: &str,
        now: OffsetDateTime,
    ) -> Result<Result<u32, FlowOutcome>, AuthError> {
        let account = self.code_counter(account_key, kind, now);
        let reserved = self.store.reserve_attempt(flow.id, self.settings.flows.max_attempts, account).await?;
        self.reserved(flow, step, reserved).await
    }

    /// The account's `kind` counter of wrong codes, for a known user.
    pub(crate) fn code_counter(
        &self,
        account_key: Option<&str>,
        kind: &str,
        now: OffsetDateTime,
    ) -> Option<AccountCounter> {
        account_key.map(|key| AccountCounter {
            key: key.to_owned(),
            kind: kind.to_owned(),
            now,
            policy: self.settings.limits.code,
        })
    }

    /// What a reservation means for the step: `Ok(Ok(n))`, go ahead, this is attempt `n`;
    /// `Ok(Err(answer))`, refused unevaluated.
    pub(crate) async fn reserved(
        &self,
        flow: &Flow,
        step: &'static str,
        reserved: AttemptReservation,
    ) -> Result<Result<u32, FlowOutcome>, AuthError> {
        let max = self.settings.flows.max_attempts;
        let Some(attempts) = reserved.attempts else {
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
        if let Some(Reservation::Locked(_)) = reserved.account {
            // A locked counter answers a right code exactly as a wrong one (checklist RL-7); the
            // operators' metric says it was the lockout.
            let mut o = Self::outcome(Flow { attempts, ..flow.clone() }, vec![StepEvent { step, outcome: "locked" }]);
            o.error = step_error(codes::LIMIT_EXCEEDED, "too many wrong codes; try again later");
            return Ok(Err(o));
        }
        Ok(Ok(attempts))
    }

    /// End a flow whose attempts are exhausted. Concurrent callers all answer `denied`.
    pub(crate) async fn deny(
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
        match self.apply(batch).await {
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
    pub(crate) async fn commit(&self, batch: Batch, flow_id: FlowId) -> Result<(), AuthError> {
        self.committed(self.apply(batch).await, flow_id).await
    }

    /// What a transition's write answered, as [`Self::commit`] answers it.
    pub(crate) async fn committed(&self, applied: Result<(), StoreError>, flow_id: FlowId) -> Result<(), AuthError> {
        match applied {
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
            // A step-up's session was revoked or expired meanwhile.
            Err(StoreError::Conflict("session")) => Err(AuthError::Unauthenticated),
            // Another approval is outstanding for the account (checklist PUSH-4).
            Err(StoreError::Conflict("approval_pending")) => Err(AuthError::LimitExceeded {
                retry_after_secs: self.settings.push.approval_ttl_secs.max(1),
                limit: "push_outstanding",
            }),
            Err(e) => Err(e.into()),
        }
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
                let message = match (&flow.state, flow.kind) {
                    (_, FlowKind::Recovery) => "code_recovery",
                    (FlowState::AwaitingMfa { .. }, _) => "code_sign_in",
                    (FlowState::AwaitingVerification { .. }, _) => "code_verify_new_address",
                    _ => "code_sign_up",
                };
                let locale = user.as_ref().and_then(|u| u.profile.locale.as_deref());
                let (c, message) = self.issue_code(flow.id, *channel, dest, masked.clone(), (message, locale), now)?;
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
        let fresh = self.store.flow(flow.id).await?.unwrap_or(updated);
        Ok(Self::outcome(fresh, vec![StepEvent { step: flow.state.step_name(), outcome: "issued" }]))
    }

    pub(crate) async fn user_of(&self, flow: &Flow) -> Result<Option<User>, AuthError> {
        Ok(match flow.user_id {
            Some(id) => self.store.user_by_id(id).await?,
            None => None,
        })
    }

    /// A wrong (or replayed) answer: the same step with one attempt fewer, or `denied` when it was
    /// the last attempt.
    pub(crate) async fn refuse(
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
        self.apply(Batch(vec![event])).await?;
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
}

/// The same code step with a new code.
pub(crate) fn with_code(state: &FlowState, code: Option<CodeChallenge>) -> FlowState {
    match (state, code) {
        (FlowState::AwaitingConfirmation { sign_in_after, then_enroll_device, invited, .. }, Some(code)) => {
            FlowState::AwaitingConfirmation {
                code,
                sign_in_after: *sign_in_after,
                then_enroll_device: *then_enroll_device,
                invited: *invited,
            }
        }
        (FlowState::AwaitingReset { .. }, code) => FlowState::AwaitingReset { code },
        (FlowState::AwaitingVerification { channel, value, .. }, Some(code)) => {
            FlowState::AwaitingVerification { channel: *channel, value: value.clone(), code }
        }
        (
            FlowState::AwaitingMfa { method, methods, then_new_password, new_device, push, recovery, step_up, .. },
            Some(code),
        ) => FlowState::AwaitingMfa {
            method: *method,
            methods: methods.clone(),
            code: Some(code),
            then_new_password: *then_new_password,
            new_device: new_device.clone(),
            push: push.clone(),
            recovery: recovery.clone(),
            step_up: step_up.clone(),
            custom: None,
            passkey: None,
        },
        (other, _) => other.clone(),
    }
}

/// A flow past its expiry: at a code step the code expired with it (Cognito's `ExpiredCode`).
pub(crate) fn expired(state: &FlowState) -> AuthError {
    match state {
        FlowState::AwaitingConfirmation { .. }
        | FlowState::AwaitingReset { .. }
        | FlowState::AwaitingVerification { .. }
        | FlowState::AwaitingMfa { code: Some(_), .. } => AuthError::ExpiredCode,
        _ => AuthError::FlowExpired,
    }
}
