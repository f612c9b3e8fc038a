//! Event webhooks (issue 15, item 1): what the audit log records, told to the app's backend.
//!
//! An event is not a second record of what happened: it is derived from the audit event a change
//! writes, and queued in the outbox **in the same transaction** ([`Auth::apply`]). A change that
//! commits is told to every subscribed endpoint, at least once; one that rolls back is told to
//! none. Each endpoint is an outbox provider of its own (`event:<id>`), so the worker gives it a
//! lane of its own: one slow or dead receiver delays no one else.
//!
//! Payloads carry ids and facts (the audit event's kind, outcome, address, user agent and
//! detail, which never hold a secret), never passwords, codes, TOTP secrets or tokens.

use crate::auth::Auth;
use crate::clock::rfc3339;
use crate::ids::{FlowId, MessageId, UserId};
use crate::model::{AccountCounter, AuditEvent, OutboxMessage, OutboxStatus, User};
use crate::store::{Batch, ReservedStep, StoreError, Write};
use std::sync::Arc;

pub use crate::subscriptions::{
    CHANNEL, EVENT_TYPES, Endpoint, PROVIDER_PREFIX, REFRESH, Subscriptions, endpoint_problem, event_type, new_secret,
    sealed,
};

/// The payload of one event (Standard Webhooks' `type`, `timestamp`, `data`).
fn payload(kind: &str, a: &AuditEvent, username: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "type": kind,
        "timestamp": rfc3339(a.at),
        "data": {
            "event_id": a.id.to_string(),
            "user_id": a.user_id.map(|u| u.to_string()),
            "username": username,
            "outcome": a.outcome,
            "ip": a.ip,
            "user_agent": a.user_agent,
            "detail": a.detail,
        }
    })
}

/// Whether `batch` queues an outbox message (a text, an email, a push, an event): what the
/// delivery worker is woken for once the batch is committed.
fn queues_a_message(batch: &Batch) -> bool {
    batch.0.iter().any(|w| matches!(w, Write::Enqueue(_)))
}

impl Auth {
    /// Apply a batch, with an event message for every subscribed endpoint of every audit event in
    /// it that is an event: one transaction, so an event is queued if and only if its change
    /// commits. Every write of the domain goes through here, and so the delivery worker is woken
    /// here, once the batch is committed, when it queued a message — and only then: a wake-up
    /// sends each of the worker's lanes to the database to claim.
    pub(crate) async fn apply(&self, mut batch: Batch) -> Result<(), StoreError> {
        self.fan_out(&mut batch).await?;
        let queued = queues_a_message(&batch);
        self.store.apply(batch).await?;
        if queued {
            self.outbox_wakeup.notify_one();
        }
        Ok(())
    }

    /// Reserve an attempt on flow `id` (and on `account`) and, when `right` and the attempt is
    /// granted, apply `then` with it ([`crate::store::Store::reserve_attempt_and_apply`]), its
    /// events queued as [`Auth::apply`] queues them. The events are made whether or not `right`,
    /// so the work before the reservation is the same for a right answer and a wrong one.
    pub(crate) async fn reserve_and_apply(
        &self,
        id: FlowId,
        account: Option<AccountCounter>,
        mut then: Batch,
        right: bool,
    ) -> Result<ReservedStep, StoreError> {
        self.fan_out(&mut then).await?;
        let queued = queues_a_message(&then);
        let max = self.settings.flows.max_attempts;
        if !right {
            let reservation = self.store.reserve_attempt(id, max, account).await?;
            return Ok(ReservedStep { reservation, applied: None });
        }
        let step = self.store.reserve_attempt_and_apply(id, max, account, then).await?;
        if queued && matches!(step.applied, Some(Ok(()))) {
            self.outbox_wakeup.notify_one();
        }
        Ok(step)
    }

    /// The endpoints events go to (the worker gives each a lane; its sender signs with the
    /// secret).
    pub async fn webhook_endpoints(&self) -> Result<Arc<Vec<Endpoint>>, StoreError> {
        self.subscriptions.current(self.store.as_ref(), &self.keys).await
    }

    async fn fan_out(&self, batch: &mut Batch) -> Result<(), StoreError> {
        let events: Vec<(&'static str, AuditEvent)> = batch
            .0
            .iter()
            .filter_map(|w| match w {
                Write::Audit(a) => event_type(&a.kind, &a.outcome).map(|t| (t, a.clone())),
                _ => None,
            })
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        let endpoints = self.webhook_endpoints().await?;
        for (kind, a) in events {
            let to: Vec<&Endpoint> = endpoints.iter().filter(|e| e.events.iter().any(|x| x == kind)).collect();
            if to.is_empty() {
                continue;
            }
            let username = match a.user_id {
                Some(id) => self.username_of(batch, id).await?,
                None => None,
            };
            let body = payload(kind, &a, username.as_deref()).to_string();
            for e in to {
                let id = MessageId::new();
                let body_sealed = self
                    .keys
                    .seal(self.rng.as_ref(), &id.to_string(), body.as_bytes())
                    .map_err(|e| StoreError::Corrupt(format!("cannot seal an event: {e}")))?;
                batch.push(Write::Enqueue(OutboxMessage {
                    id,
                    channel: CHANNEL.into(),
                    provider: e.provider(),
                    to: e.id.clone(),
                    subject: kind.into(),
                    body_sealed: Some(body_sealed),
                    status: OutboxStatus::Pending,
                    attempts: 0,
                    next_attempt_at: a.at,
                    last_error: None,
                    created_at: a.at,
                    sent_at: None,
                }));
            }
        }
        Ok(())
    }

    /// The account's username: as the batch writes it, else as stored.
    async fn username_of(&self, batch: &Batch, id: UserId) -> Result<Option<String>, StoreError> {
        let written = batch.0.iter().rev().find_map(|w| match w {
            Write::InsertUser(u) | Write::UpdateUser(u) if u.id == id => Some(u.username.clone()),
            _ => None,
        });
        if written.is_some() {
            return Ok(written);
        }
        Ok(self.store.user_by_id(id).await?.map(|u: User| u.username))
    }
}
