//! Flow records, one-time codes and their messages, and the send limits (OOB-5) every code
//! step goes through.

use crate::auth::{Auth, StepEvent, secs};
use crate::error::{AuthError, retry_after};
use crate::ids::{FlowId, MessageId, UserId};
use crate::model::*;
use crate::secret::{random_digits, random_token};
use latchkey_proto::Channel;
use time::OffsetDateTime;

impl Auth {
    pub(crate) fn new_flow(
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
            FlowState::AwaitingDeviceSignature { .. } => super::DEVICE_NONCE_TTL_SECS.min(self.settings.flows.ttl_secs),
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
    pub(crate) fn issue_code(
        &self,
        flow_id: FlowId,
        channel: Channel,
        to: &str,
        masked: String,
        (message, locale): (&str, Option<&str>),
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
        let minutes = (ttl / 60).to_string();
        let (subject, body) = self.text(locale, message, &[("code", code.expose()), ("minutes", &minutes)]);
        Ok((challenge, self.sealed_message(channel, to, &subject, &body, now)?))
    }

    /// A code nobody knows, for look-alike flows (a taken username, an unknown account): the
    /// answer has the same shape, nothing is sent and no answer matches.
    pub(crate) fn unknowable_code(
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

    /// Message `id` in `locale` (docs/account.md, "Messages in the user's language"), with
    /// `{product}` and `args` filled in: its subject and body.
    pub(crate) fn text(&self, locale: Option<&str>, id: &str, args: &[(&str, &str)]) -> (String, String) {
        let mut all: Vec<(&str, &str)> = vec![("product", self.settings.product_name.as_str())];
        all.extend_from_slice(args);
        crate::messages::render(&self.settings.messages, &self.settings.default_locale, locale, id, &all)
    }

    /// A message for the outbox, its body sealed with the data key (it may hold a code).
    pub(crate) fn sealed_message(
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
    pub(crate) async fn check_send_limits(
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
    pub(crate) async fn check_look_alike_limits(
        &self,
        account: &str,
        destination: Option<&str>,
        ctx: &ClientContext,
        channel: Channel,
    ) -> Result<(), AuthError> {
        self.send_limits(&format!("send:look_alike:{account}"), destination, ctx, channel, false).await
    }

    pub(crate) async fn send_limits(
        &self,
        account_bucket: &str,
        destination: Option<&str>,
        ctx: &ClientContext,
        channel: Channel,
        real: bool,
    ) -> Result<(), AuthError> {
        // Checklist: gating code sends on a genuine app is the strongest defence against SMS
        // pumping; a look-alike answer is gated exactly like a real one.
        self.require_genuine_app(crate::factors::app_integrity::GatedAction::CodeSends, ctx)?;
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
    pub(crate) async fn sms_day_allows(&self, ctx: &ClientContext, real: bool) -> Result<bool, AuthError> {
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

    /// Claim flows that expired and report the unfinished ones as abandoned at their step, so
    /// operators see where users drop off. Each flow is reported once across replicas.
    pub async fn sweep_expired_flows(&self, limit: u32) -> Result<Vec<StepEvent>, AuthError> {
        let flows = self.store.claim_expired_flows(self.now(), limit).await?;
        Ok(flows
            .iter()
            .filter(|f| !f.state.is_terminal())
            .map(|f| StepEvent { step: f.state.step_name(), outcome: "abandoned" })
            .collect())
    }

    /// A security notice to each verified address of the account (email and phone).
    pub(crate) fn notification(
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

    /// The codes a `save_recovery_codes` step shows.
    pub(crate) fn sealed_recovery_codes(&self, flow: &Flow, sealed: &str) -> Result<Vec<String>, AuthError> {
        let json = self.keys.open(&flow.id.to_string(), sealed)?;
        serde_json::from_slice(&json).map_err(|e| AuthError::Internal(e.to_string()))
    }
}
