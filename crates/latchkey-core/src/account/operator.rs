//! The operator's reads (`auth.admin()`): accounts searched and paged, the audit log queried,
//! the outbox listed and a dead message requeued, and the summary figures.
//!
//! Pages are keyset cursors (the last id of the previous page), so what is written while an
//! operator pages never shifts a page. Filters are checked here and reach the store as bound
//! parameters only.

use super::admin::{Admin, Operator};
use crate::clock::rfc3339;
use crate::error::AuthError;
use crate::ids::{EventId, MessageId, UserId};
use crate::model::{OutboxStatus, UserStatus};
use crate::store::{AuditQuery, UserQuery};
use latchkey_proto as proto;
use std::str::FromStr;
use time::OffsetDateTime;

/// The largest page.
pub const MAX_PAGE: u32 = 100;
/// The page when none is asked.
const DEFAULT_PAGE: u32 = 50;

/// `GET /admin/v1/users`'s filters, as the request gives them.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// A prefix of the username, email or phone number.
    pub query: Option<String>,
    /// `active`, `unconfirmed` or `disabled`.
    pub status: Option<String>,
    /// `totp`, `sms`, `email`, `recovery_codes`, `device` or `none`.
    pub factor: Option<String>,
    /// RFC 3339 bounds of the creation time.
    pub created_after: Option<String>,
    /// See `created_after`.
    pub created_before: Option<String>,
    /// RFC 3339 bounds of the last session start or refresh.
    pub seen_after: Option<String>,
    /// See `seen_after`.
    pub seen_before: Option<String>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// 1–100, default 50.
    pub limit: Option<u32>,
}

/// `GET /admin/v1/audit`'s filters, as the request gives them.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// One account's events, by username (a deleted account's by its id).
    pub user: Option<String>,
    /// One kind.
    pub kind: Option<String>,
    /// One outcome.
    pub outcome: Option<String>,
    /// RFC 3339: at or after.
    pub since: Option<String>,
    /// RFC 3339: before.
    pub until: Option<String>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// 1–100, default 50.
    pub limit: Option<u32>,
}

/// The audit kinds that are steps of signing up and signing in: the funnel's.
pub const FUNNEL_STEPS: [&str; 15] = [
    "sign_up",
    "confirm_sign_up",
    "sign_in",
    "select_mfa",
    "totp_code",
    "sms_code",
    "email_code",
    "recovery_code",
    "push_approval",
    "device_signature",
    "new_password",
    "remembered_client",
    "step_up",
    "refresh",
    "risk",
];

/// The factor kinds an account list filters by.
pub const FACTOR_FILTERS: [&str; 6] = ["totp", "sms", "email", "recovery_codes", "device", "none"];

fn bad(what: &str) -> AuthError {
    AuthError::InvalidRequest(what.into())
}

fn time(v: Option<&String>, name: &str) -> Result<Option<OffsetDateTime>, AuthError> {
    v.map(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339))
        .transpose()
        .map_err(|_| bad(&format!("{name}: not an RFC 3339 time")))
}

fn id<T: FromStr>(v: Option<&String>, name: &str) -> Result<Option<T>, AuthError> {
    v.map(|s| s.parse::<T>()).transpose().map_err(|_| bad(&format!("{name}: not a cursor of this list")))
}

fn page(limit: Option<u32>) -> Result<u32, AuthError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(n),
        _ => Err(bad("limit: 1 to 100")),
    }
}

fn entry(e: crate::model::AuditEvent) -> proto::AuditEntry {
    proto::AuditEntry {
        id: e.id.to_string(),
        at: rfc3339(e.at),
        user_id: e.user_id.map(|u| u.to_string()),
        kind: e.kind,
        outcome: e.outcome,
        ip: e.ip,
        user_agent: e.user_agent,
        detail: e.detail,
    }
}

impl Admin<'_> {
    /// `GET /admin/v1/users`.
    pub async fn list(&self, f: &UserFilter) -> Result<proto::AdminUserList, AuthError> {
        if f.status.as_deref().is_some_and(|s| UserStatus::parse(s).is_none()) {
            return Err(bad("status: active, unconfirmed, locked or disabled"));
        }
        if f.factor.as_deref().is_some_and(|k| !FACTOR_FILTERS.contains(&k)) {
            return Err(bad("factor: totp, sms, email, recovery_codes, device or none"));
        }
        let query = f.query.as_deref().map(str::trim).filter(|q| !q.is_empty());
        if query.is_some_and(|q| q.chars().count() > 254) {
            return Err(bad("query: at most 254 characters"));
        }
        let limit = page(f.limit)?;
        let q = UserQuery {
            prefix: query.map(str::to_lowercase),
            status: f.status.clone(),
            factor: f.factor.clone(),
            created_after: time(f.created_after.as_ref(), "created_after")?,
            created_before: time(f.created_before.as_ref(), "created_before")?,
            seen_after: time(f.seen_after.as_ref(), "seen_after")?,
            seen_before: time(f.seen_before.as_ref(), "seen_before")?,
            below: id::<UserId>(f.cursor.as_ref(), "cursor")?,
            limit: limit + 1,
        };
        let mut rows = self.auth.store.search_users(&q).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(|r| r.user.id.to_string()) } else { None };
        let users = rows
            .into_iter()
            .map(|r| proto::AdminUserSummary {
                id: r.user.id.to_string(),
                username: r.user.username,
                email: r.user.email,
                email_verified: r.user.email_verified,
                phone: r.user.phone,
                phone_verified: r.user.phone_verified,
                status: r.user.status.as_str().into(),
                created_at: rfc3339(r.user.created_at),
                last_seen_at: r.last_seen_at.map(rfc3339),
                factors: r.factors,
                devices: r.devices,
            })
            .collect();
        Ok(proto::AdminUserList { users, next_cursor })
    }

    /// `GET /admin/v1/audit`.
    pub async fn audit(&self, f: &AuditFilter) -> Result<proto::AuditEventList, AuthError> {
        let user_id = match f.user.as_deref() {
            None => None,
            // A deleted account is found by its id only: nothing else of it is kept.
            Some(u) => match u.parse::<UserId>() {
                Ok(id) => Some(id),
                Err(_) => Some(self.user(u).await?.id),
            },
        };
        let limit = page(f.limit)?;
        let q = AuditQuery {
            user_id,
            kind: f.kind.clone(),
            outcome: f.outcome.clone(),
            since: time(f.since.as_ref(), "since")?,
            until: time(f.until.as_ref(), "until")?,
            before: id::<EventId>(f.cursor.as_ref(), "cursor")?,
            limit: limit + 1,
        };
        let mut rows = self.auth.store.query_audit(&q).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(|e| e.id.to_string()) } else { None };
        Ok(proto::AuditEventList { events: rows.into_iter().map(entry).collect(), next_cursor })
    }

    /// `GET /admin/v1/outbox`.
    pub async fn outbox(
        &self,
        status: Option<&str>,
        cursor: Option<&String>,
        limit: Option<u32>,
    ) -> Result<proto::OutboxList, AuthError> {
        let status = match status {
            None => None,
            Some(s) => Some(OutboxStatus::parse(s).ok_or_else(|| bad("status: pending, sending, sent or dead"))?),
        };
        let limit = page(limit)?;
        let mut rows = self.auth.store.outbox_page(status, id::<MessageId>(cursor, "cursor")?, limit + 1).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(|m| m.id.to_string()) } else { None };
        let messages = rows
            .into_iter()
            .map(|m| proto::OutboxEntry {
                id: m.id.to_string(),
                channel: m.channel,
                provider: m.provider,
                recipient: m.to,
                subject: m.subject,
                status: m.status.as_str().into(),
                attempts: m.attempts,
                last_error: m.last_error,
                created_at: rfc3339(m.created_at),
                sent_at: m.sent_at.map(rfc3339),
            })
            .collect();
        Ok(proto::OutboxList { messages, next_cursor })
    }

    /// `POST /admin/v1/outbox/{id}/requeue`: a dead message is sent again from its first
    /// attempt. `NotFound` unless it is dead and still has its recipient and body.
    pub async fn requeue(&self, id: &str, by: &Operator) -> Result<(), AuthError> {
        by.may_change()?;
        let id: MessageId = id.parse().map_err(|_| AuthError::NotFound)?;
        let now = self.auth.now();
        if !self.auth.store.requeue_outbox(id, now).await? {
            return Err(AuthError::NotFound);
        }
        let ctx = crate::model::ClientContext::default();
        let detail = serde_json::json!({"message_id": id, "admin": by.name});
        self.auth
            .store
            .apply(crate::store::Batch(vec![crate::auth::audit(now, None, "admin_requeue", "success", &ctx, detail)]))
            .await?;
        // Made due again in the store, not queued by a batch: `Auth::apply` did not wake the worker.
        self.auth.outbox_wakeup.notify_one();
        Ok(())
    }

    /// `GET /admin/v1/summary`: the figures, with the funnel and delivery over the last `days`.
    pub async fn summary(&self, days: Option<u32>) -> Result<proto::AdminSummary, AuthError> {
        let days = match days.unwrap_or(30) {
            d @ 1..=366 => d,
            _ => return Err(bad("days: 1 to 366")),
        };
        let now = self.auth.now();
        let today = now.unix_timestamp().div_euclid(86_400);
        let since = OffsetDateTime::from_unix_timestamp((today - i64::from(days) + 1) * 86_400).unwrap_or(now);
        let f = self.auth.store.figures(since).await?;
        let day = |d: i64| {
            OffsetDateTime::from_unix_timestamp(d * 86_400).map(|t| rfc3339(t)[..10].to_owned()).unwrap_or_default()
        };
        let figure = |(provider, status, count, retried)| proto::DeliveryFigure { provider, status, count, retried };
        let depth = self.auth.store.outbox_backlog().await?;
        Ok(proto::AdminSummary {
            since: rfc3339(since),
            users: f.users_by_status.iter().map(|(_, n)| n).sum(),
            users_by_status: f.users_by_status.into_iter().collect(),
            users_by_factor: f.users_by_factor.into_iter().filter(|(_, n)| *n > 0).collect(),
            users_without_factor: f.users_without_factor,
            funnel: f
                .steps
                .into_iter()
                .filter(|(_, step, _, _)| FUNNEL_STEPS.contains(&step.as_str()))
                .map(|(d, step, outcome, count)| proto::FunnelPoint { day: day(d), step, outcome, count })
                .collect(),
            delivery: f.delivery.into_iter().map(figure).collect(),
            outbox_depth: depth
                .into_iter()
                .map(|b| proto::DeliveryFigure {
                    provider: b.provider,
                    status: b.status.as_str().into(),
                    count: b.count,
                    retried: 0,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_one_to_a_hundred() {
        assert_eq!(page(None).unwrap(), 50);
        assert_eq!(page(Some(100)).unwrap(), 100);
        assert!(page(Some(0)).is_err() && page(Some(101)).is_err());
    }
}
