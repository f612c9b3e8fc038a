//! Step-up (RFC 9470): raising the calling session in place. `POST /v1/step-up` starts a
//! `step_up` flow that asks only for what the session lacks — a second factor the session has
//! not used when its level is too low, any factor when its `auth_time` is too old — with the
//! same steps, attempts and limits as a sign-in's second factor. Its `done` reissues the tokens
//! of the same session (`sid` kept) with the raised `acr`, the new `amr` and `auth_time`.
//!
//! Invariants:
//! - Never a second session, never a lower level: the new `acr` is the higher of the session's
//!   and what its methods plus the new one give; `auth_time` moves only when a factor was
//!   verified in this flow.
//! - The session's older refresh tokens are spent when the new ones are issued: presenting one
//!   later is reuse and ends the session (checklist SES-2).

use crate::auth::{Auth, FlowOutcome, Principal, StepEvent, audit, secs};
use crate::crypto::sha256_b64;
use crate::error::AuthError;
use crate::flow::risk::Occasion;
use crate::flows::second_factor::MfaStart;
use crate::ids::FlowId;
use crate::model::*;
use crate::secret::random_token;
use crate::sessions::{assurance, step_up_level, with_mfa};
use crate::settings::{MfaMode, RiskAction};
use crate::store::{Batch, Write};
use crate::tokens::ApprovalClaims;
use latchkey_proto as proto;
use latchkey_proto::MfaMethod;
use time::OffsetDateTime;

/// How long an action's approval JWT is accepted: the backend executes the action right after.
const APPROVAL_TTL_SECS: u64 = 300;

/// The assurance levels Latchkey can be asked for, lowest first.
const LEVELS: [&str; 3] = ["aal1", "aal2", "aal3"];

/// The first level of a space-separated `acr_values` that Latchkey knows (RFC 9470 §4: in order
/// of preference); `aal2` when none is given. Unknown values only: `invalid_request`.
pub(crate) fn wanted_acr(acr_values: Option<&str>) -> Result<&'static str, AuthError> {
    let Some(values) = acr_values.filter(|v| !v.trim().is_empty()) else {
        return Ok("aal2");
    };
    values
        .split_whitespace()
        .find_map(|v| LEVELS.iter().find(|l| **l == v).copied())
        .ok_or_else(|| AuthError::InvalidRequest("acr_values: Latchkey offers aal1, aal2 and aal3".into()))
}

/// `acr_values` and `max_age` as documented: at most 256 characters, and at most 2³¹−1 seconds
/// (68 years; anything larger is a client bug).
pub(crate) fn check_request(acr_values: Option<&str>, max_age: Option<u64>) -> Result<(), AuthError> {
    if acr_values.is_some_and(|v| v.chars().count() > 256) {
        return Err(AuthError::InvalidRequest("acr_values: at most 256 characters".into()));
    }
    match max_age {
        Some(m) if m > i32::MAX as u64 => Err(AuthError::InvalidRequest("max_age: at most 2147483647 seconds".into())),
        _ => Ok(()),
    }
}

/// Whether a session's methods and level plus those `verified` now give at least the level the
/// step-up asked for.
pub(crate) fn reaches(session: &Session, verified: &[&str], su: &StepUp, phishing_resistant: bool) -> bool {
    let mut amr = crate::sessions::counted_amr(&session.amr);
    amr.extend_from_slice(verified);
    let level = rank(assurance(&amr, phishing_resistant)).max(rank(step_up_level(session, phishing_resistant)));
    level >= rank(&su.acr)
}

fn rank(acr: &str) -> usize {
    LEVELS.iter().position(|l| *l == acr).unwrap_or(LEVELS.len())
}

impl Auth {
    /// `POST /v1/step-up`: a `step_up` flow for the calling session, or `done` at once when the
    /// session already meets `acr_values` and `max_age` (the same tokens' session, reissued).
    pub async fn step_up(
        &self,
        p: &Principal,
        req: proto::StepUpRequest,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        check_request(req.acr_values.as_deref(), req.max_age)?;
        let acr = wanted_acr(req.acr_values.as_deref())?;
        let now = self.now();
        let raise = rank(step_up_level(&p.session, self.settings.mfa.require_phishing_resistant)) < rank(acr);
        let stale = req
            .max_age
            .is_some_and(|m| (now - p.session.auth_time).whole_seconds() > i64::try_from(m).unwrap_or(i64::MAX));
        let flow_id = FlowId::new();
        // The risk policy: a refusal is `403`; a second factor it asks for is asked even of a
        // session that already meets the request.
        let risk = self.assess(Some(&p.user), Occasion::StepUp, &ctx, now).await?;
        self.risk_delay(&risk).await;
        if let Some(record) = self.risk_record(&risk, Occasion::StepUp, Some(p.user.id), Some(flow_id), &ctx, now) {
            let mut batch = Batch(vec![record]);
            if risk.action == RiskAction::Deny {
                let detail = serde_json::json!({"flow_id": flow_id, "reasons": risk.reasons});
                batch.push(audit(now, Some(p.user.id), "step_up", "denied", &ctx, detail));
            }
            self.apply(batch).await?;
        }
        if risk.action == RiskAction::Deny {
            return Err(AuthError::Forbidden);
        }
        // So is one the session needs since it moved (checklist SES-8).
        let stale = stale || risk.second_factor() || p.session.step_up_required_at.is_some();
        let action = match &req.action {
            Some(a) => {
                let canonical = proto::canonical_action(a).map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
                Some(Box::new(ActionToApprove { action: a.clone(), hash: sha256_b64(canonical.as_bytes()) }))
            }
            None => None,
        };
        let step_up = StepUp { session_id: p.session.id, acr: acr.into(), action };
        if step_up.action.is_some() {
            return self.approve_action(p, flow_id, step_up, now, ctx).await;
        }
        if !raise && !stale {
            let flow = self.new_flow(
                flow_id,
                FlowKind::StepUp,
                Some(p.user.id),
                FlowState::AwaitingMfa {
                    method: None,
                    methods: vec![],
                    code: None,
                    then_new_password: false,
                    new_device: None,
                    push: None,
                    recovery: None,
                    step_up: Some(step_up.clone()),
                    custom: None,
                    passkey: None,
                },
                now,
                ctx.clone(),
            );
            let mut batch = Batch::new();
            batch.push(Write::InsertFlow(flow.clone()));
            let (done, tokens, _) =
                self.finish_step_up(&flow, &p.user, &[], None, &step_up, now, &ctx, &mut batch).await?;
            self.commit(batch, flow.id).await?;
            // No step was presented or verified: nothing for the step metrics.
            return Ok(FlowOutcome { flow: done, tokens, error: None, events: vec![], approval: None });
        }
        // A device's own session steps up with the device's signature: the biometric key, or the
        // possession key and the PIN when the level must rise. A device key never gives `aal3`.
        if let Some(device_id) = p.session.device_id
            && acr != "aal3"
            && self.store.device(device_id).await?.is_some_and(|d| d.revoked_at.is_none())
        {
            let state = FlowState::AwaitingDeviceSignature {
                device_id: Some(device_id),
                nonce: random_token(self.rng.as_ref(), 32).expose().to_owned(),
                step_up: Some(step_up),
            };
            let flow = self.new_flow(flow_id, FlowKind::StepUp, Some(p.user.id), state, now, ctx.clone());
            let detail = serde_json::json!({"flow_id": flow.id, "session_id": p.session.id, "acr": acr});
            let event = StepEvent { step: "device_signature", outcome: "issued" };
            return self.start_step_up(p, flow, Batch::new(), detail, event, now, &ctx).await;
        }
        if self.settings.mfa.mode == MfaMode::Off {
            return Err(AuthError::InvalidRequest("second factors are turned off by policy".into()));
        }
        let factors = self.store.factors(p.user.id).await?;
        // A remembered client's key never counts towards a step-up (checklist SES-9).
        let used = crate::sessions::counted_amr(&p.session.amr);
        let resistant = self.settings.mfa.require_phishing_resistant;
        // `aal3`: only a passkey the policy trusts the attestation of (checklist decision 5).
        let attested =
            acr == "aal3" && self.store.passkeys(p.user.id).await?.iter().any(|k| self.attested(k).is_some());
        let methods: Vec<MfaMethod> = self
            .methods_of(&p.user, &factors)
            .await?
            .into_iter()
            // Raising the level: only a method that gives it with what the session has.
            .filter(|m| match acr {
                "aal3" => *m == MfaMethod::Passkey && attested,
                _ => !raise || rank(assurance(&[used.as_slice(), &[self.amr_of(*m)]].concat(), resistant)) >= rank(acr),
            })
            .filter(|m| risk.action != RiskAction::RequirePhishingResistant || m.phishing_resistant())
            .collect();
        if methods.is_empty() {
            return Err(AuthError::MfaRequired(
                "this account has no second factor that can raise the session: add one first",
            ));
        }
        let MfaStart { state, writes, event } = self.ask_for(flow_id, &p.user, methods, false, now, &ctx).await?;
        // For `aal3`, the assertion may come only from the keys that give it.
        let passkey_aal3 = match acr {
            "aal3" => Some(Box::new(self.passkey_challenge(p.user.id, true).await?)),
            _ => None,
        };
        let state = match state {
            FlowState::AwaitingMfa { method, methods, code, push, custom, passkey, .. } => FlowState::AwaitingMfa {
                method,
                methods,
                code,
                then_new_password: false,
                new_device: None,
                push,
                recovery: None,
                step_up: Some(step_up),
                custom,
                passkey: passkey_aal3.or(passkey),
            },
            other => other,
        };
        let flow = self.new_flow(flow_id, FlowKind::StepUp, Some(p.user.id), state, now, ctx.clone());
        let detail = serde_json::json!({"flow_id": flow.id, "session_id": p.session.id, "acr": acr});
        self.start_step_up(p, flow, Batch(writes), detail, event, now, &ctx).await
    }

    /// The end of a step-up: the session raised in place (`method` verified now, or none when
    /// it already met the request), its refresh tokens spent and new tokens issued, and for an
    /// action the approval JWT. Pushes the writes onto `batch`.
    #[allow(clippy::too_many_arguments)] // the flow's facts and the batch it adds to
    pub(crate) async fn finish_step_up(
        &self,
        flow: &Flow,
        user: &User,
        verified: &[&str],
        method: Option<&str>,
        su: &StepUp,
        now: OffsetDateTime,
        ctx: &ClientContext,
        batch: &mut Batch,
    ) -> Result<(Flow, Option<proto::Tokens>, Option<String>), AuthError> {
        let session = self
            .store
            .session(su.session_id)
            .await?
            .filter(|s| s.user_id == user.id && s.revoked_at.is_none() && s.expires_at > now)
            .ok_or(AuthError::Unauthenticated)?;
        let mut amr: Vec<&str> = session.amr.iter().map(String::as_str).filter(|m| *m != "mfa").collect();
        for m in verified {
            if !amr.contains(m) {
                amr.push(m);
            }
        }
        let computed = assurance(&amr, self.settings.mfa.require_phishing_resistant);
        // Never lower: a session raised earlier keeps its level.
        let acr = if rank(computed) >= rank(&session.acr) { computed.to_owned() } else { session.acr.clone() };
        let raised = Session {
            acr,
            amr: with_mfa(&amr),
            auth_time: if verified.is_empty() { session.auth_time } else { now },
            ..session
        };
        let refresh = random_token(self.rng.as_ref(), 32);
        batch
            .push(Write::RaiseSession {
                id: raised.id,
                acr: raised.acr.clone(),
                amr: raised.amr.clone(),
                auth_time: raised.auth_time,
                context: ctx.clone(),
            })
            .push(Write::SpendRefreshTokens { session_id: raised.id, at: now })
            .push(Write::InsertRefreshToken {
                hash: sha256_b64(refresh.expose().as_bytes()),
                session_id: raised.id,
                created_at: now,
            });
        let tokens = self.sessions().tokens_for(&raised, user, refresh, now, "step_up").await?;
        let approval = match &su.action {
            Some(a) => Some(self.approval_jwt(&raised, a, now)?),
            None => None,
        };
        let next = Flow {
            state: FlowState::Completed { session_id: Some(raised.id) },
            version: flow.version + 1,
            ..flow.clone()
        };
        batch.push(Write::UpdateFlow { flow: next.clone(), expected_version: flow.version }).push(audit(
            now,
            Some(user.id),
            "step_up",
            "success",
            ctx,
            serde_json::json!({
                "flow_id": flow.id,
                "session_id": raised.id,
                "method": method,
                "acr": raised.acr,
                "action_hash": su.action.as_ref().map(|a| a.hash.clone()),
            }),
        ));
        Ok((next, Some(tokens), approval))
    }

    /// A step-up with an action: the enrolled phones are asked at once (push approval with the
    /// action's text), however fresh the session, since approving *this* action is the point.
    async fn approve_action(
        &self,
        p: &Principal,
        flow_id: FlowId,
        step_up: StepUp,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        if !self.settings.mfa.allows(MfaMethod::PushApproval) || self.store.devices(p.user.id).await?.is_empty() {
            return Err(AuthError::MfaRequired("approving an action needs an enrolled device with push approval"));
        }
        let hash = step_up.action.as_ref().map(|a| a.hash.clone());
        let mut flow = self.new_flow(
            flow_id,
            FlowKind::StepUp,
            Some(p.user.id),
            FlowState::AwaitingMfa {
                method: Some(MfaMethod::PushApproval),
                methods: vec![MfaMethod::PushApproval],
                code: None,
                then_new_password: false,
                new_device: None,
                push: None,
                recovery: None,
                step_up: Some(step_up),
                custom: None,
                passkey: None,
            },
            now,
            ctx.clone(),
        );
        let mut batch = Batch::new();
        let challenge = self.ask_devices(&flow, &p.user, now, &ctx, &mut batch).await?;
        if let FlowState::AwaitingMfa { push, .. } = &mut flow.state {
            *push = Some(challenge);
        }
        let detail = serde_json::json!({"flow_id": flow.id, "session_id": p.session.id, "action_hash": hash});
        let event = StepEvent { step: "push_approval", outcome: "issued" };
        self.start_step_up(p, flow, batch, detail, event, now, &ctx).await
    }

    /// Store a new `step_up` flow with `batch`'s writes and its `started` event; the answer shows
    /// its first step.
    #[allow(clippy::too_many_arguments)] // the flow, what goes with it, and the request's facts
    async fn start_step_up(
        &self,
        p: &Principal,
        flow: Flow,
        mut batch: Batch,
        detail: serde_json::Value,
        event: StepEvent,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        batch.push(Write::InsertFlow(flow.clone())).push(audit(
            now,
            Some(p.user.id),
            "step_up",
            "started",
            ctx,
            detail,
        ));
        self.commit(batch, flow.id).await?;
        Ok(Self::outcome(flow, vec![event]))
    }

    /// The approval JWT for an action the phone approved, in the raised session.
    pub(crate) fn approval_jwt(
        &self,
        session: &Session,
        action: &ActionToApprove,
        now: OffsetDateTime,
    ) -> Result<String, AuthError> {
        let t = &self.settings.tokens;
        let claims = ApprovalClaims {
            iss: t.issuer.clone(),
            aud: t.audience.clone(),
            sub: session.user_id.to_string(),
            sid: session.id.to_string(),
            iat: now.unix_timestamp(),
            exp: (now + secs(APPROVAL_TTL_SECS)).unix_timestamp(),
            jti: random_token(self.rng.as_ref(), 16).expose().to_owned(),
            action_hash: action.hash.clone(),
            action_type: action.action.kind.clone(),
            acr: session.acr.clone(),
            amr: session.amr.clone(),
            auth_time: session.auth_time.unix_timestamp(),
        };
        Ok(self.signer.sign_approval(&claims)?)
    }
}
