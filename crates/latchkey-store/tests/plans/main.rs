//! Every statement the store runs, planned by SQLite and by PostgreSQL (issue 17, item 5): the
//! conformance suite drives every Store method while a tracing layer records the SQL sqlx
//! executes, and the SQL SQLite's store runs on its own connections (its lookups and hot writes); each distinct statement is then planned on a migrated database — SQLite's `EXPLAIN
//! QUERY PLAN`; PostgreSQL's generic plan of the prepared statement with sequential scans
//! priced out (`enable_seqscan = off`), so a `Seq Scan` left means no index can serve it — and a
//! plan that reads a whole table fails the test, unless the statement is one of the few that
//! mean to (listed, each with why).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt as _;

/// Records the SQL of every statement sqlx logs (`sqlx::query`, at debug).
struct Statements(Arc<Mutex<BTreeSet<String>>>);

#[derive(Default)]
struct Fields {
    summary: String,
    statement: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "summary" => value.clone_into(&mut self.summary),
            "db.statement" => value.clone_into(&mut self.statement),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let v = format!("{value:?}");
        let v = v.trim_matches('"').to_owned();
        match field.name() {
            "summary" => self.summary = v,
            "db.statement" => self.statement = v,
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Statements {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if !["sqlx::query", latchkey_store::DIRECT_STATEMENT_LOG].contains(&event.metadata().target()) {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let sql = if f.statement.trim().is_empty() { f.summary } else { f.statement };
        let sql = sql.replace("\\n", "\n").split_whitespace().collect::<Vec<_>>().join(" ");
        if let Ok(mut set) = self.0.lock() {
            set.insert(sql);
        }
    }
}

/// Statements that read a whole table on purpose, each with why.
const WHOLE_TABLE: &[(&str, &str)] = &[
    ("FROM _sqlx_migrations", "sqlx's migrator, once at start"),
    ("FROM webhook_endpoints ORDER BY", "at most 50 endpoints, read every 2 s"),
    (
        "FROM outbox ORDER BY created_at, id",
        "`latchkey outbox`: the development outbox, read whole by a developer's command",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_statement_the_store_runs_uses_an_index() {
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let subscriber = tracing_subscriber::registry().with(Statements(seen.clone())).with(
        tracing_subscriber::filter::Targets::new()
            .with_target("sqlx::query", tracing::Level::DEBUG)
            .with_target(latchkey_store::DIRECT_STATEMENT_LOG, tracing::Level::DEBUG),
    );
    tracing::subscriber::set_global_default(subscriber).unwrap();

    sqlite(&seen).await;
    let Ok(url) = std::env::var("LATCHKEY_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must set LATCHKEY_TEST_DATABASE_URL: PostgreSQL tests cannot be skipped there"
        );
        eprintln!("SKIPPED: PostgreSQL plans (set LATCHKEY_TEST_DATABASE_URL to run them)");
        return;
    };
    postgres(&seen, &url).await;
}

/// The statements the conformance suite makes a store run.
async fn record(
    seen: &Arc<Mutex<BTreeSet<String>>>,
    open: impl AsyncFn() -> latchkey_store::Database,
) -> BTreeSet<String> {
    seen.lock().unwrap().clear();
    for (_, check) in latchkey_core::conformance::all() {
        let db = open().await;
        db.migrate().await.unwrap();
        check(db.store()).await;
    }
    let statements = std::mem::take(&mut *seen.lock().unwrap());
    assert!(statements.len() > 50, "the layer saw the store's statements: {statements:?}");
    statements
        .into_iter()
        .filter(|sql| {
            let verb = sql.split_whitespace().next().unwrap_or_default().to_uppercase();
            ["SELECT", "UPDATE", "DELETE", "WITH", "INSERT"].contains(&verb.as_str())
        })
        .collect()
}

fn on_purpose(sql: &str) -> bool {
    WHOLE_TABLE.iter().any(|(s, _)| sql.contains(s))
}

/// Statements whose plan must use one index, each with why: one whose table grows without bound
/// and whose other indexes match its equality terms but not its selectivity.
const MUST_USE: &[(&str, &str, &str)] = &[(
    "UPDATE outbox SET status = 'sending'",
    "outbox_claimable",
    "the worker's claim; through outbox_provider it walked every message the provider ever sent",
)];

async fn sqlite(seen: &Arc<Mutex<BTreeSet<String>>>) {
    let dir = std::env::temp_dir().join(format!("latchkey-plans-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let statements = record(seen, async || {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = format!("sqlite://{}", dir.join(format!("c{i}.db")).display());
        latchkey_store::Database::open(&url, &latchkey_store::OpenOptions::default()).await.unwrap()
    })
    .await;

    let url = format!("sqlite://{}?mode=rwc", dir.join("plans.db").display());
    let db = latchkey_store::Database::open(&url, &latchkey_store::OpenOptions::default()).await.unwrap();
    db.migrate().await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut scans = vec![];
    for sql in &statements {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        // The store's own statements, as sqlx logged them: nothing from outside.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(explain));
        for _ in 0..placeholders(sql) {
            q = q.bind(None::<i64>);
        }
        let rows = match q.fetch_all(&pool).await {
            Ok(rows) => rows,
            Err(e) => panic!("cannot plan {sql}: {e}"),
        };
        use sqlx::Row as _;
        for (prefix, index, why) in MUST_USE {
            let uses = rows.iter().any(|r| r.get::<String, _>("detail").contains(&format!("INDEX {index} ")));
            if sql.starts_with(prefix) && !uses {
                scans.push(format!("not through {index} ({why})\n    {sql}"));
            }
        }
        for r in rows {
            let detail: String = r.get("detail");
            // `SCAN CONSTANT ROW` and `SCAN n-ROW VALUES CLAUSE` read no table.
            let whole = detail.starts_with("SCAN ")
                && !detail.contains(" USING ")
                && !detail.contains("CONSTANT ROW")
                && !detail.contains("VALUES CLAUSE");
            if whole && !on_purpose(sql) {
                scans.push(format!("{detail}\n    {sql}"));
            }
        }
    }
    assert!(statements.len() > 50, "{} statements planned", statements.len());
    // SQLite runs these on its own connections only (a lookup, a hot write): their log is seen.
    for own in ["SELECT * FROM flows WHERE id = $1", "UPDATE flows SET attempts = attempts + 1"] {
        assert!(statements.iter().any(|s| s.starts_with(own)), "the store's own statement {own} was planned");
    }
    for (prefix, _, _) in MUST_USE {
        assert!(statements.iter().any(|s| s.starts_with(prefix)), "the suite ran {prefix}");
    }
    drop((pool, db));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(scans.is_empty(), "SQLite: statements that read a whole table:\n{}", scans.join("\n"));
}

async fn postgres(seen: &Arc<Mutex<BTreeSet<String>>>, url: &str) {
    let schema = || format!("plans_{}", uuid::Uuid::now_v7().simple());
    let open = async |schema: String| {
        let opts =
            latchkey_store::OpenOptions { pg_schema: Some(schema), max_connections: Some(8), ..Default::default() };
        latchkey_store::Database::open(url, &opts).await.expect("LATCHKEY_TEST_DATABASE_URL is set but unreachable")
    };
    let statements = record(seen, async || open(schema()).await).await;

    let db = open(schema()).await;
    db.migrate().await.unwrap();
    let latchkey_store::Database::Postgres(store) = &db else { panic!("a PostgreSQL store") };
    let mut conn = store.pool().acquire().await.unwrap();
    // A plan for any parameters (not one folded around the NULLs below), and sequential scans
    // priced out: one that is still chosen has no index to use instead.
    sqlx::raw_sql("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    // An index with a predicate holds only the rows it selects: walking it is not a table's read.
    let partial: BTreeSet<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() AND indexdef LIKE '% WHERE %'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert!(partial.contains("approvals_one_pending"), "{partial:?}");
    let mut scans = vec![];
    for sql in &statements {
        // PostgreSQL infers each parameter's type from the statement; NULLs fit any of them.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE plan_me AS {sql}")))
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("cannot prepare {sql}: {e}"));
        let nulls = vec!["NULL"; placeholders(sql)].join(", ");
        let args = if nulls.is_empty() { String::new() } else { format!("({nulls})") };
        let explain = format!("EXPLAIN (FORMAT JSON) EXECUTE plan_me{args}");
        let rows = sqlx::query(sqlx::AssertSqlSafe(explain)).fetch_all(&mut *conn).await;
        sqlx::raw_sql("DEALLOCATE plan_me").execute(&mut *conn).await.unwrap();
        let rows = rows.unwrap_or_else(|e| panic!("cannot plan {sql}: {e}"));
        use sqlx::Row as _;
        for r in rows {
            let plan: serde_json::Value = serde_json::from_str(r.try_get_unchecked::<&str, _>(0).unwrap()).unwrap();
            for node in whole_table_reads(&plan, &partial) {
                if !on_purpose(sql) {
                    scans.push(format!("{node}\n    {sql}"));
                }
            }
        }
    }
    assert!(statements.len() > 50, "{} statements planned", statements.len());
    assert!(scans.is_empty(), "PostgreSQL: statements that read a whole table:\n{}", scans.join("\n"));
}

/// The nodes of a PostgreSQL plan (`EXPLAIN (FORMAT JSON)`) that read a whole table: a
/// sequential scan, or a whole index (not one of the `partial` ones) walked end to end to filter
/// rows: no `Index Cond`. One walked only for its order, under a `LIMIT`, has no filter and reads
/// only what it returns.
fn whole_table_reads(plan: &serde_json::Value, partial: &BTreeSet<String>) -> Vec<String> {
    let mut found = vec![];
    let mut stack = vec![plan];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(node) => {
                let kind = node.get("Node Type").and_then(|k| k.as_str()).unwrap_or_default();
                let table = node.get("Relation Name").and_then(|k| k.as_str()).unwrap_or_default();
                let index = node.get("Index Name").and_then(|k| k.as_str()).unwrap_or_default();
                let walked = matches!(kind, "Index Scan" | "Index Only Scan")
                    && node.get("Index Cond").is_none()
                    && node.get("Filter").is_some()
                    && !partial.contains(index);
                if kind == "Seq Scan" || walked {
                    found.push(format!("{kind} on {table}"));
                }
                stack.extend(node.values());
            }
            _ => {}
        }
    }
    found
}

/// How many parameters a statement takes (`$1`…`$n`, or `?`).
fn placeholders(sql: &str) -> usize {
    let numbered = sql
        .split('$')
        .skip(1)
        .filter_map(|s| s.chars().take_while(char::is_ascii_digit).collect::<String>().parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    numbered.max(sql.matches('?').count())
}
