//! The storage contract. SQL lives only in `latchkey-store`; everything that must hold across
//! replicas (single use, counters, limits) is one atomic operation of this trait.

use crate::ids::{
    ApprovalId, DeviceId, EventId, FactorId, FlowId, MessageId, PasskeyId, RememberedClientId, SessionId, UserId,
};
use crate::model::{
    AccountCounter, AppAttestKey, Approval, ApprovalStatus, AttemptReservation, AuditEvent, BiometricEvidence,
    ClientContext, Device, Factor, Flow, LockoutPolicy, OutboxMessage, OutboxStatus, Passkey, PushAddress,
    RecoveryCode, RememberedClient, Reservation, Session, Sighting, User, WebhookEndpoint,
};
use async_trait::async_trait;
use time::OffsetDateTime;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-swap lost, or a unique key was taken: the batch was rolled back.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database failed or is unreachable; nothing was changed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// What [`Store::risk_counts`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RiskCounts {
    /// Failed password sign-ins of the account in the window.
    pub account_failures: u64,
    /// Failed password sign-ins from the address in the window, any account.
    pub source_failures: u64,
    /// The account's last completed recovery.
    pub recovered_at: Option<OffsetDateTime>,
    /// The owner's last "this wasn't me".
    pub reported_at: Option<OffsetDateTime>,
}

/// One write in an atomic [`Batch`].
#[derive(Debug, Clone)]
pub enum Write {
    /// Insert a user; `Conflict("username")` if the canonical username exists.
    InsertUser(User),
    /// Claim a username for a new account: `Conflict("username")` while a deleted account's
    /// username (its keyed digest) is in quarantine at `at`.
    ClaimUsername {
        /// The keyed digest of the canonical username.
        digest: String,
        /// Now.
        at: OffsetDateTime,
    },
    /// Give an account an admin role, or (`None`) take it away.
    SetAdminRole {
        /// Whose.
        user_id: UserId,
        /// `admin` or `read_only`.
        role: Option<String>,
        /// When.
        at: OffsetDateTime,
    },
    /// Delete an account and erase what it kept (see [`Erasure`]).
    EraseUser(Box<Erasure>),
    /// Replace a user's mutable fields.
    UpdateUser(User),
    /// Insert a flow (version as given).
    InsertFlow(Flow),
    /// Replace a flow if its stored version is `expected_version`; the stored version becomes
    /// `flow.version`, which must be `expected_version + 1`, and its attempts `flow.attempts`.
    /// Otherwise `Conflict("flow")`.
    UpdateFlow {
        /// The new flow.
        flow: Flow,
        /// The version read before the transition.
        expected_version: i64,
    },
    /// Bind a flow to the client now answering it (an invitation, made by the operator, is
    /// bound to the invitee's client when its code is confirmed).
    BindFlow {
        /// Which.
        id: FlowId,
        /// The client.
        context: ClientContext,
    },
    /// Insert a session.
    InsertSession(Session),
    /// End the session a flow started, if it is live ("this wasn't me" in a sign-in notice).
    RevokeFlowSession {
        /// The flow.
        flow_id: FlowId,
        /// Whose (a token for another account's flow ends nothing).
        user_id: UserId,
        /// When.
        at: OffsetDateTime,
        /// Why.
        reason: String,
    },
    /// Record (or refresh) what a session started from, in one statement: `last_seen_at` and
    /// the place are replaced, `first_seen_at` kept.
    Sightings(Vec<Sighting>),
    /// Raise a live session in place after a step-up: its level, methods and `auth_time`, the
    /// client it now runs on, and no step-up required any more. A session revoked or expired
    /// meanwhile is `Conflict("session")`.
    RaiseSession {
        /// Which.
        id: SessionId,
        /// The new `acr`.
        acr: String,
        /// The new `amr`.
        amr: Vec<String>,
        /// When the factor was verified.
        auth_time: OffsetDateTime,
        /// The client that stepped up.
        context: ClientContext,
    },
    /// A live session's next sensitive call needs a step-up (checklist SES-8); kept if set.
    RequireStepUp {
        /// Which.
        id: SessionId,
        /// When.
        at: OffsetDateTime,
    },
    /// Spend every unspent refresh token of a session: presenting one later is reuse (the
    /// session's tokens were reissued).
    SpendRefreshTokens {
        /// Whose.
        session_id: SessionId,
        /// When.
        at: OffsetDateTime,
    },
    /// Insert a refresh token (its hash) for a session.
    InsertRefreshToken {
        /// SHA-256 of the token.
        hash: String,
        /// Its family.
        session_id: SessionId,
        /// Issued.
        created_at: OffsetDateTime,
    },
    /// Revoke one session (no-op if already revoked).
    RevokeSession {
        /// Which.
        id: SessionId,
        /// When.
        at: OffsetDateTime,
        /// Why.
        reason: String,
    },
    /// Remember a client (its key).
    InsertRememberedClient(RememberedClient),
    /// Forget one remembered client of `user_id` (no-op if it is forgotten already or another's).
    ForgetRememberedClient {
        /// Which.
        id: RememberedClientId,
        /// Whose.
        user_id: UserId,
        /// When.
        at: OffsetDateTime,
        /// Why.
        reason: String,
    },
    /// Forget every remembered client of a user.
    ForgetUserRememberedClients {
        /// Whose.
        user_id: UserId,
        /// When.
        at: OffsetDateTime,
        /// Why.
        reason: String,
    },
    /// A remembered client signed a sign-in: only while it is neither forgotten nor expired,
    /// else `Conflict("remembered_client")`.
    RememberedClientUsed {
        /// Which.
        id: RememberedClientId,
        /// When.
        at: OffsetDateTime,
    },
    /// Revoke every live session of a user, and forget every client it remembered.
    RevokeUserSessions {
        /// Whose.
        user_id: UserId,
        /// When.
        at: OffsetDateTime,
        /// Why.
        reason: String,
    },
    /// Reset a failure counter after a success or a password reset.
    ClearFailures {
        /// Canonical subject key.
        key: String,
        /// Counter kind.
        kind: String,
    },
    /// Insert a factor. An active one is not inserted when the user already has an active factor
    /// of its kind (one per kind, enforced by the store under concurrency).
    InsertFactor(Factor),
    /// Mark a pending factor active. Conflict `factor` if it is not pending any more or the user
    /// already has an active factor of its kind.
    ActivateFactor {
        /// Which.
        id: FactorId,
    },
    /// Delete a factor (and, for `recovery_codes`, every code of its user).
    DeleteFactor {
        /// The factor.
        id: FactorId,
    },
    /// Replace the user's recovery codes with these MACs.
    ReplaceRecoveryCodes {
        /// Whose.
        user_id: UserId,
        /// The new codes' MACs.
        macs: Vec<String>,
        /// Now.
        at: OffsetDateTime,
    },
    /// Spend an unused recovery code; `Conflict("recovery_code")` if there is no such unused
    /// code (wrong, already used, or spent by a parallel request).
    UseRecoveryCode {
        /// Whose.
        user_id: UserId,
        /// MAC of the code.
        mac: String,
        /// Now.
        at: OffsetDateTime,
    },
    /// Enrol a device.
    InsertDevice(Device),
    /// Set or clear where a live device is notified. Conflict `device` if it was revoked.
    SetPushAddress {
        /// The device.
        id: DeviceId,
        /// The address; none: the device polls.
        push: Option<PushAddress>,
    },
    /// Ask the account's devices (a pending approval past its expiry is closed first).
    /// Conflict `approval_pending` while another is pending: one outstanding push per account
    /// (checklist PUSH-4), however many sign-ins ask at once.
    InsertApproval(Approval),
    /// Withdraw a pending approval (its sign-in moved on); nothing if it was answered already.
    WithdrawApproval {
        /// The approval.
        id: ApprovalId,
        /// Now.
        at: OffsetDateTime,
    },
    /// A device's answer to a pending approval that has not expired at `at`. Conflict `approval`
    /// if it was answered already or expired: each approval takes effect once (checklist PUSH-3).
    DecideApproval {
        /// The approval.
        id: ApprovalId,
        /// Approved, denied or reported.
        status: ApprovalStatus,
        /// The device that answered.
        device_id: DeviceId,
        /// Now.
        at: OffsetDateTime,
    },
    /// Revoke a device and every session signed in with it.
    RevokeDevice {
        /// The device.
        id: DeviceId,
        /// Now.
        at: OffsetDateTime,
    },
    /// Replace a live device's biometric key (the old one stops working) or its PIN hash (which
    /// clears its PIN failures, unblocking it). Conflict `device` if it was revoked.
    UpdateDevice {
        /// The device.
        id: DeviceId,
        /// The new biometric key's point, with its evidence (none clears the old evidence).
        biometric_key: Option<(Vec<u8>, Option<BiometricEvidence>)>,
        /// The new PIN's hash.
        pin_hash: Option<String>,
    },
    /// A sign-in with the device succeeded; `reset_pin` clears its PIN failures (a right PIN).
    DeviceUsed {
        /// The device.
        id: DeviceId,
        /// Now.
        at: OffsetDateTime,
        /// Whether the PIN was verified.
        reset_pin: bool,
    },
    /// Register a passkey; `Conflict("passkey")` if its credential id is registered already,
    /// to any account (checklist WA-5).
    InsertPasskey(Passkey),
    /// A passkey signed in: its new credential record, counter and backup state. Only if the
    /// stored counter is still `seen_count` (a parallel use of the same authenticator moved it:
    /// `Conflict("passkey")`), and the passkey still exists.
    PasskeyUsed {
        /// Which.
        id: PasskeyId,
        /// The counter read before the assertion was verified.
        seen_count: u32,
        /// The updated credential record.
        credential: String,
        /// The assertion's counter.
        sign_count: u32,
        /// The assertion's backup state.
        backed_up: bool,
        /// Now.
        at: OffsetDateTime,
    },
    /// Rename one of the user's passkeys (`Conflict("passkey")` if it is not theirs or gone).
    RenamePasskey {
        /// Which.
        id: PasskeyId,
        /// Whose.
        user_id: UserId,
        /// The new name.
        name: String,
    },
    /// Remove one of the user's passkeys (`Conflict("passkey")` if it is not theirs or gone).
    DeletePasskey {
        /// Which.
        id: PasskeyId,
        /// Whose.
        user_id: UserId,
    },
    /// Register an App Attest key; `Conflict("app_attest_key")` if its id is registered.
    InsertAppAttestKey(AppAttestKey),
    /// An assertion by an App Attest key: its counter moves from `seen` to `counter`, only if the
    /// stored one is still `seen` (`Conflict("app_attest_key")` otherwise: a parallel replay).
    AppAttestKeyUsed {
        /// Which.
        key_id: String,
        /// The counter read before the assertion was verified.
        seen: u32,
        /// The assertion's counter.
        counter: u32,
        /// Now.
        at: OffsetDateTime,
    },
    /// Mark a factor used now.
    TouchFactor {
        /// The factor.
        id: FactorId,
        /// Now.
        at: OffsetDateTime,
    },
    /// Accept TOTP time step `step` for a factor if it is later than the last one accepted;
    /// otherwise `Conflict("totp_step")` (a replay, possibly a parallel one).
    ConsumeTotpStep {
        /// Which factor.
        id: FactorId,
        /// The step the code matched.
        step: i64,
        /// When.
        at: OffsetDateTime,
    },
    /// Spend a single-use value (a notice's "this wasn't me" token) kept until `expires_at`;
    /// `Conflict("used_once")` if it was spent already, so the batch takes effect once.
    UseOnce {
        /// A digest of the value.
        id: String,
        /// When it could no longer be accepted anyway.
        expires_at: OffsetDateTime,
    },
    /// Queue a message for delivery.
    Enqueue(OutboxMessage),
    /// Replace an imported password hash by a native one, if the account still has `from` (a
    /// password changed meanwhile is kept).
    UpgradePasswordHash {
        /// Whose.
        user_id: UserId,
        /// The imported hash as stored.
        from: String,
        /// The new Argon2id hash.
        to: String,
    },
    /// Add an event webhook endpoint.
    InsertWebhook(WebhookEndpoint),
    /// Remove an event webhook endpoint with its undelivered messages (sent ones keep their
    /// record, without a body).
    DeleteWebhook {
        /// The endpoint.
        id: String,
    },
    /// Record an audit event.
    Audit(AuditEvent),
}

/// What deleting an account removes, in one transaction: the user and every row that is theirs
/// (sessions and their refresh tokens, factors, recovery codes, devices, approvals, remembered
/// clients, sightings, flows); the counters keyed by their username or addresses; pending
/// messages to their addresses (delivered and dead ones keep no recipient and no body); the
/// address, user agent and detail of their audit events (kind, outcome and time stay). The
/// username is retired until `retire_until`.
#[derive(Debug, Clone)]
pub struct Erasure {
    /// Whose.
    pub user_id: UserId,
    /// Failure counters (`failure_counters.key`) to delete.
    pub counter_keys: Vec<String>,
    /// Rate-limit buckets (`rate_counters.key`) to delete.
    pub rate_keys: Vec<String>,
    /// The account's addresses (email, phone, push addresses) as outbox recipients.
    pub addresses: Vec<String>,
    /// Messages queued in this batch (the deletion notices): delivered, then erased.
    pub notices: Vec<MessageId>,
    /// The keyed digest of the canonical username, for [`Write::ClaimUsername`].
    pub username_digest: String,
    /// The end of the username's quarantine.
    pub retire_until: OffsetDateTime,
}

/// What [`Store::search_users`] looks for. Every filter is optional; pages are newest first.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// A prefix, in lower case, of the canonical username, the email in lower case or the phone
    /// number (compared byte by byte, through an index of each).
    pub prefix: Option<String>,
    /// `active`, `unconfirmed` or `disabled`.
    pub status: Option<String>,
    /// An active factor kind, `device` (a live device) or `none` (neither).
    pub factor: Option<String>,
    /// Created at or after.
    pub created_after: Option<OffsetDateTime>,
    /// Created before.
    pub created_before: Option<OffsetDateTime>,
    /// A session started or refreshed at or after.
    pub seen_after: Option<OffsetDateTime>,
    /// No session started or refreshed since (never seen included).
    pub seen_before: Option<OffsetDateTime>,
    /// The cursor: only ids below it (the last id of the previous page).
    pub below: Option<UserId>,
    /// Page size.
    pub limit: u32,
}

/// One account in a [`Store::search_users`] page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    /// The account.
    pub user: User,
    /// When a session of it last started or refreshed.
    pub last_seen_at: Option<OffsetDateTime>,
    /// Its active factors' kinds, sorted.
    pub factors: Vec<String>,
    /// Its live devices.
    pub devices: u64,
}

/// What [`Store::query_audit`] looks for; pages are newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// One account's events.
    pub user_id: Option<UserId>,
    /// One kind.
    pub kind: Option<String>,
    /// One outcome.
    pub outcome: Option<String>,
    /// At or after.
    pub since: Option<OffsetDateTime>,
    /// Before.
    pub until: Option<OffsetDateTime>,
    /// The cursor: events older than this one (an unknown id gives none).
    pub before: Option<EventId>,
    /// Page size.
    pub limit: u32,
}

/// The operator's summary figures ([`Store::figures`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Accounts per status.
    pub users_by_status: Vec<(String, u64)>,
    /// Accounts with an active factor of each kind, and `device` for a live device.
    pub users_by_factor: Vec<(String, u64)>,
    /// Accounts with neither an active factor nor a live device.
    pub users_without_factor: u64,
    /// Audit events since the start, per UTC day (Unix days), kind and outcome.
    pub steps: Vec<(i64, String, String, u64)>,
    /// Messages queued since the start, per provider and status: how many, and how many needed
    /// more than one attempt.
    pub delivery: Vec<(String, String, u64, u64)>,
}

/// Writes applied in one transaction: all or nothing.
#[derive(Debug, Clone, Default)]
pub struct Batch(pub Vec<Write>);

/// Undelivered messages of one provider in one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxBacklog {
    /// The provider.
    pub provider: String,
    /// `pending`, `sending` or `dead`.
    pub status: OutboxStatus,
    /// How many.
    pub count: u64,
    /// When the oldest was queued.
    pub oldest: OffsetDateTime,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Add a write.
    pub fn push(&mut self, w: Write) -> &mut Self {
        self.0.push(w);
        self
    }
}

/// The result of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was live; it is now spent and the new one is stored.
    Rotated(Box<Session>),
    /// The token was already spent: its whole family (session) has now been revoked.
    Reused(SessionId),
    /// Unknown token, or its session is revoked or expired.
    Invalid,
    /// The session is bound to a device key (DPoP) and no proof by that key came with the token.
    /// Nothing changed: the token is neither spent nor, when already spent, does it revoke the
    /// family (someone without the key cannot end the device's session).
    ProofMismatch,
}

/// What [`Store::reserve_attempt_and_apply`] did.
#[derive(Debug)]
pub struct ReservedStep {
    /// The reservation, as [`Store::reserve_attempt`] returns it.
    pub reservation: AttemptReservation,
    /// The result of applying the step's writes; `None` when the attempt was not granted and
    /// they were not tried.
    pub applied: Option<Result<(), StoreError>>,
}

/// Storage. Implementations: SQLite and PostgreSQL in `latchkey-store`; both pass
/// `latchkey_core::conformance`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The key fingerprints recorded for this database (name → fingerprint).
    async fn key_fingerprints(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Replace the recorded fingerprint of key `name` if it is still `expected` (a key rotation);
    /// `false` if another fingerprint is recorded.
    async fn replace_key_fingerprint(
        &self,
        name: &str,
        expected: &str,
        new: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Record fingerprints for the names not recorded yet (the first to record a name wins).
    async fn record_key_fingerprints(
        &self,
        fingerprints: &[(String, String)],
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Whether any account exists.
    async fn has_users(&self) -> Result<bool, StoreError>;
    /// Apply `batch` atomically.
    async fn apply(&self, batch: Batch) -> Result<(), StoreError>;

    /// A user by canonical username.
    async fn user_by_username(&self, canonical: &str) -> Result<Option<User>, StoreError>;
    /// A user by id.
    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;

    /// A flow by id.
    async fn flow(&self, id: FlowId) -> Result<Option<Flow>, StoreError>;
    /// The user's `recovery` flows that have not expired at `now`, oldest first (a waiting
    /// recovery is one of them; the owner's cancel ends it).
    async fn recovery_flows(&self, user_id: UserId, now: OffsetDateTime) -> Result<Vec<Flow>, StoreError>;
    /// Atomically count one more answer on a flow if it has had fewer than `max`; returns the
    /// new attempt count, or `None` when no more may be evaluated.
    async fn reserve_flow_attempt(&self, id: FlowId, max: u32) -> Result<Option<u32>, StoreError>;
    /// [`Store::reserve_flow_attempt`] and, when the flow grants the attempt and `account` is
    /// given, [`Store::reserve_failure`] on that counter — in one transaction where that cannot
    /// deadlock (SQLite's one writer: a step's reservations cost one commit), in two otherwise.
    async fn reserve_attempt(
        &self,
        id: FlowId,
        max: u32,
        account: Option<AccountCounter>,
    ) -> Result<AttemptReservation, StoreError>;
    /// [`Store::reserve_attempt`] and, when it grants the attempt
    /// ([`AttemptReservation::granted`]), [`Store::apply`] `then`: the writes of a step whose
    /// answer was found right before it was counted, made only if it may count. In one
    /// transaction where the store's writes are serial (SQLite: the step costs one commit, not
    /// two), in two otherwise (PostgreSQL, for the lock order [`Store::reserve_attempt`] keeps).
    /// `then` failing (a lost compare-and-swap) undoes `then` alone: the attempt stays counted.
    async fn reserve_attempt_and_apply(
        &self,
        id: FlowId,
        max: u32,
        account: Option<AccountCounter>,
        then: Batch,
    ) -> Result<ReservedStep, StoreError>;
    /// Atomically count one more code sent in a flow if fewer than `max` were; returns the new count.
    async fn reserve_flow_send(&self, id: FlowId, max: u32) -> Result<Option<u32>, StoreError>;

    /// Reserve one attempt against a failure counter (see [`LockoutPolicy`]): allowed attempts
    /// are counted as failures until [`Write::ClearFailures`] resets them.
    async fn reserve_failure(
        &self,
        key: &str,
        kind: &str,
        now: OffsetDateTime,
        policy: &LockoutPolicy,
    ) -> Result<Reservation, StoreError>;

    /// Count one event in each `(key, limit)` bucket of the fixed window starting at
    /// `window_start`; `true` if every bucket is still within its limit after counting.
    async fn hit_rate_limits(
        &self,
        buckets: &[(String, u32)],
        window_start: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// A user's factors, oldest first.
    async fn factors(&self, user_id: UserId) -> Result<Vec<Factor>, StoreError>;
    /// An App Attest key by its id.
    async fn app_attest_key(&self, key_id: &str) -> Result<Option<AppAttestKey>, StoreError>;
    /// The account's passkeys, oldest first.
    async fn passkeys(&self, user_id: UserId) -> Result<Vec<Passkey>, StoreError>;
    /// The passkey with this credential id (Base64url), whoever's it is.
    async fn passkey_by_credential(&self, credential_id: &str) -> Result<Option<Passkey>, StoreError>;
    /// A device, revoked or not.
    async fn device(&self, id: DeviceId) -> Result<Option<Device>, StoreError>;
    /// The user's devices that are not revoked, oldest first.
    async fn devices(&self, user_id: UserId) -> Result<Vec<Device>, StoreError>;
    /// A remembered client by id, whatever its state.
    async fn remembered_client(&self, id: RememberedClientId) -> Result<Option<RememberedClient>, StoreError>;
    /// The user's remembered clients neither forgotten nor expired at `now`, oldest first.
    async fn remembered_clients(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<RememberedClient>, StoreError>;
    /// Count one more PIN attempt on a device before it is evaluated, unless `max` consecutive
    /// failures are counted already: `Some(n)`, the n-th; `None`, the PIN is blocked.
    async fn reserve_pin_attempt(&self, id: DeviceId, max: u32) -> Result<Option<u32>, StoreError>;
    /// An approval.
    async fn approval(&self, id: ApprovalId) -> Result<Option<Approval>, StoreError>;
    /// The user's approvals waiting for an answer that have not expired at `now`.
    async fn pending_approvals(&self, user_id: UserId, now: OffsetDateTime) -> Result<Vec<Approval>, StoreError>;
    /// When the user last answered an approval "this wasn't me", if they did.
    async fn last_reported_approval(&self, user_id: UserId) -> Result<Option<OffsetDateTime>, StoreError>;
    /// The user's recovery codes, used ones included.
    async fn recovery_codes(&self, user_id: UserId) -> Result<Vec<RecoveryCode>, StoreError>;
    /// Claim flows that expired before `before` and were not claimed yet, at most `limit`, so
    /// each is reported (as abandoned, when it never finished) by exactly one replica.
    async fn claim_expired_flows(&self, before: OffsetDateTime, limit: u32) -> Result<Vec<Flow>, StoreError>;

    /// The session of a refresh token (by its hash), and whether the token was spent.
    async fn refresh_token(&self, hash: &str) -> Result<Option<(SessionId, bool)>, StoreError>;
    /// A session by id.
    async fn session(&self, id: SessionId) -> Result<Option<Session>, StoreError>;
    /// A user's live sessions, newest first.
    async fn live_sessions(&self, user_id: UserId, now: OffsetDateTime) -> Result<Vec<Session>, StoreError>;
    /// Spend `old_hash` and store `new_hash` in its family, atomically; a spent token revokes
    /// the family. `idle_cutoff`: the session must have been refreshed (or created) after it.
    /// `proof_jkt`: the thumbprint of the key that signed the request's DPoP proof, which must
    /// equal the session's `dpop_jkt` when it has one ([`RotateOutcome::ProofMismatch`]).
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: OffsetDateTime,
        idle_cutoff: OffsetDateTime,
        proof_jkt: Option<&str>,
    ) -> Result<RotateOutcome, StoreError>;
    /// Record a DPoP proof (`id`: a digest of its key thumbprint and `jti`) kept until
    /// `expires_at`; `false` if it was recorded already (a replay).
    async fn use_dpop_proof(&self, id: &str, expires_at: OffsetDateTime) -> Result<bool, StoreError>;

    /// Claim up to `limit` due messages of `provider` for `lease`; a crashed worker's claims
    /// expire. Each provider is claimed on its own, so a hung one holds back only its messages.
    async fn claim_outbox(
        &self,
        provider: &str,
        now: OffsetDateTime,
        limit: u32,
        lease: time::Duration,
    ) -> Result<Vec<OutboxMessage>, StoreError>;
    /// Extend the lease of messages still being sent to `until` (a live sender renews; a dead
    /// one's lease runs out soon and another worker takes the message).
    async fn renew_outbox(&self, ids: &[MessageId], until: OffsetDateTime) -> Result<(), StoreError>;
    /// Mark a message delivered; `keep_body` keeps the sealed body (development outbox).
    async fn outbox_sent(&self, id: MessageId, now: OffsetDateTime, keep_body: bool) -> Result<(), StoreError>;
    /// Record a failed attempt: retry at `retry_at`, or give up (`None`).
    async fn outbox_failed(
        &self,
        id: MessageId,
        error: &str,
        retry_at: Option<OffsetDateTime>,
    ) -> Result<(), StoreError>;
    /// Messages not delivered, per provider and status (`pending`, `sending`, `dead`): how many,
    /// and when the oldest was queued.
    async fn outbox_backlog(&self) -> Result<Vec<OutboxBacklog>, StoreError>;
    /// Every message of a provider, oldest first (the development outbox is provider `dev`).
    async fn outbox_messages(&self, provider: Option<&str>) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Make what was erased unrecoverable from the database's own files: SQLite checkpoints and
    /// truncates its write-ahead log (deleted rows are zeroed in place, `secure_delete`);
    /// PostgreSQL leaves dead rows to (auto)vacuum.
    async fn scrub(&self) -> Result<(), StoreError>;

    /// Delete rate-limit windows, flows and DPoP proof records that ended before `before`;
    /// returns rows deleted.
    async fn purge(&self, before: OffsetDateTime) -> Result<u64, StoreError>;

    /// Audit events, newest first, optionally for one user.
    async fn audit_events(&self, user_id: Option<UserId>, limit: u32) -> Result<Vec<AuditEvent>, StoreError>;

    /// One user's audit events, newest first, strictly older than the event `before` when given
    /// (a cursor: events written meanwhile never shift a page). An unknown `before` gives none.
    async fn user_events(
        &self,
        user_id: UserId,
        before: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, StoreError>;

    /// The event webhook endpoints made through the admin API, oldest first.
    async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError>;

    /// The account's admin role, if it has one.
    async fn admin_role(&self, user_id: UserId) -> Result<Option<String>, StoreError>;
    /// Accounts matching `q`, newest first (by id: an account created while an operator pages
    /// lands before the first page, so pages never shift).
    async fn search_users(&self, q: &UserQuery) -> Result<Vec<UserSummary>, StoreError>;
    /// Audit events matching `q`, newest first.
    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError>;
    /// Messages in `status` (any when none), newest first, older than the message `before`.
    async fn outbox_page(
        &self,
        status: Option<OutboxStatus>,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError>;
    /// Send a dead message again from its first attempt; `false` unless it was dead and still
    /// has its recipient and body.
    async fn requeue_outbox(&self, id: MessageId, now: OffsetDateTime) -> Result<bool, StoreError>;
    /// The summary figures, counting events and messages since `since`.
    async fn figures(&self, since: OffsetDateTime) -> Result<Figures, StoreError>;

    /// An account's sightings, most recently seen first, at most `limit`.
    async fn sightings(&self, user_id: UserId, limit: u32) -> Result<Vec<Sighting>, StoreError>;

    /// What a risk assessment counts, in one round trip: failed password sign-ins (audit
    /// `sign_in`/`failure`) of the account `user_id` and from the address `ip` since
    /// `failures_since`; and since `changes_since`, when the account last completed a recovery
    /// and when its owner last said "this wasn't me" (to a notice, or cancelling a recovery).
    async fn risk_counts(
        &self,
        user_id: UserId,
        ip: Option<&str>,
        failures_since: OffsetDateTime,
        changes_since: OffsetDateTime,
    ) -> Result<RiskCounts, StoreError>;
}
