//! The shared context every flow and room works in (`Auth`: the store, the clock, randomness,
//! keys, hashing, token signing, policy and delivery routes), and what a request gets back.
//! It holds no behaviour of its own beyond assembling itself; flows live in `flows/`, their
//! engine in `flow/`, sessions in `sessions.rs`, the account and its administration in
//! `account/`.

use crate::clock::Clock;
use crate::crypto::Keys;
use crate::dpop::DpopProof;
use crate::factors::password::SecretHasher;
use crate::ids::{EventId, UserId};
use crate::model::*;
use crate::risk::RiskSources;
use crate::secret::Random;
use crate::settings::Settings;
use crate::store::{Store, Write};
use crate::tokens::{AccessClaims, AccessTokenSigner};
use latchkey_proto as proto;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// Failure-counter kinds.
pub(crate) const PASSWORD: &str = "password";
pub(crate) const CODE: &str = "code";
pub(crate) const OTP: &str = "otp";

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
    /// Only on the request that completed a step-up with an action: the approval JWT.
    pub approval: Option<String>,
}

impl FlowOutcome {
    /// The flow after an answer `step` accepted: `tokens` if it completed a sign-in.
    pub(crate) fn verified(flow: Flow, tokens: Option<proto::Tokens>, step: &'static str) -> Self {
        Self { flow, tokens, error: None, events: vec![StepEvent { step, outcome: "verified" }], approval: None }
    }
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
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rng: Arc<dyn Random>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) hasher: SecretHasher,
    pub(crate) signer: Arc<dyn AccessTokenSigner>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) routes: Arc<OutboxRoutes>,
    pub(crate) outbox_wakeup: Arc<tokio::sync::Notify>,
    /// The held `GET /v1/flows/{id}?wait=…` requests of this replica, woken by their flow's
    /// push answer.
    pub(crate) push_waits: Arc<crate::push_waits::PushWaits>,
    /// The risk policy's operator-supplied sources (distrusted networks, GeoIP).
    pub(crate) risk: RiskSources,
    /// The event webhook endpoints.
    pub(crate) subscriptions: Arc<crate::subscriptions::Subscriptions>,
    /// The app's backend, asked during requests (`[hooks]`).
    pub(crate) hooks: Arc<dyn crate::hooks::Hooks>,
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
    /// The risk policy's distrusted networks and GeoIP database.
    pub risk: RiskSources,
    /// The configured event webhook endpoints (`[[webhooks]]`).
    pub webhooks: Vec<crate::subscriptions::Endpoint>,
    /// The synchronous hooks (`[hooks]`; the server's has none configured by default).
    pub hooks: Arc<dyn crate::hooks::Hooks>,
}

pub(crate) fn audit(
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

pub(crate) fn step_error(code: &str, message: &str) -> Option<proto::StepError> {
    Some(proto::StepError { code: code.into(), message: message.into() })
}

pub(crate) fn secs(s: u64) -> Duration {
    Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))
}

impl Auth {
    /// Assemble the service.
    pub fn new(p: AuthParts) -> Self {
        Self {
            store: p.store,
            clock: p.clock,
            rng: p.rng,
            keys: Arc::new(p.keys),
            hasher: p.hasher,
            signer: p.signer,
            settings: Arc::new(p.settings),
            routes: Arc::new(p.routes),
            outbox_wakeup: p.outbox_wakeup,
            push_waits: Arc::default(),
            risk: p.risk,
            subscriptions: Arc::new(crate::subscriptions::Subscriptions::new(p.webhooks)),
            hooks: p.hooks,
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
}
