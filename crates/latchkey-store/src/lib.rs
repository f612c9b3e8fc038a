//! SQLite and PostgreSQL implementations of [`latchkey_core::store::Store`].
//!
//! Both run the same SQL text (sqlx-sqlite accepts `$n` placeholders; times are Unix
//! microseconds in `BIGINT` columns), expanded per backend by one macro; the only differences are
//! how a write transaction begins (SQLite takes the write lock up front with `BEGIN IMMEDIATE`)
//! and PostgreSQL's `FOR UPDATE SKIP LOCKED` when workers claim outbox messages. Each backend
//! has its own migrations folder; a test checks the two list the same versions.

use latchkey_core::store::{Store, StoreError};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

mod imp;

pub use imp::{DIRECT_STATEMENT_LOG, PgStore, SqliteStore};

/// How to open a database.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// PostgreSQL: use this schema (created if missing) instead of `public`. Tests use one
    /// schema each so they can share a database.
    pub pg_schema: Option<String>,
    /// Maximum pool size (default: 16 for PostgreSQL, 8 for SQLite).
    pub max_connections: Option<u32>,
    /// SQLite: open an existing database only, never create one (read-only commands such as
    /// `latchkey outbox` run in the wrong directory must not leave an empty database behind).
    pub existing_only: bool,
}

/// An open database of either kind.
#[derive(Clone)]
pub enum Database {
    /// SQLite, one file.
    Sqlite(SqliteStore),
    /// PostgreSQL.
    Postgres(PgStore),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl Database {
    /// Open `url` (`sqlite://path?mode=rwc`, `sqlite:path`, `postgres://…`). Does not migrate.
    pub async fn open(url: &str, opts: &OpenOptions) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut o = sqlx::postgres::PgConnectOptions::from_str(url).map_err(unavailable)?;
            if let Some(schema) = &opts.pg_schema {
                if !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(StoreError::Unavailable("schema names are [A-Za-z0-9_]".into()));
                }
                let admin = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(o.clone())
                    .await
                    .map_err(unavailable)?;
                let create = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
                sqlx::raw_sql(sqlx::AssertSqlSafe(create)).execute(&admin).await.map_err(unavailable)?;
                admin.close().await;
                o = o.options([("search_path", schema.as_str())]);
            }
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(opts.max_connections.unwrap_or(16))
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(o)
                .await
                .map_err(unavailable)?;
            Ok(Database::Postgres(PgStore::new(pool)))
        } else if url.starts_with("sqlite:") {
            use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
            let o = SqliteConnectOptions::from_str(url).map_err(unavailable)?;
            let file = o.get_filename().to_path_buf();
            if !file.exists() {
                if opts.existing_only {
                    return Err(StoreError::Unavailable(format!("no database at {}", file.display())));
                }
                // Created 0600 before SQLite opens it: SQLite makes its -wal and -shm files with
                // the database file's permissions, so nothing of it is readable by others.
                create_private(&file).map_err(unavailable)?;
            }
            let o = o
                .create_if_missing(!opts.existing_only)
                .journal_mode(SqliteJournalMode::Wal)
                // Every committed sign-up, session and code survives a power cut.
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                // A deleted account's rows are overwritten with zeros, not left in free pages.
                .pragma("secure_delete", "ON")
                // A savepoint's journal (one per write of a group) stays in memory, never in a
                // temporary file.
                .pragma("temp_store", "MEMORY")
                .busy_timeout(Duration::from_secs(10));
            // A connection to a local file needs no test before each use; sqlx's test is a round
            // trip to the connection's thread.
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(opts.max_connections.unwrap_or(8))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(o.clone())
                .await
                .map_err(unavailable)?;
            // SQLite has one writer at a time: one connection for writes, waited for in order.
            let writer = sqlx::sqlite::SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(o)
                .await
                .map_err(unavailable)?;
            Ok(Database::Sqlite(SqliteStore::with_writer(pool, writer)))
        } else {
            Err(StoreError::Unavailable("database URL must start with sqlite: or postgres://".into()))
        }
    }

    /// Apply pending migrations. Safe to run from several replicas at once (PostgreSQL takes an
    /// advisory lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Database::Sqlite(s) => sqlx::migrate!("./migrations/sqlite").run(s.pool()).await.map_err(unavailable),
            Database::Postgres(s) => sqlx::migrate!("./migrations/postgres").run(s.pool()).await.map_err(unavailable),
        }
    }

    /// A consistent copy of a SQLite database, written while it serves (`VACUUM INTO`, one read
    /// transaction): what `latchkey backup` archives. PostgreSQL is backed up with `pg_dump`.
    pub async fn sqlite_snapshot(&self, to: &std::path::Path) -> Result<(), StoreError> {
        match self {
            Database::Sqlite(s) => {
                let path =
                    to.to_str().ok_or_else(|| StoreError::Unavailable("the snapshot path is not UTF-8".into()))?;
                sqlx::query("VACUUM INTO $1").bind(path).execute(s.pool()).await.map_err(unavailable)?;
                Ok(())
            }
            Database::Postgres(_) => Err(StoreError::Unavailable("PostgreSQL is backed up with pg_dump".into())),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }

    /// SQLite: how many writes wait for its writer task, for the hashing threads to yield to.
    /// `None` on PostgreSQL, whose commits are its own processes' work.
    pub fn writes_waiting(&self) -> Option<std::sync::Arc<std::sync::atomic::AtomicUsize>> {
        match self {
            Database::Sqlite(s) => s.writes_waiting(),
            Database::Postgres(_) => None,
        }
    }

    /// The store behind the domain's trait.
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Database::Sqlite(s) => Arc::new(s.clone()),
            Database::Postgres(s) => Arc::new(s.clone()),
        }
    }

    /// Close the pool.
    pub async fn close(&self) {
        match self {
            Database::Sqlite(s) => {
                s.pool().close().await;
                s.writer().close().await;
            }
            Database::Postgres(s) => s.pool().close().await,
        }
    }

    /// Test support: SQLite's settings on each kind of connection it writes or reads with
    /// (`(connection, pragma, value)`); empty on PostgreSQL.
    pub async fn sqlite_settings(&self) -> Result<Vec<(&'static str, &'static str, String)>, StoreError> {
        match self {
            Database::Sqlite(s) => s.settings().await,
            Database::Postgres(_) => Ok(Vec::new()),
        }
    }

    /// Test support: every text value stored anywhere, to prove no secret is kept in clear.
    pub async fn dump_text(&self) -> Result<String, StoreError> {
        match self {
            Database::Sqlite(s) => s.dump_text().await,
            Database::Postgres(s) => s.dump_text().await,
        }
    }
}

/// The versions of the migrations each backend ships (checked equal by a test).
pub fn migration_versions() -> (Vec<i64>, Vec<i64>) {
    let s = sqlx::migrate!("./migrations/sqlite").iter().map(|m| m.version).collect();
    let p = sqlx::migrate!("./migrations/postgres").iter().map(|m| m.version).collect();
    (s, p)
}

/// An empty file only its owner can read and write.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map(|_| ())
}
