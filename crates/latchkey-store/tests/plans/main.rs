//! Every statement the store runs, planned by SQLite (issue 17, item 5): the conformance suite
//! drives every Store method while a tracing layer records the SQL sqlx executes; each distinct
//! statement is then given to `EXPLAIN QUERY PLAN` on a migrated database, and a plan that reads
//! a whole table without an index fails the test, unless the statement is one of the few that
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
        if event.metadata().target() != "sqlx::query" {
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
    let subscriber = tracing_subscriber::registry()
        .with(Statements(seen.clone()))
        .with(tracing_subscriber::filter::Targets::new().with_target("sqlx::query", tracing::Level::DEBUG));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = std::env::temp_dir().join(format!("latchkey-plans-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (_, check)) in latchkey_core::conformance::all().into_iter().enumerate() {
        let url = format!("sqlite://{}", dir.join(format!("c{i}.db")).display());
        let db = latchkey_store::Database::open(&url, &latchkey_store::OpenOptions::default()).await.unwrap();
        db.migrate().await.unwrap();
        check(db.store()).await;
    }
    let statements = seen.lock().unwrap().clone();
    assert!(statements.len() > 50, "the layer saw the store's statements: {statements:?}");

    let url = format!("sqlite://{}?mode=rwc", dir.join("plans.db").display());
    let db = latchkey_store::Database::open(&url, &latchkey_store::OpenOptions::default()).await.unwrap();
    db.migrate().await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut scans = vec![];
    let mut planned = 0;
    for sql in &statements {
        let verb = sql.split_whitespace().next().unwrap_or_default().to_uppercase();
        if !["SELECT", "UPDATE", "DELETE", "WITH", "INSERT"].contains(&verb.as_str()) {
            continue;
        }
        let params = placeholders(sql);
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        // The store's own statements, as sqlx logged them: nothing from outside.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(explain));
        for _ in 0..params {
            q = q.bind(None::<i64>);
        }
        let rows = match q.fetch_all(&pool).await {
            Ok(rows) => rows,
            Err(e) => panic!("cannot plan {sql}: {e}"),
        };
        planned += 1;
        use sqlx::Row as _;
        for r in rows {
            let detail: String = r.get("detail");
            // `SCAN CONSTANT ROW` and `SCAN n-ROW VALUES CLAUSE` read no table.
            let whole = detail.starts_with("SCAN ")
                && !detail.contains(" USING ")
                && !detail.contains("CONSTANT ROW")
                && !detail.contains("VALUES CLAUSE");
            if whole && !WHOLE_TABLE.iter().any(|(s, _)| sql.contains(s)) {
                scans.push(format!("{detail}\n    {sql}"));
            }
        }
    }
    assert!(planned > 50, "{planned} statements planned");
    assert!(scans.is_empty(), "statements that read a whole table:\n{}", scans.join("\n"));
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
