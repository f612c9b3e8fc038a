//! The one implementation of `Store`, expanded for SQLite and for PostgreSQL.

use async_trait::async_trait;
use base64::Engine;
use latchkey_core::MfaMethod;
use latchkey_core::ids::{ApprovalId, DeviceId, EventId, FactorId, FlowId, MessageId, SessionId, UserId};
use latchkey_core::model::*;
use latchkey_core::store::{Batch, OutboxBacklog, RotateOutcome, Store, StoreError, Write};
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn evidence_json(e: Option<&latchkey_core::model::BiometricEvidence>) -> Result<Option<String>, StoreError> {
    e.map(|e| serde_json::to_string(e).map_err(|_| corrupt("biometric evidence"))).transpose()
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
        _ => return Err(corrupt("flow kind")),
    })
}

macro_rules! user_cols { () => { "id, username, username_canonical, email, email_verified, phone, phone_verified, status, password_hash, must_change_password, created_at, updated_at, preferred_mfa, phone_changed_at, email_changed_at" }; }
macro_rules! session_cols { () => { "id, user_id, acr, amr, auth_time, created_at, last_refresh_at, expires_at, revoked_at, revoke_reason, ip, user_agent, device_id, dpop_jkt" }; }
macro_rules! outbox_cols { () => { "id, channel, provider, recipient, subject, body_sealed, status, attempts, next_attempt_at, last_error, created_at, sent_at" }; }

macro_rules! sql {
    ($($part:expr),+ $(,)?) => {
        sqlx::AssertSqlSafe(concat!($($part),+))
    };
}

macro_rules! store_impl {
    ($name:ident, $db:ty, $pool:ty, $row:ty, $claim_suffix:literal) => {
        /// A store on this backend.
        #[derive(Clone, Debug)]
        pub struct $name {
            pool: $pool,
        }

        impl $name {
            /// Wrap a pool (migrations are run by `Database::migrate`).
            pub fn new(pool: $pool) -> Self {
                Self { pool }
            }

            /// The pool.
            pub fn pool(&self) -> &$pool {
                &self.pool
            }

            fn user(r: &$row) -> Result<User, StoreError> {
                let status: String = r.try_get("status").map_err(db_err)?;
                Ok(User {
                    id: UserId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    username: r.try_get("username").map_err(db_err)?,
                    username_canonical: r.try_get("username_canonical").map_err(db_err)?,
                    email: r.try_get("email").map_err(db_err)?,
                    email_verified: r.try_get("email_verified").map_err(db_err)?,
                    phone: r.try_get("phone").map_err(db_err)?,
                    phone_verified: r.try_get("phone_verified").map_err(db_err)?,
                    status: UserStatus::parse(&status).ok_or_else(|| corrupt("user status"))?,
                    password_hash: r.try_get("password_hash").map_err(db_err)?,
                    must_change_password: r.try_get("must_change_password").map_err(db_err)?,
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    updated_at: from_us(r.try_get("updated_at").map_err(db_err)?)?,
                    preferred_mfa: r.try_get::<Option<String>, _>("preferred_mfa").map_err(db_err)?.as_deref().map(mfa_method).transpose()?,
                    phone_changed_at: opt_us(r.try_get("phone_changed_at").map_err(db_err)?)?,
                    email_changed_at: opt_us(r.try_get("email_changed_at").map_err(db_err)?)?,
                })
            }

            fn flow(r: &$row) -> Result<Flow, StoreError> {
                let kind: String = r.try_get("kind").map_err(db_err)?;
                let state: String = r.try_get("state").map_err(db_err)?;
                Ok(Flow {
                    id: FlowId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    kind: kind_of(&kind)?,
                    user_id: r.try_get::<Option<Uuid>, _>("user_id").map_err(db_err)?.map(UserId),
                    state: serde_json::from_str(&state).map_err(|_| corrupt("flow state"))?,
                    attempts: n32(r.try_get("attempts").map_err(db_err)?),
                    sends: n32(r.try_get("sends").map_err(db_err)?),
                    version: r.try_get("version").map_err(db_err)?,
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    expires_at: from_us(r.try_get("expires_at").map_err(db_err)?)?,
                    context: ClientContext { ip: r.try_get("ip").map_err(db_err)?, user_agent: r.try_get("user_agent").map_err(db_err)? },
                })
            }

            fn session(r: &$row) -> Result<Session, StoreError> {
                let amr: String = r.try_get("amr").map_err(db_err)?;
                Ok(Session {
                    id: SessionId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    user_id: UserId(r.try_get::<Uuid, _>("user_id").map_err(db_err)?),
                    acr: r.try_get("acr").map_err(db_err)?,
                    amr: serde_json::from_str(&amr).map_err(|_| corrupt("amr"))?,
                    auth_time: from_us(r.try_get("auth_time").map_err(db_err)?)?,
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    last_refresh_at: from_us(r.try_get("last_refresh_at").map_err(db_err)?)?,
                    expires_at: from_us(r.try_get("expires_at").map_err(db_err)?)?,
                    revoked_at: opt_us(r.try_get("revoked_at").map_err(db_err)?)?,
                    revoke_reason: r.try_get("revoke_reason").map_err(db_err)?,
                    context: ClientContext { ip: r.try_get("ip").map_err(db_err)?, user_agent: r.try_get("user_agent").map_err(db_err)? },
                    device_id: r.try_get::<Option<Uuid>, _>("device_id").map_err(db_err)?.map(DeviceId),
                    dpop_jkt: r.try_get("dpop_jkt").map_err(db_err)?,
                })
            }

            fn approval(r: &$row) -> Result<Approval, StoreError> {
                let status: String = r.try_get("status").map_err(db_err)?;
                Ok(Approval {
                    id: ApprovalId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    user_id: UserId(r.try_get::<Uuid, _>("user_id").map_err(db_err)?),
                    flow_id: FlowId(r.try_get::<Uuid, _>("flow_id").map_err(db_err)?),
                    kind: r.try_get("kind").map_err(db_err)?,
                    number: r.try_get("number").map_err(db_err)?,
                    nonce: r.try_get("nonce").map_err(db_err)?,
                    status: ApprovalStatus::parse(&status).ok_or_else(|| corrupt("approval status"))?,
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    expires_at: from_us(r.try_get("expires_at").map_err(db_err)?)?,
                    decided_at: opt_us(r.try_get("decided_at").map_err(db_err)?)?,
                    device_id: r.try_get::<Option<Uuid>, _>("device_id").map_err(db_err)?.map(DeviceId),
                    context: ClientContext { ip: r.try_get("ip").map_err(db_err)?, user_agent: r.try_get("user_agent").map_err(db_err)? },
                })
            }

            fn device(r: &$row) -> Result<Device, StoreError> {
                let key = |col: &str| -> Result<Vec<u8>, StoreError> {
                    let text: String = r.try_get(col).map_err(db_err)?;
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).map_err(|_| corrupt("device key"))
                };
                Ok(Device {
                    id: DeviceId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    user_id: UserId(r.try_get::<Uuid, _>("user_id").map_err(db_err)?),
                    name: r.try_get("name").map_err(db_err)?,
                    platform: r.try_get("platform").map_err(db_err)?,
                    possession_key: key("possession_key")?,
                    biometric_key: key("biometric_key")?,
                    biometric_evidence: r.try_get::<Option<String>, _>("biometric_evidence").map_err(db_err)?
                        .map(|j| serde_json::from_str(&j).map_err(|_| corrupt("biometric evidence"))).transpose()?,
                    push: match (r.try_get::<Option<String>, _>("push_provider").map_err(db_err)?, r.try_get::<Option<String>, _>("push_token").map_err(db_err)?) {
                        (Some(provider), Some(token)) => Some(PushAddress { provider, token }),
                        _ => None,
                    },
                    pin_hash: r.try_get("pin_hash").map_err(db_err)?,
                    pin_failures: n32(r.try_get("pin_failures").map_err(db_err)?),
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    last_used_at: opt_us(r.try_get("last_used_at").map_err(db_err)?)?,
                    revoked_at: opt_us(r.try_get("revoked_at").map_err(db_err)?)?,
                })
            }

            fn factor(r: &$row) -> Result<Factor, StoreError> {
                Ok(Factor {
                    id: FactorId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    user_id: UserId(r.try_get::<Uuid, _>("user_id").map_err(db_err)?),
                    kind: r.try_get("kind").map_err(db_err)?,
                    state: r.try_get("state").map_err(db_err)?,
                    secret_sealed: r.try_get("secret_sealed").map_err(db_err)?,
                    last_step: r.try_get("last_step").map_err(db_err)?,
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    last_used_at: opt_us(r.try_get("last_used_at").map_err(db_err)?)?,
                })
            }

            fn message(r: &$row) -> Result<OutboxMessage, StoreError> {
                let status: String = r.try_get("status").map_err(db_err)?;
                Ok(OutboxMessage {
                    id: MessageId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    channel: r.try_get("channel").map_err(db_err)?,
                    provider: r.try_get("provider").map_err(db_err)?,
                    to: r.try_get("recipient").map_err(db_err)?,
                    subject: r.try_get("subject").map_err(db_err)?,
                    body_sealed: r.try_get("body_sealed").map_err(db_err)?,
                    status: OutboxStatus::parse(&status).ok_or_else(|| corrupt("outbox status"))?,
                    attempts: n32(r.try_get("attempts").map_err(db_err)?),
                    next_attempt_at: from_us(r.try_get("next_attempt_at").map_err(db_err)?)?,
                    last_error: r.try_get("last_error").map_err(db_err)?,
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    sent_at: opt_us(r.try_get("sent_at").map_err(db_err)?)?,
                })
            }

            fn event(r: &$row) -> Result<AuditEvent, StoreError> {
                let detail: String = r.try_get("detail").map_err(db_err)?;
                Ok(AuditEvent {
                    id: EventId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    at: from_us(r.try_get("at").map_err(db_err)?)?,
                    user_id: r.try_get::<Option<Uuid>, _>("user_id").map_err(db_err)?.map(UserId),
                    kind: r.try_get("kind").map_err(db_err)?,
                    outcome: r.try_get("outcome").map_err(db_err)?,
                    ip: r.try_get("ip").map_err(db_err)?,
                    user_agent: r.try_get("user_agent").map_err(db_err)?,
                    detail: serde_json::from_str(&detail).map_err(|_| corrupt("audit detail"))?,
                })
            }

            async fn write(tx: &mut sqlx::Transaction<'static, $db>, w: Write) -> Result<(), StoreError> {
                match w {
                    Write::InsertUser(u) => {
                        let r = sqlx::query(sql!("INSERT INTO users (", user_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"))
                            .bind(u.id.0).bind(&u.username).bind(&u.username_canonical).bind(&u.email).bind(u.email_verified)
                            .bind(&u.phone).bind(u.phone_verified).bind(u.status.as_str()).bind(&u.password_hash)
                            .bind(u.must_change_password).bind(us(u.created_at)).bind(us(u.updated_at))
                            .bind(u.preferred_mfa.map(|m| m.as_str())).bind(u.phone_changed_at.map(us)).bind(u.email_changed_at.map(us))
                            .execute(&mut **tx).await;
                        match r {
                            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(StoreError::Conflict("username")),
                            Err(e) => return Err(db_err(e)),
                            Ok(_) => {}
                        }
                    }
                    Write::UpdateUser(u) => {
                        sqlx::query("UPDATE users SET email = $2, email_verified = $3, phone = $4, phone_verified = $5, status = $6, password_hash = $7, must_change_password = $8, updated_at = $9, preferred_mfa = $10, phone_changed_at = $11, email_changed_at = $12 WHERE id = $1")
                            .bind(u.id.0).bind(&u.email).bind(u.email_verified).bind(&u.phone).bind(u.phone_verified)
                            .bind(u.status.as_str()).bind(&u.password_hash).bind(u.must_change_password).bind(us(u.updated_at))
                            .bind(u.preferred_mfa.map(|m| m.as_str())).bind(u.phone_changed_at.map(us)).bind(u.email_changed_at.map(us))
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::InsertFlow(f) => {
                        let state = serde_json::to_string(&f.state).map_err(|_| corrupt("flow state"))?;
                        sqlx::query("INSERT INTO flows (id, kind, user_id, state, attempts, sends, version, created_at, expires_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
                            .bind(f.id.0).bind(f.kind.as_str()).bind(f.user_id.map(|u| u.0)).bind(state)
                            .bind(i64::from(f.attempts)).bind(i64::from(f.sends)).bind(f.version)
                            .bind(us(f.created_at)).bind(us(f.expires_at)).bind(&f.context.ip).bind(&f.context.user_agent)
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::UpdateFlow { flow: f, expected_version } => {
                        let state = serde_json::to_string(&f.state).map_err(|_| corrupt("flow state"))?;
                        // `attempts` as the transition says: the wrong answers before it (the right
                        // answer that made it reserved one more, which it gives back).
                        let done = sqlx::query("UPDATE flows SET state = $2, version = $3, expires_at = $4, attempts = $6 WHERE id = $1 AND version = $5")
                            .bind(f.id.0).bind(state).bind(f.version).bind(us(f.expires_at)).bind(expected_version).bind(i64::from(f.attempts))
                            .execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("flow"));
                        }
                    }
                    Write::InsertSession(s) => {
                        let amr = serde_json::to_string(&s.amr).map_err(|_| corrupt("amr"))?;
                        sqlx::query(sql!("INSERT INTO sessions (", session_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"))
                            .bind(s.id.0).bind(s.user_id.0).bind(&s.acr).bind(amr).bind(us(s.auth_time)).bind(us(s.created_at))
                            .bind(us(s.last_refresh_at)).bind(us(s.expires_at)).bind(s.revoked_at.map(us)).bind(&s.revoke_reason)
                            .bind(&s.context.ip).bind(&s.context.user_agent).bind(s.device_id.map(|d| d.0)).bind(&s.dpop_jkt)
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::InsertRefreshToken { hash, session_id, created_at } => {
                        sqlx::query("INSERT INTO refresh_tokens (hash, session_id, created_at) VALUES ($1, $2, $3)")
                            .bind(hash).bind(session_id.0).bind(us(created_at))
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::RevokeSession { id, at, reason } => {
                        sqlx::query("UPDATE sessions SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 AND revoked_at IS NULL")
                            .bind(id.0).bind(us(at)).bind(reason)
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::RevokeUserSessions { user_id, at, reason } => {
                        sqlx::query("UPDATE sessions SET revoked_at = $2, revoke_reason = $3 WHERE user_id = $1 AND revoked_at IS NULL")
                            .bind(user_id.0).bind(us(at)).bind(reason)
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::ClearFailures { key, kind } => {
                        // Reset rather than delete: a parallel `reserve_failure` blocked on this
                        // row re-reads it and counts from zero, where a deleted row made it find
                        // nothing at all (a 503 under PostgreSQL's read committed).
                        sqlx::query("UPDATE failure_counters SET failures = 0, locked_until = NULL WHERE key = $1 AND kind = $2")
                            .bind(key).bind(kind)
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::InsertFactor(f) => {
                        // An active factor of this kind added by a parallel request is the same
                        // factor: keep it (one active per kind and user).
                        sqlx::query("INSERT INTO factors (id, user_id, kind, state, secret_sealed, last_step, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (user_id, kind) WHERE state = 'active' DO NOTHING")
                            .bind(f.id.0).bind(f.user_id.0).bind(&f.kind).bind(&f.state).bind(&f.secret_sealed)
                            .bind(f.last_step).bind(us(f.created_at)).bind(f.last_used_at.map(us))
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::ActivateFactor { id } => {
                        let r = sqlx::query("UPDATE factors SET state = 'active' WHERE id = $1 AND state <> 'active'")
                            .bind(id.0).execute(&mut **tx).await;
                        match r {
                            // Another factor of its kind became active first, or this one was
                            // replaced or already activated.
                            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(StoreError::Conflict("factor")),
                            Err(e) => return Err(db_err(e)),
                            Ok(done) if done.rows_affected() != 1 => return Err(StoreError::Conflict("factor")),
                            Ok(_) => {}
                        }
                    }
                    Write::DeleteFactor { id } => {
                        sqlx::query("DELETE FROM recovery_codes WHERE user_id IN (SELECT user_id FROM factors WHERE id = $1 AND kind = 'recovery_codes')")
                            .bind(id.0).execute(&mut **tx).await.map_err(db_err)?;
                        sqlx::query("DELETE FROM factors WHERE id = $1").bind(id.0).execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::ReplaceRecoveryCodes { user_id, macs, at } => {
                        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user_id.0).execute(&mut **tx).await.map_err(db_err)?;
                        for mac in macs {
                            sqlx::query("INSERT INTO recovery_codes (user_id, mac, created_at) VALUES ($1, $2, $3)")
                                .bind(user_id.0).bind(mac).bind(us(at)).execute(&mut **tx).await.map_err(db_err)?;
                        }
                    }
                    Write::UseRecoveryCode { user_id, mac, at } => {
                        // Checklist REC-3: the conditional update is the single-use guarantee.
                        let done = sqlx::query("UPDATE recovery_codes SET used_at = $3 WHERE user_id = $1 AND mac = $2 AND used_at IS NULL")
                            .bind(user_id.0).bind(mac).bind(us(at)).execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("recovery_code"));
                        }
                    }
                    Write::SetPushAddress { id, push } => {
                        let done = sqlx::query("UPDATE devices SET push_provider = $2, push_token = $3 WHERE id = $1 AND revoked_at IS NULL")
                            .bind(id.0).bind(push.as_ref().map(|p| p.provider.clone())).bind(push.as_ref().map(|p| p.token.clone()))
                            .execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("device"));
                        }
                    }
                    Write::InsertApproval(a) => {
                        sqlx::query("UPDATE approvals SET status = 'expired' WHERE user_id = $1 AND status = 'pending' AND expires_at <= $2")
                            .bind(a.user_id.0).bind(us(a.created_at)).execute(&mut **tx).await.map_err(db_err)?;
                        let r = sqlx::query("INSERT INTO approvals (id, user_id, flow_id, kind, number, nonce, status, created_at, expires_at, decided_at, device_id, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)")
                            .bind(a.id.0).bind(a.user_id.0).bind(a.flow_id.0).bind(&a.kind).bind(&a.number).bind(&a.nonce)
                            .bind(a.status.as_str()).bind(us(a.created_at)).bind(us(a.expires_at)).bind(a.decided_at.map(us))
                            .bind(a.device_id.map(|d| d.0)).bind(&a.context.ip).bind(&a.context.user_agent)
                            .execute(&mut **tx).await;
                        match r {
                            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(StoreError::Conflict("approval_pending")),
                            Err(e) => return Err(db_err(e)),
                            Ok(_) => {}
                        }
                    }
                    Write::WithdrawApproval { id, at } => {
                        sqlx::query("UPDATE approvals SET status = 'withdrawn', decided_at = $2 WHERE id = $1 AND status = 'pending'")
                            .bind(id.0).bind(us(at)).execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::DecideApproval { id, status, device_id, at } => {
                        let done = sqlx::query("UPDATE approvals SET status = $2, device_id = $3, decided_at = $4 WHERE id = $1 AND status = 'pending' AND expires_at > $4")
                            .bind(id.0).bind(status.as_str()).bind(device_id.0).bind(us(at))
                            .execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("approval"));
                        }
                    }
                    Write::InsertDevice(d) => {
                        let b64 = |k: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k);
                        sqlx::query("INSERT INTO devices (id, user_id, name, platform, possession_key, biometric_key, pin_hash, pin_failures, created_at, last_used_at, revoked_at, biometric_evidence, push_provider, push_token) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)")
                            .bind(d.id.0).bind(d.user_id.0).bind(&d.name).bind(&d.platform).bind(b64(&d.possession_key))
                            .bind(b64(&d.biometric_key)).bind(&d.pin_hash).bind(i64::from(d.pin_failures)).bind(us(d.created_at))
                            .bind(d.last_used_at.map(us)).bind(d.revoked_at.map(us)).bind(evidence_json(d.biometric_evidence.as_ref())?)
                            .bind(d.push.as_ref().map(|p| p.provider.clone())).bind(d.push.as_ref().map(|p| p.token.clone()))
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::RevokeDevice { id, at } => {
                        sqlx::query("UPDATE devices SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                            .bind(id.0).bind(us(at)).execute(&mut **tx).await.map_err(db_err)?;
                        sqlx::query("UPDATE sessions SET revoked_at = $2, revoke_reason = 'device_revoked' WHERE device_id = $1 AND revoked_at IS NULL")
                            .bind(id.0).bind(us(at)).execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::UpdateDevice { id, biometric_key, pin_hash } => {
                        let mut done = 0;
                        if let Some((key, evidence)) = biometric_key {
                            done += sqlx::query("UPDATE devices SET biometric_key = $2, biometric_evidence = $3 WHERE id = $1 AND revoked_at IS NULL")
                                .bind(id.0).bind(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key))
                                .bind(evidence_json(evidence.as_ref())?)
                                .execute(&mut **tx).await.map_err(db_err)?.rows_affected();
                        }
                        if let Some(hash) = pin_hash {
                            done += sqlx::query("UPDATE devices SET pin_hash = $2, pin_failures = 0 WHERE id = $1 AND revoked_at IS NULL")
                                .bind(id.0).bind(hash).execute(&mut **tx).await.map_err(db_err)?.rows_affected();
                        }
                        if done == 0 {
                            return Err(StoreError::Conflict("device"));
                        }
                    }
                    Write::DeviceUsed { id, at, reset_pin } => {
                        // A revoked device stays revoked, even against a sign-in racing the revocation.
                        let done = sqlx::query("UPDATE devices SET last_used_at = $2, pin_failures = CASE WHEN $3 THEN 0 ELSE pin_failures END WHERE id = $1 AND revoked_at IS NULL")
                            .bind(id.0).bind(us(at)).bind(reset_pin).execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("device"));
                        }
                    }
                    Write::TouchFactor { id, at } => {
                        sqlx::query("UPDATE factors SET last_used_at = $2 WHERE id = $1").bind(id.0).bind(us(at)).execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::ConsumeTotpStep { id, step, at } => {
                        // RFC 6238 §5.2: a step is accepted once, and only after the last one.
                        let done = sqlx::query("UPDATE factors SET last_step = $2, last_used_at = $3 WHERE id = $1 AND (last_step IS NULL OR last_step < $2)")
                            .bind(id.0).bind(step).bind(us(at)).execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("totp_step"));
                        }
                    }
                    Write::UseOnce { id, expires_at } => {
                        let r = sqlx::query("INSERT INTO used_once (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
                            .bind(&id).bind(us(expires_at)).execute(&mut **tx).await.map_err(db_err)?;
                        if r.rows_affected() != 1 {
                            return Err(StoreError::Conflict("used_once"));
                        }
                    }
                    Write::Enqueue(m) => {
                        sqlx::query(sql!("INSERT INTO outbox (", outbox_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"))
                            .bind(m.id.0).bind(&m.channel).bind(&m.provider).bind(&m.to).bind(&m.subject).bind(&m.body_sealed)
                            .bind(m.status.as_str()).bind(i64::from(m.attempts)).bind(us(m.next_attempt_at)).bind(&m.last_error)
                            .bind(us(m.created_at)).bind(m.sent_at.map(us))
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::Audit(e) => {
                        sqlx::query("INSERT INTO audit_events (id, at, user_id, kind, outcome, ip, user_agent, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                            .bind(e.id.0).bind(us(e.at)).bind(e.user_id.map(|u| u.0)).bind(&e.kind).bind(&e.outcome)
                            .bind(&e.ip).bind(&e.user_agent).bind(e.detail.to_string())
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                }
                Ok(())
            }
        }

        #[async_trait]
        impl Store for $name {
            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err)?;
                Ok(())
            }

            async fn apply(&self, batch: Batch) -> Result<(), StoreError> {
                let mut tx = self.begin().await?;
                for w in batch.0 {
                    // Dropping `tx` on error rolls the whole batch back.
                    Self::write(&mut tx, w).await?;
                }
                tx.commit().await.map_err(db_err)
            }

            async fn user_by_username(&self, canonical: &str) -> Result<Option<User>, StoreError> {
                let r = sqlx::query(sql!("SELECT ", user_cols!(), " FROM users WHERE username_canonical = $1"))
                    .bind(canonical).fetch_optional(&self.pool).await.map_err(db_err)?;
                r.as_ref().map(Self::user).transpose()
            }

            async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
                let r = sqlx::query(sql!("SELECT ", user_cols!(), " FROM users WHERE id = $1"))
                    .bind(id.0).fetch_optional(&self.pool).await.map_err(db_err)?;
                r.as_ref().map(Self::user).transpose()
            }

            async fn flow(&self, id: FlowId) -> Result<Option<Flow>, StoreError> {
                let r = sqlx::query("SELECT * FROM flows WHERE id = $1").bind(id.0).fetch_optional(&self.pool).await.map_err(db_err)?;
                r.as_ref().map(Self::flow).transpose()
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
                    .bind(name).bind(expected).bind(new).bind(us(at)).execute(&self.pool).await.map_err(db_err)?;
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
                let r = sqlx::query("UPDATE flows SET attempts = attempts + 1 WHERE id = $1 AND attempts < $2 RETURNING attempts")
                    .bind(id.0).bind(i64::from(max)).fetch_optional(&self.pool).await.map_err(db_err)?;
                r.map(|r| r.try_get::<i64, _>("attempts").map(n32).map_err(db_err)).transpose()
            }

            async fn reserve_flow_send(&self, id: FlowId, max: u32) -> Result<Option<u32>, StoreError> {
                let r = sqlx::query("UPDATE flows SET sends = sends + 1 WHERE id = $1 AND sends < $2 RETURNING sends")
                    .bind(id.0).bind(i64::from(max)).fetch_optional(&self.pool).await.map_err(db_err)?;
                r.map(|r| r.try_get::<i64, _>("sends").map(n32).map_err(db_err)).transpose()
            }

            async fn reserve_failure(&self, key: &str, kind: &str, now: OffsetDateTime, policy: &LockoutPolicy) -> Result<Reservation, StoreError> {
                // Twice at most: the purge may delete a forgotten row between the insert and the
                // update; the second round starts from a fresh row.
                for _ in 0..2 {
                    let mut tx = self.begin().await?;
                    sqlx::query("INSERT INTO failure_counters (key, kind, failures) VALUES ($1, $2, 0) ON CONFLICT (key, kind) DO NOTHING")
                        .bind(key).bind(kind).execute(&mut *tx).await.map_err(db_err)?;
                    let counted = sqlx::query("UPDATE failure_counters SET failures = failures + 1 WHERE key = $1 AND kind = $2 AND failures < $3 AND (locked_until IS NULL OR locked_until <= $4) RETURNING failures")
                        .bind(key).bind(kind).bind(i64::from(policy.hard_cap)).bind(us(now))
                        .fetch_optional(&mut *tx).await.map_err(db_err)?;
                    let out = match counted {
                        Some(r) => {
                            let failures = n32(r.try_get("failures").map_err(db_err)?);
                            // The delay is set when the attempt is reserved, so a parallel burst
                            // cannot slip more evaluations in before the first result is known.
                            let until = policy.delay_after(failures).map(|d| us(now + d));
                            let forget = policy.forget_at(failures, now).map(us);
                            sqlx::query("UPDATE failure_counters SET locked_until = $3, expires_at = $4 WHERE key = $1 AND kind = $2")
                                .bind(key).bind(kind).bind(until).bind(forget).execute(&mut *tx).await.map_err(db_err)?;
                            Reservation::Allowed(failures)
                        }
                        None => {
                            let r = sqlx::query("SELECT failures, locked_until FROM failure_counters WHERE key = $1 AND kind = $2")
                                .bind(key).bind(kind).fetch_optional(&mut *tx).await.map_err(db_err)?;
                            let Some(r) = r else { continue };
                            let failures = n32(r.try_get("failures").map_err(db_err)?);
                            let until = opt_us(r.try_get("locked_until").map_err(db_err)?)?;
                            Reservation::Locked(if failures >= policy.hard_cap { None } else { until })
                        }
                    };
                    tx.commit().await.map_err(db_err)?;
                    return Ok(out);
                }
                Err(StoreError::Unavailable("failure counter vanished twice".into()))
            }

            async fn hit_rate_limits(&self, buckets: &[(String, u32)], window_start: OffsetDateTime) -> Result<bool, StoreError> {
                let mut tx = self.begin().await?;
                let mut ok = true;
                for (key, limit) in buckets {
                    let r = sqlx::query("INSERT INTO rate_counters (key, window_start, count) VALUES ($1, $2, 1) ON CONFLICT (key, window_start) DO UPDATE SET count = rate_counters.count + 1 RETURNING count")
                        .bind(key).bind(us(window_start)).fetch_one(&mut *tx).await.map_err(db_err)?;
                    let count: i64 = r.try_get("count").map_err(db_err)?;
                    ok &= count <= i64::from(*limit);
                }
                tx.commit().await.map_err(db_err)?;
                Ok(ok)
            }

            async fn factors(&self, user_id: UserId) -> Result<Vec<Factor>, StoreError> {
                let rows = sqlx::query("SELECT * FROM factors WHERE user_id = $1 ORDER BY created_at, id")
                    .bind(user_id.0).fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(Self::factor).collect()
            }

            async fn device(&self, id: DeviceId) -> Result<Option<Device>, StoreError> {
                let r = sqlx::query("SELECT * FROM devices WHERE id = $1").bind(id.0).fetch_optional(&self.pool).await.map_err(db_err)?;
                r.as_ref().map(Self::device).transpose()
            }

            async fn devices(&self, user_id: UserId) -> Result<Vec<Device>, StoreError> {
                let rows = sqlx::query("SELECT * FROM devices WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at, id")
                    .bind(user_id.0).fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(Self::device).collect()
            }

            async fn reserve_pin_attempt(&self, id: DeviceId, max: u32) -> Result<Option<u32>, StoreError> {
                let r = sqlx::query("UPDATE devices SET pin_failures = pin_failures + 1 WHERE id = $1 AND pin_failures < $2 AND revoked_at IS NULL RETURNING pin_failures")
                    .bind(id.0).bind(i64::from(max)).fetch_optional(&self.pool).await.map_err(db_err)?;
                r.map(|r| r.try_get::<i64, _>("pin_failures").map(n32).map_err(db_err)).transpose()
            }

            async fn approval(&self, id: ApprovalId) -> Result<Option<Approval>, StoreError> {
                let r = sqlx::query("SELECT * FROM approvals WHERE id = $1").bind(id.0).fetch_optional(&self.pool).await.map_err(db_err)?;
                r.as_ref().map(Self::approval).transpose()
            }

            async fn pending_approvals(&self, user_id: UserId, now: OffsetDateTime) -> Result<Vec<Approval>, StoreError> {
                let rows = sqlx::query("SELECT * FROM approvals WHERE user_id = $1 AND status = 'pending' AND expires_at > $2 ORDER BY created_at")
                    .bind(user_id.0).bind(us(now)).fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(Self::approval).collect()
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
                    .bind(us(before)).bind(i64::from(limit)).fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(Self::flow).collect()
            }

            async fn session(&self, id: SessionId) -> Result<Option<Session>, StoreError> {
                let r = sqlx::query(sql!("SELECT ", session_cols!(), " FROM sessions WHERE id = $1"))
                    .bind(id.0).fetch_optional(&self.pool).await.map_err(db_err)?;
                r.as_ref().map(Self::session).transpose()
            }

            async fn live_sessions(&self, user_id: UserId, now: OffsetDateTime) -> Result<Vec<Session>, StoreError> {
                let rows = sqlx::query(sql!("SELECT ", session_cols!(), " FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC, id DESC"))
                    .bind(user_id.0).bind(us(now)).fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(Self::session).collect()
            }

            async fn rotate_refresh(&self, old_hash: &str, new_hash: &str, now: OffsetDateTime, idle_cutoff: OffsetDateTime, proof_jkt: Option<&str>) -> Result<RotateOutcome, StoreError> {
                let mut tx = self.begin().await?;
                let spent = sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE hash = $1 AND used_at IS NULL RETURNING session_id")
                    .bind(old_hash).bind(us(now)).fetch_optional(&mut *tx).await.map_err(db_err)?;
                let outcome = match spent {
                    Some(r) => {
                        let sid: Uuid = r.try_get("session_id").map_err(db_err)?;
                        let row = sqlx::query(sql!("SELECT ", session_cols!(), " FROM sessions WHERE id = $1"))
                            .bind(sid).fetch_one(&mut *tx).await.map_err(db_err)?;
                        let mut session = Self::session(&row)?;
                        if session.dpop_jkt.is_some() && session.dpop_jkt.as_deref() != proof_jkt {
                            // Not spent: the rollback leaves the token to its device (RFC 9449 §5).
                            tx.rollback().await.map_err(db_err)?;
                            return Ok(RotateOutcome::ProofMismatch);
                        }
                        if session.revoked_at.is_some() || session.expires_at <= now || session.last_refresh_at < idle_cutoff {
                            RotateOutcome::Invalid
                        } else {
                            sqlx::query("INSERT INTO refresh_tokens (hash, session_id, created_at) VALUES ($1, $2, $3)")
                                .bind(new_hash).bind(sid).bind(us(now)).execute(&mut *tx).await.map_err(db_err)?;
                            sqlx::query("UPDATE sessions SET last_refresh_at = $2 WHERE id = $1")
                                .bind(sid).bind(us(now)).execute(&mut *tx).await.map_err(db_err)?;
                            session.last_refresh_at = now;
                            RotateOutcome::Rotated(Box::new(session))
                        }
                    }
                    None => {
                        let known = sqlx::query("SELECT r.session_id, s.dpop_jkt FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.hash = $1")
                            .bind(old_hash).fetch_optional(&mut *tx).await.map_err(db_err)?;
                        match known {
                            Some(r) => {
                                let sid: Uuid = r.try_get("session_id").map_err(db_err)?;
                                let bound: Option<String> = r.try_get("dpop_jkt").map_err(db_err)?;
                                if bound.is_some() && bound.as_deref() != proof_jkt {
                                    // Someone without the device key holds a spent token: they can
                                    // do nothing with it, and must not be able to end the session.
                                    RotateOutcome::ProofMismatch
                                } else {
                                    // RFC 9700 §4.14.2: a spent token presented again revokes its family.
                                    sqlx::query("UPDATE sessions SET revoked_at = $2, revoke_reason = 'refresh_reuse' WHERE id = $1 AND revoked_at IS NULL")
                                        .bind(sid).bind(us(now)).execute(&mut *tx).await.map_err(db_err)?;
                                    RotateOutcome::Reused(SessionId(sid))
                                }
                            }
                            None => RotateOutcome::Invalid,
                        }
                    }
                };
                tx.commit().await.map_err(db_err)?;
                Ok(outcome)
            }

            async fn use_dpop_proof(&self, id: &str, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
                let r = sqlx::query("INSERT INTO used_once (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
                    .bind(id).bind(us(expires_at)).execute(&self.pool).await.map_err(db_err)?;
                Ok(r.rows_affected() == 1)
            }

            async fn claim_outbox(&self, provider: &str, now: OffsetDateTime, limit: u32, lease: time::Duration) -> Result<Vec<OutboxMessage>, StoreError> {
                let rows = sqlx::query(sql!(
                    "UPDATE outbox SET status = 'sending', lease_until = $1, attempts = attempts + 1 WHERE id IN (",
                    "SELECT id FROM outbox WHERE provider = $4 AND ((status = 'pending' AND next_attempt_at <= $2) OR (status = 'sending' AND lease_until <= $2)) ",
                    "ORDER BY next_attempt_at LIMIT $3", $claim_suffix, ") RETURNING ",
                    outbox_cols!()
                ))
                .bind(us(now + lease)).bind(us(now)).bind(i64::from(limit)).bind(provider)
                .fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(Self::message).collect()
            }

            async fn renew_outbox(&self, ids: &[MessageId], until: OffsetDateTime) -> Result<(), StoreError> {
                for id in ids {
                    sqlx::query("UPDATE outbox SET lease_until = $2 WHERE id = $1 AND status = 'sending'")
                        .bind(id.0).bind(us(until)).execute(&self.pool).await.map_err(db_err)?;
                }
                Ok(())
            }

            async fn outbox_sent(&self, id: MessageId, now: OffsetDateTime, keep_body: bool) -> Result<(), StoreError> {
                let q = if keep_body {
                    sqlx::query("UPDATE outbox SET status = 'sent', sent_at = $2, lease_until = NULL, last_error = NULL WHERE id = $1")
                } else {
                    sqlx::query("UPDATE outbox SET status = 'sent', sent_at = $2, lease_until = NULL, last_error = NULL, body_sealed = NULL WHERE id = $1")
                };
                q.bind(id.0).bind(us(now)).execute(&self.pool).await.map_err(db_err)?;
                Ok(())
            }

            async fn outbox_failed(&self, id: MessageId, error: &str, retry_at: Option<OffsetDateTime>) -> Result<(), StoreError> {
                match retry_at {
                    Some(at) => sqlx::query("UPDATE outbox SET status = 'pending', next_attempt_at = $2, lease_until = NULL, last_error = $3 WHERE id = $1")
                        .bind(id.0).bind(us(at)).bind(error).execute(&self.pool).await,
                    None => sqlx::query("UPDATE outbox SET status = 'dead', lease_until = NULL, last_error = $2 WHERE id = $1")
                        .bind(id.0).bind(error).execute(&self.pool).await,
                }
                .map_err(db_err)?;
                Ok(())
            }

            async fn outbox_backlog(&self) -> Result<Vec<OutboxBacklog>, StoreError> {
                let rows = sqlx::query("SELECT provider, status, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox WHERE status <> 'sent' GROUP BY provider, status ORDER BY provider, status")
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

            async fn purge(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
                let mut tx = self.begin().await?;
                let mut n = 0;
                n += sqlx::query("DELETE FROM rate_counters WHERE window_start < $1").bind(us(before)).execute(&mut *tx).await.map_err(db_err)?.rows_affected();
                n += sqlx::query("DELETE FROM flows WHERE expires_at < $1").bind(us(before)).execute(&mut *tx).await.map_err(db_err)?.rows_affected();
                n += sqlx::query("DELETE FROM used_once WHERE expires_at < $1").bind(us(before)).execute(&mut *tx).await.map_err(db_err)?.rows_affected();
                // Forgotten counters (below their cap, quiet for `forget_after_secs`); one at its
                // cap has no expiry and stays until a reset.
                n += sqlx::query("DELETE FROM failure_counters WHERE expires_at < $1").bind(us(before)).execute(&mut *tx).await.map_err(db_err)?.rows_affected();
                n += sqlx::query("DELETE FROM approvals WHERE expires_at < $1").bind(us(before)).execute(&mut *tx).await.map_err(db_err)?.rows_affected();
                tx.commit().await.map_err(db_err)?;
                Ok(n)
            }
        }
    };
}

/// Every table, for the test-support text dumps.
const TABLES: [&str; 14] = [
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
];

store_impl!(SqliteStore, sqlx::Sqlite, sqlx::SqlitePool, sqlx::sqlite::SqliteRow, "");
store_impl!(PgStore, sqlx::Postgres, sqlx::PgPool, sqlx::postgres::PgRow, " FOR UPDATE SKIP LOCKED");

impl SqliteStore {
    /// SQLite takes the write lock at `BEGIN`, so two writers never deadlock upgrading a read lock.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)
    }

    pub(crate) async fn dump_text(&self) -> Result<String, StoreError> {
        let mut out = String::new();
        for t in TABLES {
            let q = format!("SELECT * FROM {t}");
            let rows = sqlx::query(sqlx::AssertSqlSafe(q)).fetch_all(&self.pool).await.map_err(db_err)?;
            for r in rows {
                for i in 0..r.len() {
                    if let Ok(Some(s)) = r.try_get::<Option<String>, _>(i) {
                        out.push_str(&s);
                        out.push('\n');
                    }
                }
            }
        }
        Ok(out)
    }
}

impl PgStore {
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool.begin().await.map_err(db_err)
    }

    pub(crate) async fn dump_text(&self) -> Result<String, StoreError> {
        let mut out = String::new();
        for t in TABLES {
            let q = format!("SELECT CAST(t.* AS TEXT) AS row FROM {t} t");
            let rows = sqlx::query(sqlx::AssertSqlSafe(q)).fetch_all(&self.pool).await.map_err(db_err)?;
            for r in rows {
                let s: String = r.try_get("row").map_err(db_err)?;
                out.push_str(&s);
                out.push('\n');
            }
        }
        Ok(out)
    }
}
