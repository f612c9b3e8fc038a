//! The signed-in user's security timeline (`GET /v1/me/events`): their audit events, newest
//! first, with only the facts that are safe to show them.

use super::Account;
use crate::clock::rfc3339;
use crate::error::AuthError;
use crate::ids::{EventId, UserId};
use latchkey_proto as proto;

use crate::auth::Principal;

/// The most events one page holds.
pub const MAX_PAGE: u32 = 100;

/// The detail keys an owner may see: ids of what the event concerns and how it went. Anything
/// else an event records (addresses, hashes, counters) stays in the operator's audit log.
const SHOWN: [&str; 15] = [
    "session_id",
    "device_id",
    "factor_id",
    "flow_id",
    "approval_id",
    "remembered_client_id",
    "method",
    "channel",
    "acr",
    "amr",
    "step",
    "reason",
    "new_device",
    "reasons",
    "fields",
];

impl Account<'_> {
    /// `GET /v1/me/events?before=&limit=`: a page of the caller's events, newest first; a
    /// `before` that is not one of their events gives an empty page.
    pub async fn events(
        &self,
        p: &Principal,
        before: Option<&str>,
        limit: Option<u32>,
    ) -> Result<proto::SecurityEvents, AuthError> {
        self.events_of(p.user.id, before, limit).await
    }

    /// A page of a user's events as the timeline shows them.
    pub(crate) async fn events_of(
        &self,
        user_id: UserId,
        before: Option<&str>,
        limit: Option<u32>,
    ) -> Result<proto::SecurityEvents, AuthError> {
        let before = match before {
            Some(b) => {
                Some(b.parse::<EventId>().map_err(|_| AuthError::InvalidRequest("before: not an event id".into()))?)
            }
            None => None,
        };
        let limit = limit.unwrap_or(50).clamp(1, MAX_PAGE);
        // One more than asked tells whether there is a next page.
        let mut rows = self.auth.store.user_events(user_id, before, limit + 1).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_before = if more { rows.last().map(|e| e.id.to_string()) } else { None };
        let events = rows
            .into_iter()
            .map(|e| proto::SecurityEvent {
                place: self
                    .auth
                    .place_of(e.ip.as_deref())
                    .map(|p| proto::EventPlace { country: p.country, city: p.city }),
                id: e.id.to_string(),
                at: rfc3339(e.at),
                kind: e.kind,
                outcome: e.outcome,
                ip: e.ip,
                user_agent: e.user_agent,
                detail: match e.detail {
                    serde_json::Value::Object(m) => {
                        m.into_iter().filter(|(k, _)| SHOWN.contains(&k.as_str())).collect()
                    }
                    _ => serde_json::Map::new(),
                },
            })
            .collect();
        Ok(proto::SecurityEvents { events, next_before })
    }
}
