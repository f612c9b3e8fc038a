//! The operator's event webhook endpoints (`auth.admin()`, issue 15): subscribe, list, remove.
//! Delivery is `crate::events`' and the server's.

use super::admin::{Admin, Operator};
use crate::auth::audit;
use crate::clock::rfc3339;
use crate::error::AuthError;
use crate::events::{Endpoint, endpoint_problem, new_secret, sealed};
use crate::model::ClientContext;
use crate::store::{Batch, Write};
use latchkey_proto as proto;

/// The most endpoints made through the API (each is a delivery lane on every replica).
pub const MAX_ENDPOINTS: usize = 50;

fn described(e: &Endpoint, secret: bool) -> proto::Webhook {
    proto::Webhook {
        id: e.id.clone(),
        url: e.url.clone(),
        events: e.events.clone(),
        source: if e.created_at.is_some() { "api" } else { "config" }.into(),
        created_at: e.created_at.map(rfc3339),
        secret: secret.then(|| e.secret.clone()),
    }
}

impl Admin<'_> {
    /// `GET /admin/v1/webhooks`: every endpoint, without secrets.
    pub async fn webhooks(&self) -> Result<proto::WebhookList, AuthError> {
        self.auth.subscriptions.invalidate();
        let all = self.auth.webhook_endpoints().await?;
        Ok(proto::WebhookList { webhooks: all.iter().map(|e| described(e, false)).collect() })
    }

    /// `GET /admin/v1/webhooks/{id}`.
    pub async fn webhook(&self, id: &str) -> Result<proto::Webhook, AuthError> {
        self.auth.subscriptions.invalidate();
        let all = self.auth.webhook_endpoints().await?;
        all.iter().find(|e| e.id == id).map(|e| described(e, false)).ok_or(AuthError::NotFound)
    }

    /// `POST /admin/v1/webhooks`: a new endpoint with a new signing secret, shown this once.
    pub async fn create_webhook(&self, req: proto::WebhookRequest, by: &Operator) -> Result<proto::Webhook, AuthError> {
        by.may_change()?;
        let mut events = req.events;
        events.sort();
        if events.windows(2).any(|w| w[0] == w[1]) {
            return Err(AuthError::InvalidRequest("events: name each event once".into()));
        }
        if let Some(problem) = endpoint_problem(&req.url, &events) {
            return Err(AuthError::InvalidRequest(problem));
        }
        let stored = self.auth.store.webhook_endpoints().await?;
        if stored.len() >= MAX_ENDPOINTS {
            return Err(AuthError::InvalidRequest(format!("at most {MAX_ENDPOINTS} endpoints")));
        }
        let now = self.auth.now();
        let id_bytes = crate::secret::random_bytes(self.auth.rng.as_ref(), 12);
        let id = format!("ep_{}", id_bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let e =
            Endpoint { id, url: req.url, events, secret: new_secret(self.auth.rng.as_ref()), created_at: Some(now) };
        let row = sealed(&self.auth.keys, self.auth.rng.as_ref(), &e, now)
            .ok_or_else(|| AuthError::Internal("cannot seal the webhook secret".into()))?;
        let detail = serde_json::json!({"id": e.id, "url": e.url, "events": e.events, "admin": by.name});
        self.auth
            .apply(Batch(vec![
                Write::InsertWebhook(row),
                audit(now, None, "admin_webhook", "created", &ClientContext::default(), detail),
            ]))
            .await?;
        self.auth.subscriptions.invalidate();
        Ok(described(&e, true))
    }

    /// `DELETE /admin/v1/webhooks/{id}`: the endpoint and its undelivered events. A configured
    /// endpoint is removed from the configuration, not here.
    pub async fn delete_webhook(&self, id: &str, by: &Operator) -> Result<(), AuthError> {
        by.may_change()?;
        self.auth.subscriptions.invalidate();
        let all = self.auth.webhook_endpoints().await?;
        let e = all.iter().find(|e| e.id == id).ok_or(AuthError::NotFound)?;
        if e.created_at.is_none() {
            return Err(AuthError::InvalidRequest(format!(
                "{id} is defined in the configuration ([[webhooks]]); remove it there"
            )));
        }
        let now = self.auth.now();
        let detail = serde_json::json!({"id": e.id, "url": e.url, "admin": by.name});
        self.auth
            .apply(Batch(vec![
                Write::DeleteWebhook { id: e.id.clone() },
                audit(now, None, "admin_webhook", "deleted", &ClientContext::default(), detail),
            ]))
            .await?;
        self.auth.subscriptions.invalidate();
        Ok(())
    }
}
