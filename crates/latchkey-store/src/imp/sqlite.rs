//! What only SQLite's store does: its writes on request paths on the writer connection
//! directly (`direct.rs`), in groups (`group.rs`), and its maintenance.

use super::{SqliteStore, TABLES, db_err, direct};
use latchkey_core::ids::FlowId;
use latchkey_core::model::{AccountCounter, AttemptReservation, LockoutPolicy, Reservation};
use latchkey_core::store::{Batch, ReservedStep, RotateOutcome, StoreError};
use sqlx::Row;
use time::OffsetDateTime;

/// The settings `settings` reports.
const SETTINGS: [&str; 6] =
    ["journal_mode", "synchronous", "foreign_keys", "secure_delete", "temp_store", "query_only"];

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

    /// One transaction when the step's writes all run on the writer connection directly (a
    /// sign-in's TOTP step: one commit where it made two); two otherwise.
    pub(super) async fn reserve_attempt_and_apply_in(
        &self,
        id: FlowId,
        max: u32,
        account: Option<AccountCounter>,
        then: Batch,
    ) -> Result<ReservedStep, StoreError> {
        if !then.0.iter().all(direct::runs) {
            return super::reserve_then_apply(self, id, max, account, then).await;
        }
        self.unit_direct(move |db| direct::reserve_attempt_and_apply(db, id, max, account.as_ref(), &then.0)).await
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

    /// Test support: the settings each kind of connection runs with — sqlx's writer, the
    /// writer task's direct connection (opened as it opens it), a reader — as
    /// `(connection, pragma, value)`.
    pub(crate) async fn settings(&self) -> Result<Vec<(&'static str, &'static str, String)>, StoreError> {
        let mut out = Vec::new();
        for p in SETTINGS {
            let q = format!("PRAGMA {p}");
            let row = sqlx::query(sqlx::AssertSqlSafe(q)).fetch_one(&self.writer).await.map_err(db_err)?;
            let v = row.try_get::<String, _>(0).or_else(|_| row.try_get::<i64, _>(0).map(|v| v.to_string()));
            out.push(("sqlx", p, v.map_err(db_err)?));
        }
        let path = self.pool.connect_options().get_filename().to_path_buf();
        let direct = tokio::task::spawn_blocking(move || direct::open_writer(&path)).await.map_err(db_err)??;
        for p in SETTINGS {
            out.push(("direct", p, direct::pragma(&direct, p)?));
        }
        if let Some(readers) = &self.readers {
            for p in SETTINGS {
                out.push(("reader", p, readers.pragma(p)?));
            }
        }
        Ok(out)
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
