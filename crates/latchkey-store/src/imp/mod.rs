//! The one implementation of `Store`, expanded for SQLite and for PostgreSQL: the queries here,
//! the row decoders in `rows.rs`, the writes a batch applies in `writes.rs`.

use async_trait::async_trait;
use base64::Engine;
use latchkey_core::MfaMethod;
use latchkey_core::ids::{
    ApprovalId, DeviceId, EventId, FactorId, FlowId, MessageId, PasskeyId, RememberedClientId, SessionId, UserId,
};
use latchkey_core::model::*;
use latchkey_core::store::{
    AuditQuery, Batch, Erasure, Figures, OutboxBacklog, ReservedStep, RiskCounts, RotateOutcome, Store, StoreError,
    UserQuery, UserSummary, Write,
};
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn evidence_json(e: Option<&latchkey_core::model::BiometricEvidence>) -> Result<Option<String>, StoreError> {
    e.map(|e| serde_json::to_string(e).map_err(|_| corrupt("biometric evidence"))).transpose()
}

/// A user's custom attributes as stored: a JSON object, or NULL when none is set.
fn custom_json(custom: &std::collections::BTreeMap<String, serde_json::Value>) -> Result<Option<String>, StoreError> {
    if custom.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(custom).map(Some).map_err(|_| corrupt("user attributes"))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

/// Unix microseconds.
fn us(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

fn from_us(v: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(v) * 1000).map_err(|_| corrupt("timestamp"))
}

fn opt_us(v: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    v.map(from_us).transpose()
}

fn n32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

fn mfa_method(s: &str) -> Result<MfaMethod, StoreError> {
    Ok(match s {
        "totp" => MfaMethod::Totp,
        "sms" => MfaMethod::Sms,
        "email" => MfaMethod::Email,
        "recovery_code" => MfaMethod::RecoveryCode,
        _ => return Err(corrupt("mfa method")),
    })
}

fn kind_of(s: &str) -> Result<FlowKind, StoreError> {
    Ok(match s {
        "sign_up" => FlowKind::SignUp,
        "sign_in" => FlowKind::SignIn,
        "recovery" => FlowKind::Recovery,
        "enroll" => FlowKind::Enroll,
        "step_up" => FlowKind::StepUp,
        _ => return Err(corrupt("flow kind")),
    })
}

macro_rules! user_cols { () => { "id, username, username_canonical, email, email_verified, phone, phone_verified, status, password_hash, must_change_password, created_at, updated_at, preferred_mfa, phone_changed_at, email_changed_at, name, locale, zoneinfo, picture, attributes" }; }
macro_rules! session_cols { () => { "id, user_id, acr, amr, auth_time, created_at, last_refresh_at, expires_at, revoked_at, revoke_reason, ip, user_agent, device_id, dpop_jkt, flow_id, step_up_required_at" }; }
macro_rules! sightings_upsert { () => { "ON CONFLICT (user_id, kind, value) DO UPDATE SET country = excluded.country, latitude_e6 = excluded.latitude_e6, longitude_e6 = excluded.longitude_e6, last_seen_at = excluded.last_seen_at" }; }
macro_rules! outbox_cols { () => { "id, channel, provider, recipient, subject, body_sealed, status, attempts, next_attempt_at, last_error, created_at, sent_at" }; }

// A deleted account's notice keeps no recipient and no body once it is delivered (or dead).
macro_rules! erase_recipient {
    () => {
        "recipient = CASE WHEN erase_on_delivery THEN '' ELSE recipient END"
    };
}
macro_rules! erase_delivered {
    () => {
        concat!(erase_recipient!(), ", body_sealed = CASE WHEN erase_on_delivery THEN NULL ELSE body_sealed END")
    };
}

macro_rules! sql {
    ($($part:expr),+ $(,)?) => {
        sqlx::AssertSqlSafe(concat!($($part),+))
    };
}

#[macro_use]
mod rows;
#[macro_use]
mod writes;
#[macro_use]
mod erase;
#[macro_use]
mod admin;
mod direct;
pub use direct::STATEMENT_LOG as DIRECT_STATEMENT_LOG;
mod group;
mod postgres;
mod readers;
mod sql;
mod sqlite;

use readers::{Arg, DirectDecoder};

/// `Store::reserve_attempt_and_apply` as two store calls: the reservation, then, if it grants
/// the attempt, the batch.
async fn reserve_then_apply(
    store: &impl Store,
    id: FlowId,
    max: u32,
    account: Option<AccountCounter>,
    then: Batch,
) -> Result<ReservedStep, StoreError> {
    let reservation = store.reserve_attempt(id, max, account).await?;
    let applied = if reservation.granted() { Some(store.apply(then).await) } else { None };
    Ok(ReservedStep { reservation, applied })
}

macro_rules! store_impl {
    ($name:ident, $db:ty, $pool:ty, $row:ty, $claim_suffix:literal) => {
        /// A store on this backend.
        #[derive(Clone, Debug)]
        pub struct $name {
            /// Reads.
            pool: $pool,
            /// Writes: the same pool on PostgreSQL; SQLite's one writer connection.
            writer: $pool,
            /// SQLite: the task that commits writes together (`SqliteStore::with_writer`, the
            /// only way to make one). Always `None` on PostgreSQL, whose WAL writer groups
            /// concurrent commits itself.
            #[allow(dead_code, reason = "read by SQLite's store only")]
            group: Option<group::Group>,
            /// SQLite: the connections its reads on request paths run on (`readers.rs`).
            /// `None` on PostgreSQL.
            readers: Option<std::sync::Arc<readers::Readers>>,
        }

        impl $name {
            /// The pool.
            pub fn pool(&self) -> &$pool {
                &self.pool
            }

            /// The pool writes go through (the same pool on PostgreSQL).
            pub fn writer(&self) -> &$pool {
                &self.writer
            }

        }

        impl $name {
            /// The row `sql` (`sql.rs`) finds with `args` bound, if any: on SQLite's reader
            /// connections where the store has them, through the pool otherwise.
            async fn read_one<T>(
                &self,
                sql: &'static str,
                args: &[Arg<'_>],
                read: fn(&$row) -> Result<T, StoreError>,
                direct: DirectDecoder<T>,
            ) -> Result<Option<T>, StoreError> {
                if let Some(readers) = &self.readers {
                    return readers.one(sql, args, direct);
                }
                let r = Self::bound(sqlx::query(sql), args).fetch_optional(&self.pool).await.map_err(db_err)?;
                r.as_ref().map(read).transpose()
            }

            /// The rows `sql` (`sql.rs`) returns with `args` bound, as `read_one` reads them.
            async fn read_all<T>(
                &self,
                sql: &'static str,
                args: &[Arg<'_>],
                read: fn(&$row) -> Result<T, StoreError>,
                direct: DirectDecoder<T>,
            ) -> Result<Vec<T>, StoreError> {
                if let Some(readers) = &self.readers {
                    return readers.all(sql, args, direct);
                }
                let rows = Self::bound(sqlx::query(sql), args).fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(read).collect()
            }

            fn bound<'q>(
                mut q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
                args: &[Arg<'_>],
            ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
                for a in args {
                    q = match *a {
                        Arg::Id(u) => q.bind(u),
                        Arg::Int(i) => q.bind(i),
                        Arg::Text(s) => q.bind(s.to_owned()),
                    };
                }
                q
            }

            /// A batch through sqlx, in one write transaction; an error rolls it all back.
            async fn apply_sqlx(&self, batch: Batch) -> Result<(), StoreError> {
                self.unit(move |tx| Box::pin(async move {
                    for w in batch.0 {
                        Self::write(tx, w).await?;
                    }
                    Ok(())
                })).await
            }

            /// A deleted account's last notice was just erased: scrub the files of its old
            /// version too.
            async fn scrub_if_erased(&self, row: Option<$row>) -> Result<(), StoreError> {
                match row.map(|r| r.try_get::<bool, _>(0)) {
                    Some(Ok(true)) => self.scrub_files().await,
                    _ => Ok(()),
                }
            }
        }

        #[async_trait]
        impl Store for $name {
            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err)?;
                Ok(())
            }

            async fn apply(&self, batch: Batch) -> Result<(), StoreError> {
                self.apply_batch(batch).await
            }

            async fn user_by_username(&self, canonical: &str) -> Result<Option<User>, StoreError> {
                self.read_one(sql::USER_BY_USERNAME, &[Arg::Text(canonical)], Self::user, direct::Direct::user).await
            }

            async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
                self.read_one(sql::USER_BY_ID, &[Arg::Id(id.0)], Self::user, direct::Direct::user).await
            }

            async fn flow(&self, id: FlowId) -> Result<Option<Flow>, StoreError> {
                self.read_one(sql::FLOW_BY_ID, &[Arg::Id(id.0)], Self::flow, direct::Direct::flow).await
            }

            async fn key_fingerprints(&self) -> Result<Vec<(String, String)>, StoreError> {
                let rows = sqlx::query("SELECT name, fingerprint FROM key_fingerprints ORDER BY name").fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(|r| Ok((r.try_get("name").map_err(db_err)?, r.try_get("fingerprint").map_err(db_err)?))).collect()
            }

            async fn record_key_fingerprints(&self, fingerprints: &[(String, String)], at: OffsetDateTime) -> Result<(), StoreError> {
                let mut tx = self.begin().await?;
                for (name, fp) in fingerprints {
                    sqlx::query("INSERT INTO key_fingerprints (name, fingerprint, recorded_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                        .bind(name).bind(fp).bind(us(at)).execute(&mut *tx).await.map_err(db_err)?;
                }
                tx.commit().await.map_err(db_err)
            }

            async fn replace_key_fingerprint(&self, name: &str, expected: &str, new: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
                let r = sqlx::query("UPDATE key_fingerprints SET fingerprint = $3, recorded_at = $4 WHERE name = $1 AND fingerprint = $2")
                    .bind(name).bind(expected).bind(new).bind(us(at)).execute(&self.writer).await.map_err(db_err)?;
                Ok(r.rows_affected() == 1)
            }

            async fn has_users(&self) -> Result<bool, StoreError> {
                let r = sqlx::query("SELECT EXISTS (SELECT 1 FROM users) AS found").fetch_one(&self.pool).await.map_err(db_err)?;
                r.try_get::<bool, _>("found").map_err(db_err)
            }

            async fn recovery_flows(&self, user_id: UserId, now: OffsetDateTime) -> Result<Vec<Flow>, StoreError> {
                let rows = sqlx::query("SELECT * FROM flows WHERE user_id = $1 AND kind = 'recovery' AND expires_at > $2 ORDER BY created_at")
                    .bind(user_id.0).bind(us(now)).fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(Self::flow).collect()
            }

            async fn reserve_flow_attempt(&self, id: FlowId, max: u32) -> Result<Option<u32>, StoreError> {
                self.reserve_flow_attempt_in(id, max).await
            }

            async fn reserve_attempt(&self, id: FlowId, max: u32, account: Option<AccountCounter>) -> Result<AttemptReservation, StoreError> {
                self.reserve_attempt_in(id, max, account).await
            }

            async fn reserve_attempt_and_apply(&self, id: FlowId, max: u32, account: Option<AccountCounter>, then: Batch) -> Result<ReservedStep, StoreError> {
                self.reserve_attempt_and_apply_in(id, max, account, then).await
            }

            async fn reserve_flow_send(&self, id: FlowId, max: u32) -> Result<Option<u32>, StoreError> {
                self.unit(move |tx| Box::pin(async move {
                    let r = sqlx::query("UPDATE flows SET sends = sends + 1 WHERE id = $1 AND sends < $2 RETURNING sends")
                        .bind(id.0).bind(i64::from(max)).fetch_optional(&mut **tx).await.map_err(db_err)?;
                    r.map(|r| r.try_get::<i64, _>("sends").map(n32).map_err(db_err)).transpose()
                })).await
            }

            async fn reserve_failure(&self, key: &str, kind: &str, now: OffsetDateTime, policy: &LockoutPolicy) -> Result<Reservation, StoreError> {
                self.reserve_failure_in(key.to_owned(), kind.to_owned(), now, *policy).await
            }

            async fn hit_rate_limits(&self, buckets: &[(String, u32)], window_start: OffsetDateTime) -> Result<bool, StoreError> {
                let buckets = buckets.to_vec();
                self.unit(move |tx| Box::pin(async move {
                    let mut ok = true;
                    for (key, limit) in buckets {
                        let r = sqlx::query("INSERT INTO rate_counters (key, window_start, count) VALUES ($1, $2, 1) ON CONFLICT (key, window_start) DO UPDATE SET count = rate_counters.count + 1 RETURNING count")
                            .bind(key).bind(us(window_start)).fetch_one(&mut **tx).await.map_err(db_err)?;
                        let count: i64 = r.try_get("count").map_err(db_err)?;
                        ok &= count <= i64::from(limit);
                    }
                    Ok(ok)
                })).await
            }

            async fn factors(&self, user_id: UserId) -> Result<Vec<Factor>, StoreError> {
                self.read_all(sql::FACTORS_OF_USER, &[Arg::Id(user_id.0)], Self::factor, direct::Direct::factor).await
            }

            async fn app_attest_key(&self, key_id: &str) -> Result<Option<AppAttestKey>, StoreError> {
                self.read_one(sql::APP_ATTEST_KEY, &[Arg::Text(key_id)], Self::app_attest_key_row, direct::Direct::app_attest_key_row).await
            }

            async fn passkeys(&self, user_id: UserId) -> Result<Vec<Passkey>, StoreError> {
                self.read_all(sql::PASSKEYS_OF_USER, &[Arg::Id(user_id.0)], Self::passkey, direct::Direct::passkey).await
            }

            async fn passkey_by_credential(&self, credential_id: &str) -> Result<Option<Passkey>, StoreError> {
                self.read_one(sql::PASSKEY_BY_CREDENTIAL, &[Arg::Text(credential_id)], Self::passkey, direct::Direct::passkey).await
            }

            async fn device(&self, id: DeviceId) -> Result<Option<Device>, StoreError> {
                self.read_one(sql::DEVICE_BY_ID, &[Arg::Id(id.0)], Self::device, direct::Direct::device).await
            }

            async fn remembered_client(&self, id: RememberedClientId) -> Result<Option<RememberedClient>, StoreError> {
                self.read_one(sql::REMEMBERED_BY_ID, &[Arg::Id(id.0)], Self::remembered, direct::Direct::remembered).await
            }

            async fn remembered_clients(&self, user_id: UserId, now: OffsetDateTime) -> Result<Vec<RememberedClient>, StoreError> {
                self.read_all(sql::REMEMBERED_OF_USER, &[Arg::Id(user_id.0), Arg::Int(us(now))], Self::remembered, direct::Direct::remembered).await
            }

            async fn devices(&self, user_id: UserId) -> Result<Vec<Device>, StoreError> {
                self.read_all(sql::DEVICES_OF_USER, &[Arg::Id(user_id.0)], Self::device, direct::Direct::device).await
            }

            async fn reserve_pin_attempt(&self, id: DeviceId, max: u32) -> Result<Option<u32>, StoreError> {
                let r = self.unit(move |tx| Box::pin(async move {
                    sqlx::query("UPDATE devices SET pin_failures = pin_failures + 1 WHERE id = $1 AND pin_failures < $2 AND revoked_at IS NULL RETURNING pin_failures")
                        .bind(id.0).bind(i64::from(max)).fetch_optional(&mut **tx).await.map_err(db_err)
                })).await?;
                r.map(|r| r.try_get::<i64, _>("pin_failures").map(n32).map_err(db_err)).transpose()
            }

            async fn approval(&self, id: ApprovalId) -> Result<Option<Approval>, StoreError> {
                self.read_one(sql::APPROVAL_BY_ID, &[Arg::Id(id.0)], Self::approval, direct::Direct::approval).await
            }

            async fn pending_approvals(&self, user_id: UserId, now: OffsetDateTime) -> Result<Vec<Approval>, StoreError> {
                self.read_all(sql::PENDING_APPROVALS, &[Arg::Id(user_id.0), Arg::Int(us(now))], Self::approval, direct::Direct::approval).await
            }

            async fn last_reported_approval(&self, user_id: UserId) -> Result<Option<OffsetDateTime>, StoreError> {
                let r = sqlx::query("SELECT MAX(decided_at) AS at FROM approvals WHERE user_id = $1 AND status = 'reported'")
                    .bind(user_id.0).fetch_one(&self.pool).await.map_err(db_err)?;
                opt_us(r.try_get("at").map_err(db_err)?)
            }

            async fn recovery_codes(&self, user_id: UserId) -> Result<Vec<RecoveryCode>, StoreError> {
                let rows = sqlx::query("SELECT * FROM recovery_codes WHERE user_id = $1 ORDER BY created_at, mac")
                    .bind(user_id.0).fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter()
                    .map(|r| {
                        Ok(RecoveryCode {
                            user_id: UserId(r.try_get::<Uuid, _>("user_id").map_err(db_err)?),
                            mac: r.try_get("mac").map_err(db_err)?,
                            created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                            used_at: opt_us(r.try_get("used_at").map_err(db_err)?)?,
                        })
                    })
                    .collect()
            }

            async fn claim_expired_flows(&self, before: OffsetDateTime, limit: u32) -> Result<Vec<Flow>, StoreError> {
                // One statement: a flow is claimed by exactly one replica.
                let rows = sqlx::query("UPDATE flows SET reported = TRUE WHERE id IN (SELECT id FROM flows WHERE reported = FALSE AND expires_at < $1 ORDER BY expires_at LIMIT $2) AND reported = FALSE RETURNING *")
                    .bind(us(before)).bind(i64::from(limit)).fetch_all(&self.writer).await.map_err(db_err)?;
                rows.iter().map(Self::flow).collect()
            }

            async fn session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
                self.read_one(sql::SESSION_BY_ID, &[Arg::Id(id.0)], Self::session, direct::Direct::session).await
            }

            async fn live_sessions(&self, user_id: UserId, now: OffsetDateTime) -> Result<Vec<Session>, StoreError> {
                let rows = sqlx::query(sql!("SELECT ", session_cols!(), " FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC, id DESC"))
                    .bind(user_id.0).bind(us(now)).fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(Self::session).collect()
            }

            async fn rotate_refresh(&self, old_hash: &str, new_hash: &str, now: OffsetDateTime, idle_cutoff: OffsetDateTime, proof_jkt: Option<&str>) -> Result<RotateOutcome, StoreError> {
                self.rotate_refresh_in(old_hash.to_owned(), new_hash.to_owned(), now, idle_cutoff, proof_jkt.map(str::to_owned)).await
            }

            async fn use_dpop_proof(&self, id: &str, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
                self.use_once_in(id.to_owned(), expires_at).await
            }

            async fn claim_outbox(&self, provider: &str, now: OffsetDateTime, limit: u32, lease: time::Duration) -> Result<Vec<OutboxMessage>, StoreError> {
                let rows = sqlx::query(sql!(
                    "UPDATE outbox SET status = 'sending', lease_until = $1, attempts = attempts + 1 WHERE id IN (",
                    "SELECT id FROM outbox WHERE provider = $4 AND status IN ('pending', 'sending') AND ((status = 'pending' AND next_attempt_at <= $2) OR (status = 'sending' AND lease_until <= $2)) ",
                    "ORDER BY next_attempt_at LIMIT $3", $claim_suffix, ") RETURNING ",
                    outbox_cols!()
                ))
                .bind(us(now + lease)).bind(us(now)).bind(i64::from(limit)).bind(provider)
                .fetch_all(&self.writer).await.map_err(db_err)?;
                rows.iter().map(Self::message).collect()
            }

            async fn renew_outbox(&self, ids: &[MessageId], until: OffsetDateTime) -> Result<(), StoreError> {
                for id in ids {
                    sqlx::query("UPDATE outbox SET lease_until = $2 WHERE id = $1 AND status = 'sending'")
                        .bind(id.0).bind(us(until)).execute(&self.writer).await.map_err(db_err)?;
                }
                Ok(())
            }

            async fn outbox_sent(&self, id: MessageId, now: OffsetDateTime, keep_body: bool) -> Result<(), StoreError> {
                let q = if keep_body {
                    sqlx::query(sql!("UPDATE outbox SET status = 'sent', sent_at = $2, lease_until = NULL, last_error = NULL, ", erase_delivered!(), " WHERE id = $1 RETURNING erase_on_delivery"))
                } else {
                    sqlx::query(sql!("UPDATE outbox SET status = 'sent', sent_at = $2, lease_until = NULL, last_error = NULL, body_sealed = NULL, ", erase_recipient!(), " WHERE id = $1 RETURNING erase_on_delivery"))
                };
                let row = q.bind(id.0).bind(us(now)).fetch_optional(&self.writer).await.map_err(db_err)?;
                self.scrub_if_erased(row).await
            }

            async fn outbox_failed(&self, id: MessageId, error: &str, retry_at: Option<OffsetDateTime>) -> Result<(), StoreError> {
                match retry_at {
                    Some(at) => {
                        sqlx::query("UPDATE outbox SET status = 'pending', next_attempt_at = $2, lease_until = NULL, last_error = $3 WHERE id = $1")
                            .bind(id.0).bind(us(at)).bind(error).execute(&self.writer).await.map_err(db_err)?;
                        Ok(())
                    }
                    None => {
                        let row = sqlx::query(sql!("UPDATE outbox SET status = 'dead', lease_until = NULL, last_error = $2, ", erase_delivered!(), " WHERE id = $1 RETURNING erase_on_delivery"))
                            .bind(id.0).bind(error).fetch_optional(&self.writer).await.map_err(db_err)?;
                        self.scrub_if_erased(row).await
                    }
                }
            }

            async fn outbox_backlog(&self) -> Result<Vec<OutboxBacklog>, StoreError> {
                let rows = sqlx::query("SELECT provider, status, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox WHERE status IN ('pending', 'sending', 'dead') GROUP BY provider, status ORDER BY provider, status")
                    .fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter()
                    .map(|r| {
                        Ok(OutboxBacklog {
                            provider: r.try_get("provider").map_err(db_err)?,
                            status: OutboxStatus::parse(&r.try_get::<String, _>("status").map_err(db_err)?)
                                .ok_or_else(|| corrupt("outbox status"))?,
                            count: u64::try_from(r.try_get::<i64, _>("n").map_err(db_err)?).unwrap_or(0),
                            oldest: from_us(r.try_get("oldest").map_err(db_err)?)?,
                        })
                    })
                    .collect()
            }

            async fn outbox_messages(&self, provider: Option<&str>) -> Result<Vec<OutboxMessage>, StoreError> {
                let rows = match provider {
                    Some(p) => sqlx::query(sql!("SELECT ", outbox_cols!(), " FROM outbox WHERE provider = $1 ORDER BY created_at, id"))
                        .bind(p).fetch_all(&self.pool).await,
                    None => sqlx::query(sql!("SELECT ", outbox_cols!(), " FROM outbox ORDER BY created_at, id"))
                        .fetch_all(&self.pool).await,
                }
                .map_err(db_err)?;
                rows.iter().map(Self::message).collect()
            }

            async fn audit_events(&self, user_id: Option<UserId>, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
                let rows = match user_id {
                    Some(u) => sqlx::query("SELECT * FROM audit_events WHERE user_id = $1 ORDER BY at DESC, id DESC LIMIT $2")
                        .bind(u.0).bind(i64::from(limit)).fetch_all(&self.pool).await,
                    None => sqlx::query("SELECT * FROM audit_events ORDER BY at DESC, id DESC LIMIT $1")
                        .bind(i64::from(limit)).fetch_all(&self.pool).await,
                }
                .map_err(db_err)?;
                rows.iter().map(Self::event).collect()
            }

            async fn user_events(&self, user_id: UserId, before: Option<EventId>, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
                let rows = match before {
                    Some(b) => sqlx::query("SELECT * FROM audit_events WHERE user_id = $1 AND (at, id) < (SELECT at, id FROM audit_events WHERE id = $2 AND user_id = $1) ORDER BY at DESC, id DESC LIMIT $3")
                        .bind(user_id.0).bind(b.0).bind(i64::from(limit)).fetch_all(&self.pool).await,
                    None => sqlx::query("SELECT * FROM audit_events WHERE user_id = $1 ORDER BY at DESC, id DESC LIMIT $2")
                        .bind(user_id.0).bind(i64::from(limit)).fetch_all(&self.pool).await,
                }
                .map_err(db_err)?;
                rows.iter().map(Self::event).collect()
            }

            async fn sightings(&self, user_id: UserId, limit: u32) -> Result<Vec<Sighting>, StoreError> {
                let rows = sqlx::query("SELECT * FROM sightings WHERE user_id = $1 ORDER BY last_seen_at DESC, kind, value LIMIT $2")
                    .bind(user_id.0).bind(i64::from(limit)).fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(Self::sighting).collect()
            }

            async fn risk_counts(&self, user_id: UserId, ip: Option<&str>, failures_since: OffsetDateTime, changes_since: OffsetDateTime) -> Result<RiskCounts, StoreError> {
                // Each part reads only its rows, through its partial index (migration 0015).
                let r = sqlx::query(concat!(
                    "SELECT (SELECT COUNT(*) FROM audit_events WHERE user_id = $1 AND at >= $3 AND kind = 'sign_in' AND outcome = 'failure') AS account_failures, ",
                    "(SELECT COUNT(*) FROM audit_events WHERE ip = $2 AND at >= $3 AND kind = 'sign_in' AND outcome = 'failure') AS source_failures, ",
                    "(SELECT MAX(at) FROM audit_events WHERE user_id = $1 AND at >= $4 AND kind IN ('recovery', 'this_wasnt_me') AND kind = 'recovery' AND outcome = 'completed') AS recovered, ",
                    "(SELECT MAX(at) FROM audit_events WHERE user_id = $1 AND at >= $4 AND kind IN ('recovery', 'this_wasnt_me') AND (kind = 'this_wasnt_me' OR outcome = 'cancelled')) AS reported"
                ))
                .bind(user_id.0).bind(ip).bind(us(failures_since)).bind(us(changes_since))
                .fetch_one(&self.pool).await.map_err(db_err)?;
                let n = |c: &str| r.try_get::<i64, _>(c).map(|v| u64::try_from(v).unwrap_or(0)).map_err(db_err);
                Ok(RiskCounts {
                    account_failures: n("account_failures")?,
                    source_failures: n("source_failures")?,
                    recovered_at: opt_us(r.try_get("recovered").map_err(db_err)?)?,
                    reported_at: opt_us(r.try_get("reported").map_err(db_err)?)?,
                })
            }

            async fn refresh_token(&self, hash: &str) -> Result<Option<(SessionId, bool)>, StoreError> {
                self.read_one(sql::REFRESH_TOKEN, &[Arg::Text(hash)], Self::refresh_token_row, direct::Direct::refresh_token_row).await
            }

            async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError> {
                let rows = sqlx::query("SELECT id, url, events, secret_sealed, created_at FROM webhook_endpoints ORDER BY created_at, id")
                    .fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter()
                    .map(|r| {
                        let events: String = r.try_get("events").map_err(db_err)?;
                        Ok(WebhookEndpoint {
                            id: r.try_get("id").map_err(db_err)?,
                            url: r.try_get("url").map_err(db_err)?,
                            events: serde_json::from_str(&events).map_err(|_| corrupt("webhook events"))?,
                            secret_sealed: r.try_get("secret_sealed").map_err(db_err)?,
                            created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                        })
                    })
                    .collect()
            }

            async fn admin_role(&self, user_id: UserId) -> Result<Option<String>, StoreError> {
                let r = sqlx::query("SELECT role FROM admins WHERE user_id = $1").bind(user_id.0)
                    .fetch_optional(&self.pool).await.map_err(db_err)?;
                r.map(|r| r.try_get("role").map_err(db_err)).transpose()
            }

            async fn search_users(&self, q: &UserQuery) -> Result<Vec<UserSummary>, StoreError> {
                self.admin_search_users(q).await
            }

            async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
                self.admin_query_audit(q).await
            }

            async fn outbox_page(&self, status: Option<OutboxStatus>, before: Option<MessageId>, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
                self.admin_outbox_page(status, before, limit).await
            }

            async fn requeue_outbox(&self, id: MessageId, now: OffsetDateTime) -> Result<bool, StoreError> {
                self.admin_requeue_outbox(id, now).await
            }

            async fn figures(&self, since: OffsetDateTime) -> Result<Figures, StoreError> {
                self.admin_figures(since).await
            }

            async fn scrub(&self) -> Result<(), StoreError> {
                self.scrub_files().await
            }


            async fn purge(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
                let mut tx = self.begin().await?;
                let mut n = 0;
                n += sqlx::query("DELETE FROM rate_counters WHERE window_start < $1").bind(us(before)).execute(&mut *tx).await.map_err(db_err)?.rows_affected();
                n += sqlx::query("DELETE FROM flows WHERE expires_at < $1").bind(us(before)).execute(&mut *tx).await.map_err(db_err)?.rows_affected();
                n += sqlx::query("DELETE FROM used_once WHERE expires_at < $1").bind(us(before)).execute(&mut *tx).await.map_err(db_err)?.rows_affected();
                // Forgotten counters (below their cap, quiet for `forget_after_secs`); one at its
                // cap has no expiry and stays until a reset.
                n += sqlx::query("DELETE FROM failure_counters WHERE expires_at < $1").bind(us(before)).execute(&mut *tx).await.map_err(db_err)?.rows_affected();
                n += sqlx::query("DELETE FROM retired_usernames WHERE until < $1").bind(us(before)).execute(&mut *tx).await.map_err(db_err)?.rows_affected();
                n += sqlx::query("DELETE FROM approvals WHERE expires_at < $1").bind(us(before)).execute(&mut *tx).await.map_err(db_err)?.rows_affected();
                tx.commit().await.map_err(db_err)?;
                Ok(n)
            }
        }
    };
}

/// Every table, for the test-support text dumps.
const TABLES: [&str; 20] = [
    "users",
    "flows",
    "sessions",
    "refresh_tokens",
    "failure_counters",
    "rate_counters",
    "outbox",
    "audit_events",
    "factors",
    "recovery_codes",
    "devices",
    "used_once",
    "key_fingerprints",
    "approvals",
    "remembered_clients",
    "sightings",
    "retired_usernames",
    "admins",
    "passkeys",
    "app_attest_keys",
];

store_impl!(SqliteStore, sqlx::Sqlite, sqlx::SqlitePool, sqlx::sqlite::SqliteRow, "");
store_impl!(PgStore, sqlx::Postgres, sqlx::PgPool, sqlx::postgres::PgRow, " FOR UPDATE SKIP LOCKED");
store_rows!(SqliteStore, sqlx::sqlite::SqliteRow);
store_rows!(PgStore, sqlx::postgres::PgRow);
store_writes!(SqliteStore, sqlx::Sqlite);
store_writes!(PgStore, sqlx::Postgres);
store_erase!(SqliteStore, sqlx::Sqlite);
store_erase!(PgStore, sqlx::Postgres);
store_admin!(SqliteStore, sqlx::sqlite::SqliteRow, "group_concat", "");
store_admin!(PgStore, sqlx::postgres::PgRow, "string_agg", " COLLATE \"C\"");

/// How long a request path's write transaction (a batch, a reservation, a rotation) took from
/// `BEGIN` to its durable `COMMIT` (for SQLite, one group's; the fsync is most of it): the figure
/// that shows a slow disk, or a kernel that makes the disk's flush wait (docs/benchmarks.md,
/// "What slows the commits beside a storm").
fn committed(store: &'static str, started: std::time::Instant) {
    metrics::histogram!("latchkey_store_commit_seconds", "store" => store).record(started.elapsed().as_secs_f64());
}
