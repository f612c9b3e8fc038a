//! SQLite's group commit: one task owns the writer connection's transactions, and each store
//! call that writes is a unit of the next group, in a savepoint of its own.

use super::{SqliteStore, db_err};
use latchkey_core::store::StoreError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A transaction's worth of work: the statements of one store call, run inside a transaction
/// the caller owns (`unit`).
pub(super) type Work<'t, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 't>>;

type SqliteTx = sqlx::Transaction<'static, sqlx::Sqlite>;

/// How to answer a grouped write's caller once the group's commit is known.
type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;

/// What a grouped write left: whether it succeeded (its savepoint is kept) and its answer.
type Finish = (bool, Answer);

/// One store call for SQLite's writer task, through sqlx.
type SqlxJob = Box<
    dyn for<'t> FnOnce(&'t mut SqliteTx) -> std::pin::Pin<Box<dyn std::future::Future<Output = Finish> + Send + 't>>
        + Send,
>;

/// One store call for SQLite's writer task, run on the writer connection directly (`direct.rs`).
type DirectJob = Box<dyn FnOnce(&rusqlite::Connection) -> Finish + Send>;

/// One store call for SQLite's writer task.
pub(super) enum GroupJob {
    Sqlx(SqlxJob),
    Direct(DirectJob),
}

/// At most this many store calls share one commit.
const GROUP_MAX: usize = 64;

/// The writer task's queue, and how many store calls are waiting for it.
#[derive(Clone, Debug)]
pub(super) struct Group {
    jobs: tokio::sync::mpsc::Sender<GroupJob>,
    waiting: Arc<AtomicUsize>,
}

fn uncommitted() -> StoreError {
    StoreError::Unavailable("the database writer did not commit this write".into())
}

impl SqliteStore {
    /// A store whose writes all take their turn on `writer`, one connection: writers wait in the
    /// pool's queue and wake as soon as it is free, instead of sleeping in SQLite's busy handler
    /// (the writer task's direct groups run on a connection of its own while it holds `writer`).
    /// Its lookups by key run on reader connections of their own (`readers.rs`). The writes of request paths (batches, reservations, refresh rotations, proofs
    /// spent) are committed in groups by one task: those that arrive while a commit is being made
    /// to disk share the next one, each in a savepoint of its own — one that fails rolls back
    /// alone — and none is acknowledged before the commit that holds it is durable
    /// (`synchronous = FULL`). One fsync for many steps, and no acknowledged write is lost.
    pub fn with_writer(pool: sqlx::SqlitePool, writer: sqlx::SqlitePool) -> Self {
        let path = pool.connect_options().get_filename().to_path_buf();
        let plain = Self { pool: pool.clone(), writer: writer.clone(), group: None, readers: None };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<GroupJob>(1024);
        let mut direct = DirectWriter { path: path.clone(), db: None };
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < GROUP_MAX {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                plain.commit_group(jobs, &mut direct).await;
            }
        });
        let readers = Arc::new(super::readers::Readers::new(path));
        Self {
            pool,
            writer,
            group: Some(Group { jobs: tx, waiting: Arc::new(AtomicUsize::new(0)) }),
            readers: Some(readers),
        }
    }

    /// How many writes are waiting for the writer task (handed to it and not yet answered):
    /// the hashing threads pause between hashes while there are any (docs/benchmarks.md, "What
    /// slows the commits beside a storm"). `None` without a writer task.
    pub fn writes_waiting(&self) -> Option<Arc<AtomicUsize>> {
        self.group.as_ref().map(|g| g.waiting.clone())
    }

    /// Run `work` in a write transaction: the writer task's next group, or (without one) a
    /// transaction of its own. Its error rolls back its own statements alone.
    pub(super) async fn unit<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut SqliteTx) -> Work<'t, T> + Send + 'static,
    {
        let Some(group) = &self.group else {
            let started = std::time::Instant::now();
            let mut tx = self.begin().await?;
            let out = work(&mut tx).await?;
            tx.commit().await.map_err(db_err)?;
            super::committed("sqlite", started);
            return Ok(out);
        };
        let (reply, outcome) = tokio::sync::oneshot::channel::<Result<T, StoreError>>();
        let job: SqlxJob = Box::new(move |tx| Box::pin(async move { finish(reply, work(tx).await) }));
        // Counted until answered, whatever the answer (a dropped future too).
        let _waiting = Waiting::new(&group.waiting);
        group.jobs.send(GroupJob::Sqlx(job)).await.map_err(|_| uncommitted())?;
        outcome.await.map_err(|_| uncommitted())?
    }

    /// Run `work` in a write transaction on the writer connection directly, its statements one
    /// after another on one thread (`direct.rs`): the writer task's next group, or (without one)
    /// a transaction of its own. Its error rolls back its own statements alone.
    pub(super) async fn unit_direct<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let Some(group) = &self.group else {
            return Err(StoreError::Unavailable("this SQLite store has no writer task".into()));
        };
        let (reply, outcome) = tokio::sync::oneshot::channel::<Result<T, StoreError>>();
        let job: DirectJob = Box::new(move |db| finish(reply, work(db)));
        let _waiting = Waiting::new(&group.waiting);
        group.jobs.send(GroupJob::Direct(job)).await.map_err(|_| uncommitted())?;
        outcome.await.map_err(|_| uncommitted())?
    }

    /// The writer task's group: its direct jobs in one transaction, its sqlx jobs in another.
    async fn commit_group(&self, jobs: Vec<GroupJob>, direct_writer: &mut DirectWriter) {
        metrics::histogram!("latchkey_store_group_commit_batches").record(jobs.len() as f64);
        let (mut direct, mut sqlx) = (Vec::new(), Vec::new());
        for job in jobs {
            match job {
                GroupJob::Direct(j) => direct.push(j),
                GroupJob::Sqlx(j) => sqlx.push(j),
            }
        }
        if !direct.is_empty() {
            self.commit_direct(direct, direct_writer).await;
        }
        if !sqlx.is_empty() {
            self.commit_sqlx(sqlx).await;
        }
    }

    /// One transaction for `jobs` on the direct writer's connection, run on a blocking thread:
    /// two thread hand-offs for the whole group, where sqlx makes two per statement. sqlx's
    /// writer connection is held meanwhile, so no write through sqlx runs beside it (SQLite has
    /// one writer at a time; none of them waits in the busy handler). Every caller is answered
    /// once the commit is durable (or failed); a job never run answers `Unavailable` as its
    /// reply is dropped.
    async fn commit_direct(&self, jobs: Vec<DirectJob>, writer: &mut DirectWriter) {
        let turn = match self.writer.acquire().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "the database writer is unavailable");
                return;
            }
        };
        let (path, db) = (writer.path.clone(), writer.db.take());
        let run = tokio::task::spawn_blocking(move || {
            let db = match db {
                Some(db) => db,
                None => match super::direct::open_writer(&path) {
                    Ok(db) => db,
                    Err(e) => return (None, (Vec::new(), Err(e.to_string()))),
                },
            };
            let out = run_direct(&db, jobs);
            (Some(db), out)
        });
        match run.await {
            Ok((db, (finishes, committed))) => {
                drop(turn);
                writer.db = db;
                if let Err(e) = &committed {
                    tracing::error!(error = %e, "the database writer could not commit a group of writes");
                }
                for finish in finishes {
                    finish(committed.clone());
                }
            }
            Err(e) => tracing::error!(error = %e, "the database writer's thread failed"),
        }
    }

    /// One transaction for `jobs`, each in a savepoint; every caller answered once the
    /// transaction is committed (or failed). A job never run (the transaction could not be
    /// begun, or a savepoint broke it) answers `Unavailable` as its reply is dropped.
    async fn commit_sqlx(&self, jobs: Vec<SqlxJob>) {
        let started = std::time::Instant::now();
        let mut tx = match self.begin().await {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(error = %e, "the database writer cannot begin a transaction");
                return;
            }
        };
        let mut finishes = Vec::with_capacity(jobs.len());
        let mut broken: Option<String> = None;
        for job in jobs {
            if broken.is_some() {
                continue;
            }
            if let Err(e) = sqlx::query("SAVEPOINT unit").execute(&mut *tx).await {
                broken = Some(e.to_string());
                continue;
            }
            let (ok, finish) = job(&mut tx).await;
            let end = if ok { "RELEASE unit" } else { "ROLLBACK TO unit; RELEASE unit" };
            if let Err(e) = sqlx::raw_sql(end).execute(&mut *tx).await {
                broken = Some(e.to_string());
            }
            finishes.push(finish);
        }
        // A savepoint that could not be taken or undone: nothing of the group is committed.
        let committed = match broken {
            Some(e) => Err(e),
            None => tx.commit().await.map_err(|e| e.to_string()),
        };
        match &committed {
            Ok(()) => super::committed("sqlite", started),
            Err(e) => tracing::error!(error = %e, "the database writer could not commit a group of writes"),
        }
        for finish in finishes {
            finish(committed.clone());
        }
    }
}

/// What a unit left: whether it succeeded, and how to give its caller `out` — or, if its group
/// was not committed, `Unavailable` — once the commit is known.
fn finish<T: Send + 'static>(
    reply: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
    out: Result<T, StoreError>,
) -> Finish {
    let ok = out.is_ok();
    let answer: Answer = Box::new(move |committed| {
        let _ = reply.send(match committed {
            Ok(()) => out,
            Err(e) => Err(StoreError::Unavailable(e)),
        });
    });
    (ok, answer)
}

/// Run `jobs` in one transaction on `db`, each in a savepoint: what each left to answer its
/// caller, and whether the transaction was committed. The connection is left with no
/// transaction open, whatever failed.
fn run_direct(db: &rusqlite::Connection, jobs: Vec<DirectJob>) -> (Vec<Answer>, Result<(), String>) {
    let started = std::time::Instant::now();
    if let Err(e) = control(db, "BEGIN IMMEDIATE") {
        return (Vec::new(), Err(e));
    }
    let mut finishes = Vec::with_capacity(jobs.len());
    let mut broken: Option<String> = None;
    for job in jobs {
        if broken.is_some() {
            continue;
        }
        if let Err(e) = control(db, "SAVEPOINT unit") {
            broken = Some(e);
            continue;
        }
        let (ok, finish) = job(db);
        let undone = if ok { Ok(()) } else { control(db, "ROLLBACK TO unit") };
        if let Err(e) = undone.and_then(|()| control(db, "RELEASE unit")) {
            broken = Some(e);
        }
        finishes.push(finish);
    }
    // A savepoint that could not be taken or undone: nothing of the group is committed.
    let committed = match broken {
        Some(e) => Err(e),
        None => control(db, "COMMIT"),
    };
    if committed.is_err() && !db.is_autocommit() {
        let _ = control(db, "ROLLBACK");
    }
    if committed.is_ok() {
        super::committed("sqlite", started);
    }
    (finishes, committed)
}

/// A transaction's or savepoint's statement (`direct::control`), its error as text.
fn control(db: &rusqlite::Connection, sql: &str) -> Result<(), String> {
    super::direct::control(db, sql).map_err(|e| e.to_string())
}

/// The connection the writer task runs direct groups on (`direct::open_writer`), opened when
/// first needed and kept, with the statements it has prepared, between groups.
pub(super) struct DirectWriter {
    path: std::path::PathBuf,
    db: Option<rusqlite::Connection>,
}

/// One write counted in `Group::waiting` for as long as this lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
