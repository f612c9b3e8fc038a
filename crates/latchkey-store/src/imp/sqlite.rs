//! What only SQLite's store does: its writes on request paths on the writer connection
//! directly (`direct.rs`), in groups (`group.rs`), and its maintenance.

use super::{SqliteStore, TABLES, db_err, direct};
use latchkey_core::ids::FlowId;
use latchkey_core::model::{AccountCounter, AttemptReservation, LockoutPolicy, Reservation};
use latchkey_core::store::{Batch, RotateOutcome, StoreError};
use sqlx::Row;
use time::OffsetDateTime;

impl SqliteStore {
    /// A batch whose writes all run on the writer connection directly goes there (`direct.rs`);
    /// the rest through sqlx.
    pub(super) async fn apply_batch(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.0.iter().all(direct::runs) {
            return self
                .unit_direct(move |db| {
                    for w in &batch.0 {
                        direct::write(db, w)?;
                    }
                    Ok(())
                })
                .await;
        }
        self.apply_sqlx(batch).await
    }

    /// One transaction: every write goes through one connection, one transaction at a time, so
    /// there is no lock order to deadlock on.
    pub(super) async fn reserve_attempt_in(
        &self,
        id: FlowId,
        max: u32,
        account: Option<AccountCounter>,
    ) -> Result<AttemptReservation, StoreError> {
        self.unit_direct(move |db| direct::reserve_attempt(db, id, max, account.as_ref())).await
    }

    pub(super) async fn reserve_flow_attempt_in(&self, id: FlowId, max: u32) -> Result<Option<u32>, StoreError> {
        self.unit_direct(move |db| direct::flow_attempt(db, id, max)).await
    }

    pub(super) async fn reserve_failure_in(
        &self,
        key: String,
        kind: String,
        now: OffsetDateTime,
        policy: LockoutPolicy,
    ) -> Result<Reservation, StoreError> {
        self.unit_direct(move |db| direct::failure(db, &key, &kind, now, &policy)).await
    }

    pub(super) async fn rotate_refresh_in(
        &self,
        old_hash: String,
        new_hash: String,
        now: OffsetDateTime,
        idle_cutoff: OffsetDateTime,
        proof_jkt: Option<String>,
    ) -> Result<RotateOutcome, StoreError> {
        self.unit_direct(move |db| {
            direct::rotate_refresh(db, &old_hash, &new_hash, now, idle_cutoff, proof_jkt.as_deref())
        })
        .await
    }

    pub(super) async fn use_once_in(&self, id: String, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
        self.unit_direct(move |db| direct::use_once(db, &id, expires_at)).await
    }

    /// SQLite takes the write lock at `BEGIN`, so two writers never deadlock upgrading a read lock.
    pub(super) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)
    }

    /// Deleted rows are zeroed in the database file (`secure_delete`); their older versions may
    /// still be frames of the write-ahead log until a checkpoint copies it back and truncates it.
    pub(super) async fn scrub_files(&self) -> Result<(), StoreError> {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await.map_err(db_err)?;
        Ok(())
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
