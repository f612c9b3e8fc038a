//! What only PostgreSQL's store does: a reservation's rows locked in two transactions, and a
//! transaction per write.

use super::group::Work;
use super::{PgStore, TABLES, committed, db_err, n32, opt_us, sql, us};
use latchkey_core::ids::{FlowId, SessionId};
use latchkey_core::model::{AccountCounter, AttemptReservation, LockoutPolicy, Reservation};
use latchkey_core::store::{Batch, ReservedStep, RotateOutcome, Store, StoreError};
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

impl PgStore {
    /// Wrap a pool (migrations are run by `Database::migrate`).
    pub fn new(pool: sqlx::PgPool) -> Self {
        Self { writer: pool.clone(), pool, group: None, readers: None }
    }

    /// Concurrent transactions, each with its own row locks: a reservation's two rows are locked
    /// in two transactions (`reserve_attempt_in`). `true` puts them back in one, to see the
    /// deadlock the conformance race `a_completing_step_racing_its_flows_reservations_never_errors`
    /// catches.
    const ONE_WRITER: bool = false;

    pub(super) async fn apply_batch(&self, batch: Batch) -> Result<(), StoreError> {
        self.apply_sqlx(batch).await
    }

    /// One more attempt on a flow, if it has had fewer than `max`.
    pub(super) async fn flow_attempt_in(
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        id: FlowId,
        max: u32,
    ) -> Result<Option<u32>, StoreError> {
        let r = sqlx::query(sql::FLOW_ATTEMPT)
            .bind(id.0)
            .bind(i64::from(max))
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
        r.map(|r| r.try_get::<i64, _>("attempts").map(n32).map_err(db_err)).transpose()
    }

    /// One more attempt against a failure counter (`Store::reserve_failure`).
    pub(super) async fn failure_in(
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        key: &str,
        kind: &str,
        now: OffsetDateTime,
        policy: &LockoutPolicy,
    ) -> Result<Reservation, StoreError> {
        // Twice at most: on PostgreSQL the purge may delete a forgotten row between the
        // insert and the update; the second round starts from a fresh row.
        for _ in 0..2 {
            sqlx::query(sql::FAILURE_ROW).bind(key).bind(kind).execute(&mut **tx).await.map_err(db_err)?;
            let counted = sqlx::query(sql::FAILURE_COUNT)
                .bind(key)
                .bind(kind)
                .bind(i64::from(policy.hard_cap))
                .bind(us(now))
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_err)?;
            if let Some(r) = counted {
                let failures = n32(r.try_get("failures").map_err(db_err)?);
                // The delay is set when the attempt is reserved, so a parallel burst
                // cannot slip more evaluations in before the first result is known.
                let until = policy.delay_after(failures).map(|d| us(now + d));
                let forget = policy.forget_at(failures, now).map(us);
                sqlx::query(sql::FAILURE_DELAY)
                    .bind(key)
                    .bind(kind)
                    .bind(until)
                    .bind(forget)
                    .execute(&mut **tx)
                    .await
                    .map_err(db_err)?;
                return Ok(Reservation::Allowed(failures));
            }
            let r =
                sqlx::query(sql::FAILURE_READ).bind(key).bind(kind).fetch_optional(&mut **tx).await.map_err(db_err)?;
            let Some(r) = r else { continue };
            let failures = n32(r.try_get("failures").map_err(db_err)?);
            let until = opt_us(r.try_get("locked_until").map_err(db_err)?)?;
            return Ok(Reservation::Locked(if failures >= policy.hard_cap { None } else { until }));
        }
        Err(StoreError::Unavailable("failure counter vanished twice".into()))
    }

    pub(super) async fn reserve_attempt_in(
        &self,
        id: FlowId,
        max: u32,
        account: Option<AccountCounter>,
    ) -> Result<AttemptReservation, StoreError> {
        if !Self::ONE_WRITER {
            // Two transactions, each holding one row lock: in one, this would lock the flow and
            // then the account's counter while a completing step (its batch clears the counter,
            // then moves the flow) takes them in the other order — a deadlock PostgreSQL breaks
            // by failing one of them.
            let attempts = self.unit(move |tx| Box::pin(Self::flow_attempt_in(tx, id, max))).await?;
            let account = match (attempts, account) {
                (Some(_), Some(c)) => Some(self.reserve_failure(&c.key, &c.kind, c.now, &c.policy).await?),
                _ => None,
            };
            return Ok(AttemptReservation { attempts, account });
        }
        self.unit(move |tx| {
            Box::pin(async move {
                let attempts = Self::flow_attempt_in(tx, id, max).await?;
                let account = match (attempts, account) {
                    (Some(_), Some(c)) => Some(Self::failure_in(tx, &c.key, &c.kind, c.now, &c.policy).await?),
                    _ => None,
                };
                Ok(AttemptReservation { attempts, account })
            })
        })
        .await
    }

    /// Two transactions, as `reserve_attempt_in` makes them: in one, the reservation's row locks
    /// (the flow's, then the account counter's) would be held while the step's writes take the
    /// factor's and others, in an order other transactions do not keep.
    pub(super) async fn reserve_attempt_and_apply_in(
        &self,
        id: FlowId,
        max: u32,
        account: Option<AccountCounter>,
        then: Batch,
    ) -> Result<ReservedStep, StoreError> {
        super::reserve_then_apply(self, id, max, account, then).await
    }

    pub(super) async fn reserve_flow_attempt_in(&self, id: FlowId, max: u32) -> Result<Option<u32>, StoreError> {
        self.unit(move |tx| Box::pin(Self::flow_attempt_in(tx, id, max))).await
    }

    pub(super) async fn reserve_failure_in(
        &self,
        key: String,
        kind: String,
        now: OffsetDateTime,
        policy: LockoutPolicy,
    ) -> Result<Reservation, StoreError> {
        self.unit(move |tx| Box::pin(async move { Self::failure_in(tx, &key, &kind, now, &policy).await })).await
    }

    /// `Store::rotate_refresh` through sqlx, in one write transaction.
    pub(super) async fn rotate_refresh_in(
        &self,
        old_hash: String,
        new_hash: String,
        now: OffsetDateTime,
        idle_cutoff: OffsetDateTime,
        proof_jkt: Option<String>,
    ) -> Result<RotateOutcome, StoreError> {
        self.unit(move |tx| {
            Box::pin(async move {
                let proof_jkt = proof_jkt.as_deref();
                let spent = sqlx::query(sql::SPEND_REFRESH)
                    .bind(&old_hash)
                    .bind(us(now))
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db_err)?;
                let Some(r) = spent else {
                    let known = sqlx::query(sql::REFRESH_KNOWN)
                        .bind(&old_hash)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(db_err)?;
                    let Some(r) = known else { return Ok(RotateOutcome::Invalid) };
                    let sid: Uuid = r.try_get("session_id").map_err(db_err)?;
                    let bound: Option<String> = r.try_get("dpop_jkt").map_err(db_err)?;
                    if bound.is_some() && bound.as_deref() != proof_jkt {
                        // Someone without the device key holds a spent token: they can do
                        // nothing with it, and must not be able to end the session.
                        return Ok(RotateOutcome::ProofMismatch);
                    }
                    // RFC 9700 §4.14.2: a spent token presented again revokes its family.
                    sqlx::query(sql::REVOKE_REUSED).bind(sid).bind(us(now)).execute(&mut **tx).await.map_err(db_err)?;
                    return Ok(RotateOutcome::Reused(SessionId(sid)));
                };
                let sid: Uuid = r.try_get("session_id").map_err(db_err)?;
                let row = sqlx::query(sql::SESSION_BY_ID).bind(sid).fetch_one(&mut **tx).await.map_err(db_err)?;
                let mut session = Self::session(&row)?;
                if session.dpop_jkt.is_some() && session.dpop_jkt.as_deref() != proof_jkt {
                    // Not spent: the token is left to its device (RFC 9449 §5). The row is
                    // still this transaction's (locked), so nobody saw it spent.
                    sqlx::query(sql::UNSPEND_REFRESH).bind(&old_hash).execute(&mut **tx).await.map_err(db_err)?;
                    return Ok(RotateOutcome::ProofMismatch);
                }
                if session.revoked_at.is_some() || session.expires_at <= now || session.last_refresh_at < idle_cutoff {
                    return Ok(RotateOutcome::Invalid);
                }
                sqlx::query(sql::INSERT_REFRESH_TOKEN)
                    .bind(&new_hash)
                    .bind(sid)
                    .bind(us(now))
                    .execute(&mut **tx)
                    .await
                    .map_err(db_err)?;
                sqlx::query(sql::TOUCH_SESSION).bind(sid).bind(us(now)).execute(&mut **tx).await.map_err(db_err)?;
                session.last_refresh_at = now;
                Ok(RotateOutcome::Rotated(Box::new(session)))
            })
        })
        .await
    }

    pub(super) async fn use_once_in(&self, id: String, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
        let r = self
            .unit(move |tx| {
                Box::pin(async move {
                    sqlx::query(sql::USE_ONCE).bind(id).bind(us(expires_at)).execute(&mut **tx).await.map_err(db_err)
                })
            })
            .await?;
        Ok(r.rows_affected() == 1)
    }

    pub(super) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool.begin().await.map_err(db_err)
    }

    /// Run `work` in a transaction of its own, committed if it succeeds.
    pub(super) async fn unit<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: for<'t> FnOnce(&'t mut sqlx::Transaction<'static, sqlx::Postgres>) -> Work<'t, T>,
    {
        let started = std::time::Instant::now();
        let mut tx = self.begin().await?;
        let out = work(&mut tx).await?;
        tx.commit().await.map_err(db_err)?;
        committed("postgres", started);
        Ok(out)
    }

    /// Dead row versions are PostgreSQL's (auto)vacuum's to reclaim.
    pub(super) async fn scrub_files(&self) -> Result<(), StoreError> {
        Ok(())
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
