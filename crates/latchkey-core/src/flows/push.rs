//! Push approval with number matching (DESIGN.md, "Push approval"; checklist PUSH-1…4).
//!
//! A sign-in at `push_approval` asks the account's enrolled devices: an approval row with a
//! two-digit number shown on the signing-in screen and a server nonce. A device, authenticated
//! by a DPoP-style proof of its possession key, fetches the details and answers with its
//! biometric key's signature over [`proto::approval_message`]. The waiting flow learns the
//! answer from the database when it is read (`GET /v1/flows/{id}`, held or polled), so the
//! phone and the sign-in may talk to different replicas.

use crate::auth::{Auth, FlowOutcome, OTP, StepEvent, audit, secs};
use crate::clock::rfc3339;
use crate::dpop::{self, DpopProof};
use crate::error::{AuthError, retry_after};
use crate::factors::device::{self as dk};
use crate::ids::{ApprovalId, DeviceId, FlowId, MessageId, UserId};
use crate::model::*;
use crate::secret::{ct_eq, random_digits, random_token};
use crate::store::{Batch, StoreError, Write};
use latchkey_proto as proto;
use latchkey_proto::{ApprovalDecision, DenialReason, MfaMethod};
use time::{Duration, OffsetDateTime};

/// The approval's kind for a new device's first sign-in, and for any other sign-in.
const NEW_DEVICE: &str = "new_device";
const SIGN_IN: &str = "sign_in";
/// The second proof of a recovery.
const RECOVERY: &str = "recovery";

/// How a held `GET /v1/flows/{id}` re-reads the database for an answer given on another replica.
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(250);

impl Auth {
    /// `select_mfa` with `push_approval`: ask the account's devices. Refused (429
    /// `limit_exceeded`, nothing sent) while another approval is outstanding, past the cap per
    /// window, or for a while after the user answered one "this wasn't me" (checklist PUSH-4).
    pub(crate) async fn ask_devices(
        &self,
        flow: &Flow,
        user: &User,
        now: OffsetDateTime,
        ctx: &ClientContext,
        batch: &mut Batch,
    ) -> Result<PushChallenge, AuthError> {
        let policy = &self.settings.push;
        if let Some(at) = self.store.last_reported_approval(user.id).await?
            && now < at + secs(policy.report_lock_secs)
        {
            return Err(AuthError::LimitExceeded {
                retry_after_secs: retry_after(now, at + secs(policy.report_lock_secs)),
                limit: "push_paused",
            });
        }
        let window = i64::try_from(policy.window_secs.max(1)).unwrap_or(900);
        let start = OffsetDateTime::from_unix_timestamp(now.unix_timestamp() - now.unix_timestamp().rem_euclid(window))
            .unwrap_or(now);
        let bucket = format!("push:account:{}", user.id);
        if !self.store.hit_rate_limits(&[(bucket, policy.max_per_window)], start).await? {
            return Err(AuthError::LimitExceeded {
                retry_after_secs: retry_after(now, start + Duration::seconds(window)),
                limit: "push_rate",
            });
        }
        let expires_at = (now + secs(policy.approval_ttl_secs)).min(flow.expires_at);
        let new_device = matches!(&flow.state, FlowState::AwaitingMfa { new_device: Some(_), .. });
        let recovery = matches!(&flow.state, FlowState::AwaitingMfa { recovery: Some(_), .. });
        let action = match &flow.state {
            FlowState::AwaitingMfa { step_up: Some(StepUp { action: Some(a), .. }), .. } => Some(a.clone()),
            _ => None,
        };
        let approval = Approval {
            id: ApprovalId::new(),
            user_id: user.id,
            flow_id: flow.id,
            kind: match &action {
                // The phone's signature covers the kind, so it covers the action's hash.
                Some(a) => proto::action_approval_kind(&a.hash),
                None if new_device => NEW_DEVICE.into(),
                None if recovery => RECOVERY.into(),
                None => SIGN_IN.into(),
            },
            // 10–99: two digits, never a leading zero to mistype.
            number: (10 + random_digits(self.rng.as_ref(), 4).expose().parse::<u32>().unwrap_or(0) % 90).to_string(),
            nonce: random_token(self.rng.as_ref(), 16).expose().to_owned(),
            status: ApprovalStatus::Pending,
            created_at: now,
            expires_at,
            decided_at: None,
            device_id: None,
            context: flow.context.clone(),
            action: action.as_ref().map(|a| a.action.clone()),
        };
        let challenge = PushChallenge { approval_id: approval.id, number: approval.number.clone(), expires_at };
        // The notification carries the approval id only; the phone fetches the rest, signed.
        let data = proto::PushData { kind: "approval".into(), approval_id: Some(approval.id.to_string()) };
        let id = if action.is_some() {
            "push_action"
        } else if recovery {
            "push_recovery"
        } else if new_device {
            "push_new_device"
        } else {
            "push_sign_in"
        };
        let (title, text) = self.text(user.profile.locale.as_deref(), id, &[]);
        batch.push(Write::InsertApproval(approval));
        for m in self.push_to_devices(user.id, None, &title, &text, &data, now).await? {
            batch.push(Write::Enqueue(m));
        }
        batch.push(audit(
            now,
            Some(user.id),
            "push_approval",
            "issued",
            ctx,
            serde_json::json!({"flow_id": flow.id, "approval_id": challenge.approval_id}),
        ));
        Ok(challenge)
    }

    /// A flow at `push_approval`, brought up to date with its approval: `done` with tokens once
    /// approved (the flow's compare-and-swap gives them to one reader), `denied` when denied,
    /// reported, answered with a wrong number or expired; otherwise unchanged.
    pub(crate) async fn settle_push(&self, flow: Flow, ctx: &ClientContext) -> Result<FlowOutcome, AuthError> {
        let FlowState::AwaitingMfa { method: Some(MfaMethod::PushApproval), push: Some(p), then_new_password, .. } =
            flow.state.clone()
        else {
            return Ok(Self::outcome(flow, vec![]));
        };
        let now = self.now();
        let approval = self.store.approval(p.approval_id).await?;
        let status = approval.as_ref().map_or(ApprovalStatus::Expired, |a| a.status);
        let step = "push_approval";
        let ended = |reason| Flow { state: FlowState::Denied { reason }, version: flow.version + 1, ..flow.clone() };
        let (next, tokens, outcome) = match status {
            ApprovalStatus::Pending if now < p.expires_at => return Ok(Self::outcome(flow, vec![])),
            ApprovalStatus::Approved => {
                let user = self.user_of(&flow).await?.ok_or(AuthError::FlowExpired)?;
                let mut batch = Batch::new();
                let (next, tokens, approval) = match &flow.state {
                    FlowState::AwaitingMfa { step_up: Some(su @ StepUp { action: Some(_), .. }), .. } => {
                        let method = MfaMethod::PushApproval;
                        let verified = [self.amr_of(method)];
                        self.finish_step_up(&flow, &user, &verified, Some(method.as_str()), su, now, ctx, &mut batch)
                            .await?
                    }
                    _ => {
                        let (next, tokens) = self
                            .after_second_factor(
                                &flow,
                                &user,
                                MfaMethod::PushApproval,
                                then_new_password,
                                now,
                                ctx,
                                &mut batch,
                            )
                            .await?;
                        (next, tokens, None)
                    }
                };
                if let Some(current) = self.commit_or_current(batch, flow.id).await? {
                    return Ok(Self::outcome(current, vec![]));
                }
                return Ok(FlowOutcome { approval, ..FlowOutcome::verified(next, tokens, step) });
            }
            ApprovalStatus::Pending | ApprovalStatus::Expired | ApprovalStatus::Withdrawn => {
                (ended(DenialReason::Expired), None, "expired")
            }
            ApprovalStatus::Denied | ApprovalStatus::Reported => (ended(DenialReason::Denied), None, "denied"),
        };
        let mut batch = Batch::new();
        batch.push(Write::UpdateFlow { flow: next.clone(), expected_version: flow.version }).push(audit(
            now,
            flow.user_id,
            step,
            outcome,
            ctx,
            serde_json::json!({"flow_id": flow.id, "approval_id": p.approval_id}),
        ));
        if let Some(current) = self.commit_or_current(batch, flow.id).await? {
            return Ok(Self::outcome(current, vec![]));
        }
        Ok(FlowOutcome { flow: next, tokens, error: None, events: vec![StepEvent { step, outcome }], approval: None })
    }

    /// Commit a transition that reading the flow brings about. When another reader (or answer)
    /// moved it first, a read does not fail: the flow as it now stands is the answer (`done`
    /// without tokens, or `denied`). `Ok(None)`: this request made the transition.
    async fn commit_or_current(&self, batch: Batch, flow_id: FlowId) -> Result<Option<Flow>, AuthError> {
        match self.apply(batch).await {
            Ok(()) => Ok(None),
            Err(StoreError::Conflict("flow")) => {
                Ok(Some(self.store.flow(flow_id).await?.ok_or(AuthError::FlowNotFound)?))
            }
            // A step-up's session was revoked or expired before the phone's answer was read.
            Err(StoreError::Conflict("session")) => Err(AuthError::Unauthenticated),
            Err(e) => Err(e.into()),
        }
    }

    /// `GET /v1/flows/{id}?wait=…`: the flow, held up to `wait` while it waits for a push
    /// answer. Woken at once by an answer given on this replica; another replica's answer is
    /// seen within a quarter of a second (the database is the only shared state).
    pub async fn current_waiting(
        &self,
        id: FlowId,
        ctx: &ClientContext,
        wait: std::time::Duration,
    ) -> Result<FlowOutcome, AuthError> {
        let deadline = tokio::time::Instant::now() + wait;
        let woken = self.push_waits.wait(id);
        loop {
            let notified = woken.notified();
            let o = self.current(id, ctx).await?;
            let waiting = matches!(&o.flow.state, FlowState::AwaitingMfa { push: Some(_), .. });
            if !waiting || tokio::time::Instant::now() >= deadline {
                return Ok(o);
            }
            let _ = tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + WAIT_POLL), notified).await;
        }
    }

    /// Push notifications to the user's live devices that registered a push address (all but
    /// `except`), through the outbox so they are retried. A provider this server has no
    /// credentials for goes to the development sink.
    pub(crate) async fn push_to_devices(
        &self,
        user_id: UserId,
        except: Option<DeviceId>,
        title: &str,
        text: &str,
        data: &proto::PushData,
        now: OffsetDateTime,
    ) -> Result<Vec<OutboxMessage>, AuthError> {
        let payload = serde_json::json!({"title": title, "body": text, "data": data}).to_string();
        let mut out = vec![];
        for d in self.store.devices(user_id).await?.into_iter().filter(|d| Some(d.id) != except) {
            let Some(push) = d.push else { continue };
            let provider = if self.routes.push.contains(&push.provider) { push.provider.clone() } else { "dev".into() };
            let id = MessageId::new();
            out.push(OutboxMessage {
                id,
                channel: "push".into(),
                provider,
                to: format!("{}:{}", push.provider, push.token),
                subject: title.into(),
                body_sealed: Some(self.keys.seal(self.rng.as_ref(), &id.to_string(), payload.as_bytes())?),
                status: OutboxStatus::Pending,
                attempts: 0,
                next_attempt_at: now,
                last_error: None,
                created_at: now,
                sent_at: None,
            });
        }
        Ok(out)
    }

    /// `PUT /v1/device/push-token`: where this device is notified, or `none` to poll.
    pub async fn set_push_address(
        &self,
        device: &Device,
        r: proto::PushRegistration,
        ctx: ClientContext,
    ) -> Result<(), AuthError> {
        let token = r.token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let push = match (r.provider.as_str(), token) {
            ("none", _) => None,
            ("fcm" | "apns" | "webhook", Some(t)) if t.len() <= 4096 && !t.contains(char::is_control) => {
                Some(PushAddress { provider: r.provider.clone(), token: t.to_owned() })
            }
            ("fcm" | "apns" | "webhook", _) => {
                return Err(AuthError::InvalidRequest("token: 1 to 4096 printable characters".into()));
            }
            _ => return Err(AuthError::InvalidRequest("provider must be fcm, apns, webhook or none".into())),
        };
        let now = self.now();
        let mut batch = Batch::new();
        batch.push(Write::SetPushAddress { id: device.id, push }).push(audit(
            now,
            Some(device.user_id),
            "device_push_address",
            "success",
            &ctx,
            serde_json::json!({"device_id": device.id, "provider": r.provider}),
        ));
        match self.apply(batch).await {
            Err(StoreError::Conflict("device")) => Err(AuthError::Unauthenticated),
            other => Ok(other?),
        }
    }

    // ----- the device's side -----------------------------------------------------------------

    /// A request signed by an enrolled device: `Authorization: Device <id>` with a DPoP proof by
    /// its possession key for this method and URL (single-use, ±60 s). Anything else, a revoked
    /// device included, is `401 unauthenticated`.
    pub async fn authenticate_device(
        &self,
        device_id: &str,
        proof: Option<&DpopProof>,
        method: &str,
        path: &str,
    ) -> Result<Device, AuthError> {
        let id = device_id.parse::<uuid::Uuid>().map(DeviceId).map_err(|_| AuthError::Unauthenticated)?;
        let device = self.store.device(id).await?.filter(|d| d.revoked_at.is_none());
        let (Some(device), Some(proof)) = (device, proof) else {
            return Err(AuthError::Unauthenticated);
        };
        if !dpop::thumbprint(&device.possession_key).is_some_and(|t| ct_eq(proof.jkt.as_bytes(), t.as_bytes())) {
            return Err(AuthError::Unauthenticated);
        }
        self.sessions().check_dpop(proof, method, path, None, self.now(), true).await?;
        Ok(device)
    }

    /// `GET /v1/device/approvals`: what the device's account is being asked.
    pub async fn device_approvals(&self, device: &Device) -> Result<proto::ApprovalList, AuthError> {
        let pending = self.store.pending_approvals(device.user_id, self.now()).await?;
        Ok(proto::ApprovalList { approvals: pending.iter().map(|a| self.approval_request(a)).collect() })
    }

    /// `GET /v1/device/approvals/{id}`: one pending approval of the device's account.
    pub async fn device_approval(&self, device: &Device, id: &str) -> Result<proto::ApprovalRequest, AuthError> {
        let a = self.pending_approval_of(device, id).await?;
        Ok(self.approval_request(&a))
    }

    /// `POST /v1/device/approvals/{id}`: the user's decision, signed by the device's biometric
    /// key. A wrong or missing number denies the sign-in and counts as a second-factor failure
    /// (checklist PUSH-1); a bad signature changes nothing; the first answer wins (PUSH-3);
    /// "this wasn't me" also pauses push prompts for the account and tells the user.
    pub async fn answer_approval(
        &self,
        device: &Device,
        id: &str,
        answer: proto::ApprovalAnswer,
        ctx: ClientContext,
    ) -> Result<proto::ApprovalOutcome, AuthError> {
        let a = self.pending_approval_of(device, id).await?;
        let now = self.now();
        let number = answer.number.as_deref().unwrap_or("").trim();
        let message = proto::approval_message(id, &a.nonce, &a.kind, number, answer.decision, &device.id.to_string());
        if !dk::verify(&device.biometric_key, message.as_bytes(), &answer.signature) {
            return Err(AuthError::NotAuthorized);
        }
        let status = match answer.decision {
            ApprovalDecision::Approve if ct_eq(number.as_bytes(), a.number.as_bytes()) => ApprovalStatus::Approved,
            ApprovalDecision::Approve | ApprovalDecision::Deny => ApprovalStatus::Denied,
            ApprovalDecision::Report => ApprovalStatus::Reported,
        };
        let user = self.store.user_by_id(a.user_id).await?.ok_or(AuthError::NotFound)?;
        let wrong_number = answer.decision == ApprovalDecision::Approve && status == ApprovalStatus::Denied;
        if wrong_number {
            // Counted like a wrong code; the limit itself is the flow's and the account's.
            let _ = self.store.reserve_failure(&user.username_canonical, OTP, now, &self.settings.limits.code).await?;
        }
        let outcome = if wrong_number { "wrong_number" } else { status.as_str() };
        let mut batch = Batch::new();
        batch.push(Write::DecideApproval { id: a.id, status, device_id: device.id, at: now }).push(audit(
            now,
            Some(user.id),
            "push_answer",
            outcome,
            &ctx,
            serde_json::json!({"approval_id": a.id, "flow_id": a.flow_id, "device_id": device.id}),
        ));
        if status == ApprovalStatus::Reported {
            let (subject, body) =
                self.text(user.profile.locale.as_deref(), "push_reported", &[("device", &device.name)]);
            for m in self.notification(&user, &subject, &body, now)? {
                batch.push(Write::Enqueue(m));
            }
        }
        match self.apply(batch).await {
            Ok(()) => {}
            Err(StoreError::Conflict("approval")) => return Err(AuthError::FlowCompleted),
            Err(e) => return Err(e.into()),
        }
        self.push_waits.wake(a.flow_id);
        Ok(proto::ApprovalOutcome { status: status.as_str().into() })
    }

    async fn pending_approval_of(&self, device: &Device, id: &str) -> Result<Approval, AuthError> {
        let id = id.parse::<uuid::Uuid>().map(ApprovalId).map_err(|_| AuthError::NotFound)?;
        let a = self.store.approval(id).await?.filter(|a| a.user_id == device.user_id).ok_or(AuthError::NotFound)?;
        if a.status != ApprovalStatus::Pending {
            return Err(AuthError::FlowCompleted);
        }
        if a.expires_at <= self.now() {
            return Err(AuthError::FlowExpired);
        }
        Ok(a)
    }

    fn approval_request(&self, a: &Approval) -> proto::ApprovalRequest {
        proto::ApprovalRequest {
            id: a.id.to_string(),
            nonce: a.nonce.clone(),
            kind: a.kind.clone(),
            app: self.settings.product_name.clone(),
            ip: a.context.ip.clone(),
            user_agent: a.context.user_agent.clone(),
            created_at: rfc3339(a.created_at),
            expires_at: rfc3339(a.expires_at),
            action: a.action.clone(),
        }
    }
}
