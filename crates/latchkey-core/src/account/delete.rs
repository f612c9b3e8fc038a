//! Deleting an account: by its owner (`DELETE /v1/me`, after a recent `aal2` sign-in) or by the
//! operator (`DELETE /admin/v1/users/{username}`).
//!
//! Invariants:
//! - Everything that lets anyone act as the account goes in one transaction: sessions and their
//!   refresh tokens (so access tokens stop at their next use), devices, factors, recovery codes,
//!   remembered clients, pending flows and approvals.
//! - Personal data is erased, not hidden: the user row, the addresses in queued and delivered
//!   messages, the counters keyed by username or address, and the address, user agent and
//!   detail of the account's audit events. The audit log keeps each event's time, kind, outcome
//!   and the account's opaque id, and one `account_deleted` event saying who deleted it.
//! - The owner is told on every channel; those notices are erased once delivered.
//! - The username stays taken for `policy.sign_up.username_quarantine_days`, recorded as a keyed
//!   digest, never as the name.

use super::Account;
use super::admin::{Admin, Operator};
use crate::auth::{Auth, Principal, audit};
use crate::error::AuthError;
use crate::model::*;
use crate::store::{Batch, Erasure, Write};
use latchkey_proto as proto;

impl Account<'_> {
    /// `DELETE /v1/me`.
    pub async fn delete(&self, p: &Principal) -> Result<(), AuthError> {
        self.require_recent_aal2(p)?;
        self.auth.erase_account(&p.user, serde_json::json!({"by": "owner"})).await
    }
}

impl Admin<'_> {
    /// `DELETE /admin/v1/users/{username}`; `by` names the operator in the audit log.
    pub async fn delete(&self, username: &str, by: &Operator) -> Result<(), AuthError> {
        by.may_change()?;
        let user = self.user(username).await?;
        self.auth.erase_account(&user, serde_json::json!({"by": "admin", "admin": by.name})).await
    }
}

impl Auth {
    /// The keyed digest a deleted account's username is retired under.
    pub(crate) fn retired_username(&self, canonical: &str) -> String {
        self.keys.mac("retired_username", "", canonical)
    }

    async fn erase_account(&self, user: &User, by: serde_json::Value) -> Result<(), AuthError> {
        let now = self.now();
        let days = self.settings.sign_up.username_quarantine_days.to_string();
        let (subject, body) = self.text(
            user.profile.locale.as_deref(),
            "account_deleted",
            &[("username", &user.username), ("days", &days)],
        );
        let data = proto::PushData { kind: "notice".into(), approval_id: None };
        let notices = self.notify_everywhere(user, &subject, &body, &data, None, now).await?;
        let mut addresses: Vec<String> = user.email.iter().chain(user.phone.iter()).cloned().collect();
        for d in self.store.devices(user.id).await? {
            if let Some(push) = d.push {
                addresses.push(format!("{}:{}", push.provider, push.token));
            }
        }
        let canonical = &user.username_canonical;
        let mut rate_keys = vec![format!("send:account:{canonical}"), format!("send:look_alike:{canonical}")];
        rate_keys.extend(user.email.iter().chain(user.phone.iter()).map(|d| format!("send:destination:{d}")));
        let erasure = Erasure {
            user_id: user.id,
            counter_keys: vec![canonical.clone()],
            rate_keys,
            addresses,
            notices: notices.iter().map(|m| m.id).collect(),
            username_digest: self.retired_username(canonical),
            retire_until: now + time::Duration::days(i64::from(self.settings.sign_up.username_quarantine_days)),
        };
        let mut batch = Batch::new();
        for m in notices {
            batch.push(Write::Enqueue(m));
        }
        // The deletion's own event keeps no address or user agent: it outlives the account.
        batch.push(Write::EraseUser(Box::new(erasure))).push(audit(
            now,
            Some(user.id),
            "account_deleted",
            "success",
            &ClientContext::default(),
            by,
        ));
        self.apply(batch).await?;
        // Best effort: the rows are gone either way; this only shortens how long their old
        // versions linger in the database's files (a busy SQLite checkpoints later by itself).
        let _ = self.store.scrub().await;
        Ok(())
    }
}
