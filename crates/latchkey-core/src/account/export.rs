//! The user's copy of their data (`GET /v1/me/export`): the profile, factors and devices
//! described without secrets, the live sessions and the whole security timeline, in one
//! document. It is assembled from what the other `me` routes show, so it can show no more.

use super::Account;
use super::events::MAX_PAGE;
use crate::auth::Principal;
use crate::clock::rfc3339;
use crate::error::AuthError;
use latchkey_proto as proto;

/// The most events an export holds (the newest); more than years of an ordinary account's.
const MAX_EVENTS: usize = 10_000;

impl Account<'_> {
    /// `GET /v1/me/export`.
    pub async fn export(&self, p: &Principal) -> Result<proto::AccountExport, AuthError> {
        let mut events = vec![];
        let mut before: Option<String> = None;
        loop {
            let page = self.events(p, before.as_deref(), Some(MAX_PAGE)).await?;
            events.extend(page.events);
            match page.next_before {
                Some(next) if events.len() < MAX_EVENTS => before = Some(next),
                _ => break,
            }
        }
        events.truncate(MAX_EVENTS);
        Ok(proto::AccountExport {
            exported_at: rfc3339(self.auth.now()),
            created_at: rfc3339(p.user.created_at),
            profile: self.me(p),
            factors: self.factors(p).await?,
            devices: self.devices(p).await?,
            sessions: self.auth.sessions().list(p).await?,
            events,
        })
    }
}
