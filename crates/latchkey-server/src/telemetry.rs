//! Metrics: the Prometheus recorder, what each metric means (`# HELP`), build information, and
//! the outbox backlog read from the database at each scrape (so every replica reports the same
//! shared queue).

use latchkey_core::model::OutboxStatus;
use latchkey_core::store::Store;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// The process-wide Prometheus recorder, with every metric described.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
            let builder = PrometheusBuilder::new();
            let builder = builder.set_buckets(&buckets).unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("latchkey_http_requests_total", "HTTP requests answered, by route template, method and status");
    describe_histogram!("latchkey_http_request_duration_seconds", "Time to answer an HTTP request, by route template");
    describe_counter!(
        "latchkey_flow_steps_total",
        "Flow steps by outcome: issued, verified, failed, locked, denied, abandoned (expired waiting there)"
    );
    describe_counter!(
        "latchkey_outbox_messages_total",
        "Delivery attempts by channel, provider and outcome: sent, retry, dead; kept for the development outbox"
    );
    describe_gauge!(
        "latchkey_outbox_messages",
        "Undelivered outbox messages by provider and status (pending, sending, dead)"
    );
    describe_gauge!(
        "latchkey_outbox_oldest_age_seconds",
        "Age of the oldest undelivered (pending or sending) message, by provider"
    );
    describe_counter!(
        "latchkey_limit_refusals_total",
        "Requests refused 429 by a limit: flow_sends, send_rate, sms_daily, password_lockout, push_*"
    );
    describe_counter!(
        "latchkey_risk_decisions_total",
        "Risk decisions at sign-in and step-up, one per signal raised (reason=\"none\" when none): allow, delay, require_second_factor, require_phishing_resistant, deny; require_step_up for a session that moved at a refresh"
    );
    describe_counter!(
        "latchkey_connections_refused_total",
        "Connections closed at once: http.max_connections were open"
    );
    describe_histogram!(
        "latchkey_store_group_commit_batches",
        "Writes (flow steps' batches, reservations, rotations) each SQLite commit carried"
    );
    describe_histogram!(
        "latchkey_store_commit_seconds",
        "Time from BEGIN to a durable COMMIT of a write transaction (SQLite: of a group), by store"
    );
    describe_gauge!("latchkey_build_info", "Always 1; the labels say which build is running");
    metrics::gauge!("latchkey_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Set the outbox backlog gauges from the database, for every provider (zero when it has none).
pub async fn record_backlog(store: &dyn Store, now: time::OffsetDateTime) {
    let backlog = match store.outbox_backlog().await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the outbox backlog");
            return;
        }
    };
    for provider in crate::delivery::all_providers() {
        let mut oldest: Option<time::OffsetDateTime> = None;
        for status in [OutboxStatus::Pending, OutboxStatus::Sending, OutboxStatus::Dead] {
            let row = backlog.iter().find(|b| b.provider == provider && b.status == status);
            let n = row.map_or(0, |b| b.count);
            metrics::gauge!("latchkey_outbox_messages", "provider" => provider, "status" => status.as_str())
                .set(n as f64);
            if status != OutboxStatus::Dead
                && let Some(b) = row
            {
                oldest = Some(oldest.map_or(b.oldest, |o| o.min(b.oldest)));
            }
        }
        let age = oldest.map_or(0.0, |o| (now - o).as_seconds_f64().max(0.0));
        metrics::gauge!("latchkey_outbox_oldest_age_seconds", "provider" => provider).set(age);
    }
}
