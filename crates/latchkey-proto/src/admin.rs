//! The operator's API (`/admin/v1/…`): accounts searched and paged, the audit log, the outbox and
//! the summary figures. One account in full is [`crate::AdminUser`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// `GET /admin/v1/users`: a page of accounts, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AdminUserList {
    /// The accounts.
    pub users: Vec<AdminUserSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page. Accounts created while
    /// paging appear before the first page, never inside one, so no account is shown twice or
    /// skipped.
    pub next_cursor: Option<String>,
}

/// One account in a list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AdminUserSummary {
    /// The user id.
    pub id: String,
    /// The username as registered.
    pub username: String,
    /// The email address, if any.
    pub email: Option<String>,
    /// Whether it was verified.
    pub email_verified: bool,
    /// The phone number, if any.
    pub phone: Option<String>,
    /// Whether it was verified.
    pub phone_verified: bool,
    /// `unconfirmed`, `active` or `disabled`.
    pub status: String,
    /// Created (RFC 3339).
    pub created_at: String,
    /// When a session last started or refreshed (RFC 3339); `null` if never.
    pub last_seen_at: Option<String>,
    /// The active factors' kinds (`totp`, `sms`, `email`, `recovery_codes`), sorted.
    pub factors: Vec<String>,
    /// Live devices.
    pub devices: u64,
}

/// `GET /admin/v1/audit`: a page of audit events, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuditEventList {
    /// The events.
    pub events: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// One audit event as stored. Never holds a secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuditEntry {
    /// The event id.
    pub id: String,
    /// When (RFC 3339).
    pub at: String,
    /// The account, if the event concerns one.
    pub user_id: Option<String>,
    /// What happened: `sign_in`, `totp_code`, `password_change`, `account_deleted`, `admin_disable`, …
    pub kind: String,
    /// `success`, `failure`, `denied`, `locked`, …
    pub outcome: String,
    /// The client's address.
    pub ip: Option<String>,
    /// The client's user agent.
    pub user_agent: Option<String>,
    /// Ids and facts of the event (an admin action names the admin as `admin`).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: serde_json::Value,
}

/// `GET /admin/v1/outbox`: a page of messages, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OutboxList {
    /// The messages (never their bodies).
    pub messages: Vec<OutboxEntry>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// One message of the outbox, without its body (codes stay sealed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OutboxEntry {
    /// The message id.
    pub id: String,
    /// `email`, `sms` or `push`.
    pub channel: String,
    /// The provider that delivers it: `smtp`, `sms_webhook`, `fcm`, `apns`, `push_webhook`, `dev`.
    pub provider: String,
    /// The address or number (empty once a deleted account's message was erased).
    pub recipient: String,
    /// The subject.
    pub subject: String,
    /// `pending`, `sending`, `sent` or `dead`.
    pub status: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// Queued (RFC 3339).
    pub created_at: String,
    /// Delivered (RFC 3339).
    pub sent_at: Option<String>,
}

/// `GET /admin/v1/summary`: the figures an operator watches.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AdminSummary {
    /// The start of the window of `funnel` and `delivery` (RFC 3339).
    pub since: String,
    /// Accounts in all.
    pub users: u64,
    /// Accounts per status.
    pub users_by_status: BTreeMap<String, u64>,
    /// MFA adoption: accounts with an active factor of each kind, and `device` for an enrolled
    /// device (kinds nobody has are left out).
    pub users_by_factor: BTreeMap<String, u64>,
    /// Accounts with no second factor and no device.
    pub users_without_factor: u64,
    /// The sign-up and sign-in funnel: the audit events of those steps (`sign_up`,
    /// `confirm_sign_up`, `sign_in` — the password —, `select_mfa`, `totp_code`, `sms_code`,
    /// `email_code`, `recovery_code`, `push_approval`, `device_signature`, `new_password`,
    /// `remembered_client`, `step_up`, `refresh`, `risk`) per UTC day, step and outcome.
    pub funnel: Vec<FunnelPoint>,
    /// Delivery health per provider and status, for messages queued in the window.
    pub delivery: Vec<DeliveryFigure>,
    /// Messages not delivered yet, per provider and status, now.
    pub outbox_depth: Vec<DeliveryFigure>,
}

/// One point of the funnel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct FunnelPoint {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The step (`sign_in` is the password step; `totp_code`, `sms_code`, `push_approval`, …).
    pub step: String,
    /// Its outcome.
    pub outcome: String,
    /// How many.
    pub count: u64,
}

/// Messages of one provider in one status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DeliveryFigure {
    /// The provider.
    pub provider: String,
    /// `pending`, `sending`, `sent` or `dead`.
    pub status: String,
    /// How many.
    pub count: u64,
    /// How many needed more than one attempt (in `delivery`; 0 in `outbox_depth`).
    pub retried: u64,
}

/// `POST /admin/v1/users`: invite someone. The account is created unconfirmed, without a
/// password; the invitation (to the email, else the phone) carries a link with a code that
/// confirms the address and leads to choosing a password.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// The username, as sign-up accepts it.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub username: String,
    /// Where the invitation goes (at least one of `email` and `phone`).
    #[serde(default)]
    pub email: Option<String>,
    /// E.164; the invitation goes here when there is no email.
    #[serde(default)]
    pub phone: Option<String>,
    /// `admin` or `read_only` to invite an admin.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(admin|read_only)$"))]
    pub role: Option<String>,
    /// The invitee's language (BCP 47: `en`, `de-CH`): the invitation and later messages use it.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 35, pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$"))]
    pub locale: Option<String>,
}

/// The invitation sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Invitation {
    /// The new account's id.
    pub user_id: String,
    /// The invitation's flow: `confirm_sign_up` with the invitation's code, then `new_password`.
    pub flow_id: String,
    /// Where the invitation went, masked.
    pub destination: String,
    /// When the invitation stops working (RFC 3339).
    pub expires_at: String,
}

/// `POST /admin/v1/webhooks`: subscribe an endpoint to events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// Where events are POSTed: `https://`, or `http://` to `localhost` only.
    #[cfg_attr(feature = "openapi", schema(min_length = 9, max_length = 2048))]
    pub url: String,
    /// The events (`user.created`, `sign_in.failed`, …; docs/integrations.md lists them).
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 16))]
    pub events: Vec<String>,
}

/// An event webhook endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Webhook {
    /// `ep_…` for one made through the API; the configuration's `id` for a configured one.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The events it receives.
    pub events: Vec<String>,
    /// `api` (made through the admin API) or `config` (in the configuration: change it there).
    pub source: String,
    /// When it was made (RFC 3339); `null` for a configured one.
    pub created_at: Option<String>,
    /// The signing secret (`whsec_…`, Standard Webhooks), only in the answer to `POST`: keep it,
    /// it is never shown again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `GET /admin/v1/webhooks`: every endpoint, configured ones first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WebhookList {
    /// The endpoints.
    pub webhooks: Vec<Webhook>,
}
