//! SQLite's reads on request paths, run where they are asked for: a point lookup by key (a
//! flow, an account, its factors, a device, a session) takes a few microseconds in SQLite,
//! against two thread hand-offs and a pool checkout through sqlx, whose connections each live on
//! a worker thread of their own. The connections here are opened on the same file, read only;
//! in WAL mode a reader never waits for the writer, so a read blocks its runtime thread only
//! for its own pages. Reads that may scan (an audit page, a search) stay on sqlx's pool.

use super::db_err;
use latchkey_core::store::StoreError;
use rusqlite::{Connection, OpenFlags, ToSql};
use std::path::PathBuf;
use std::sync::Mutex;
use uuid::Uuid;

/// At most this many idle reader connections are kept; one is opened when none is idle (as
/// many as threads read at once: the runtime's workers).
const IDLE_MAX: usize = 16;

/// A value bound to a read's `$N`, for either way it runs (sqlx, or a reader here).
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    Id(Uuid),
    Int(i64),
    Text(&'a str),
}

impl ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Id(u) => u.to_sql(),
            Arg::Int(i) => i.to_sql(),
            Arg::Text(s) => s.to_sql(),
        }
    }
}

/// A row decoder of `rows.rs`, for a row read here.
pub(super) type DirectDecoder<T> = fn(&rusqlite::Row<'_>) -> Result<T, StoreError>;

/// SQLite's reader connections.
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Readers {
    /// Readers of the database at `path` (opened as they are first needed).
    pub(super) fn new(path: PathBuf) -> Self {
        Self { path, idle: Mutex::new(Vec::new()) }
    }

    /// The rows `sql` returns with `args` bound, each read by `read`.
    pub(super) fn all<T>(&self, sql: &str, args: &[Arg<'_>], read: DirectDecoder<T>) -> Result<Vec<T>, StoreError> {
        self.with(|db| {
            let params: Vec<&dyn ToSql> = args.iter().map(|a| a as &dyn ToSql).collect();
            let mut st = super::direct::prepared(db, sql, &params)?;
            let mut rows = st.raw_query();
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(db_err)? {
                out.push(read(r)?);
            }
            Ok(out)
        })
    }

    /// The first row `sql` returns with `args` bound, read by `read`.
    pub(super) fn one<T>(&self, sql: &str, args: &[Arg<'_>], read: DirectDecoder<T>) -> Result<Option<T>, StoreError> {
        self.with(|db| {
            let params: Vec<&dyn ToSql> = args.iter().map(|a| a as &dyn ToSql).collect();
            super::direct::first(db, sql, &params, read)
        })
    }

    /// A pragma's value on a reader connection (test support).
    pub(super) fn pragma(&self, name: &str) -> Result<String, StoreError> {
        self.with(|db| super::direct::pragma(db, name))
    }

    /// Run `f` on an idle reader connection, or a new one. Its statement is reset when `f`
    /// returns (rusqlite resets a statement as its rows drop), so no read transaction stays
    /// open to hold a checkpoint back.
    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let db = match idle {
            Some(db) => db,
            None => self.open()?,
        };
        let out = f(&db);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_MAX {
            idle.push(db);
        }
        out
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let db = Connection::open_with_flags(&self.path, flags).map_err(db_err)?;
        // Read only: a statement that writes is refused. A reader waits for the lock only
        // while the WAL's index is rebuilt (after a crash) or reset by a checkpoint.
        db.execute_batch("PRAGMA query_only = ON").map_err(db_err)?;
        db.busy_timeout(std::time::Duration::from_secs(10)).map_err(db_err)?;
        Ok(db)
    }
}
