//! The Store conformance suite on SQLite (always) and PostgreSQL (when
//! `LATCHKEY_TEST_DATABASE_URL` is set; CI sets it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use latchkey_store::{Database, OpenOptions};

/// A fresh SQLite store, and its file.
async fn sqlite() -> (Database, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("latchkey-conf-{}.db", uuid::Uuid::now_v7()));
    let db = Database::open(&format!("sqlite://{}", path.display()), &OpenOptions::default()).await.unwrap();
    db.migrate().await.unwrap();
    (db, path)
}

/// Remove a SQLite database's file and its write-ahead log and index.
fn remove_sqlite(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

async fn postgres() -> Option<Database> {
    let Ok(url) = std::env::var("LATCHKEY_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must set LATCHKEY_TEST_DATABASE_URL: PostgreSQL tests cannot be skipped there"
        );
        eprintln!("SKIPPED: PostgreSQL conformance (set LATCHKEY_TEST_DATABASE_URL to run it)");
        return None;
    };
    let schema = format!("conf_{}", uuid::Uuid::now_v7().simple());
    let opts = OpenOptions { pg_schema: Some(schema), max_connections: Some(8), ..Default::default() };
    let db =
        Database::open(&url, &opts).await.expect("LATCHKEY_TEST_DATABASE_URL is set but PostgreSQL is unreachable");
    db.migrate().await.unwrap();
    Some(db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_passes_the_conformance_suite() {
    for (name, check) in latchkey_core::conformance::all() {
        eprintln!("sqlite: {name}");
        let (db, path) = sqlite().await;
        check(db.store()).await;
        // Every write handed to the writer task was answered, failed ones too: none is still
        // counted as waiting (the hashing threads pause while any is).
        let waiting = db.writes_waiting().expect("SQLite has a writer task");
        assert_eq!(waiting.load(std::sync::atomic::Ordering::Relaxed), 0, "{name}");
        drop(db);
        remove_sqlite(&path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_passes_the_conformance_suite() {
    if postgres().await.is_none() {
        return;
    }
    for (name, check) in latchkey_core::conformance::all() {
        eprintln!("postgres: {name}");
        let db = postgres().await.unwrap();
        check(db.store()).await;
    }
}

#[test]
fn both_backends_ship_the_same_migration_versions() {
    let (sqlite, postgres) = latchkey_store::migration_versions();
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, postgres);
}

#[tokio::test]
async fn migrating_twice_is_harmless() {
    let (db, path) = sqlite().await;
    db.migrate().await.unwrap();
    drop(db);
    remove_sqlite(&path);
    if let Some(pg) = postgres().await {
        pg.migrate().await.unwrap();
    }
}

/// Every connection SQLite writes with makes each commit durable (`synchronous = FULL`, in WAL
/// mode), checks foreign keys, zeroes deleted rows and keeps savepoints' journals in memory —
/// sqlx's writer and the writer task's direct connection alike; a reader cannot write.
#[tokio::test]
async fn every_sqlite_connection_keeps_commits_durable_and_readers_read_only() {
    let (db, path) = sqlite().await;
    // A read first, so a reader connection exists.
    assert!(!db.store().has_users().await.unwrap());
    let _ = db.store().user_by_username("nobody").await.unwrap();
    let settings = db.sqlite_settings().await.unwrap();
    let value = |conn: &str, pragma: &str| {
        settings
            .iter()
            .find(|(c, p, _)| *c == conn && *p == pragma)
            .map(|(_, _, v)| v.clone())
            .unwrap_or_else(|| panic!("no {pragma} for the {conn} connection"))
    };
    for conn in ["sqlx", "direct"] {
        assert_eq!(value(conn, "journal_mode"), "wal", "{conn}");
        assert_eq!(value(conn, "synchronous"), "2", "{conn}: FULL");
        assert_eq!(value(conn, "foreign_keys"), "1", "{conn}");
        assert_eq!(value(conn, "secure_delete"), "1", "{conn}");
        assert_eq!(value(conn, "temp_store"), "2", "{conn}: MEMORY");
        assert_eq!(value(conn, "query_only"), "0", "{conn}");
    }
    assert_eq!(value("reader", "journal_mode"), "wal");
    assert_eq!(value("reader", "query_only"), "1");
    drop(db);
    remove_sqlite(&path);
}
