//! The outbox worker. Each configured provider has a lane of its own: it claims only that
//! provider's due messages and sends up to `outbox.concurrency` of them at once, each held to
//! `outbox.send_timeout_secs`. A dead or hung provider delays only its own messages (issue 11,
//! items 1–2). A message's lease is short and renewed while its send is in flight, so a message
//! claimed by a replica that died is re-sent after `outbox.lease_secs`, not a minute later.
//! Any number of replicas run a worker: claims are atomic in the database.
//!
//! Event webhook endpoints (issue 15) are lanes too, one per endpoint (`event:<id>`), started
//! and stopped as endpoints come and go: one receiver that hangs or fails holds only its own
//! events.

use crate::config::OutboxConfig;
use crate::delivery::{DEV, Failure, Senders, all_providers, backoff};
use latchkey_core::clock::Clock;
use latchkey_core::crypto::Keys;
use latchkey_core::ids::MessageId;
use latchkey_core::model::OutboxMessage;
use latchkey_core::store::Store;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

/// The outbox worker.
pub struct Worker {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// To open sealed bodies.
    pub keys: Keys,
    /// Senders.
    pub senders: Senders,
    /// Timing.
    pub config: OutboxConfig,
    /// Woken when a message is queued.
    pub wakeup: Arc<Notify>,
    /// To report flows that expired unfinished (the `abandoned` step metric).
    pub auth: latchkey_core::Auth,
}

/// What every lane shares.
struct Shared {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    keys: Keys,
    senders: Senders,
    config: OutboxConfig,
    auth: latchkey_core::Auth,
    events_http: reqwest::Client,
}

/// One lane: the providers it claims for, and its own wake-up.
struct Lane {
    providers: Vec<String>,
    wakeup: Arc<Notify>,
    poll: Duration,
    /// How long a message must have been due before this lane takes it: zero for the lanes of
    /// the providers this replica has; one of its polls for the others' lane, so a replica that
    /// has the provider gets a fresh message first.
    grace: time::Duration,
}

impl Worker {
    /// Deliver, and keep the database tidy, until `shutdown` fires.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(10));
        let configured = self.senders.configured();
        let mut lanes: Vec<Lane> = configured
            .iter()
            .map(|p| Lane {
                providers: vec![(*p).to_owned()],
                wakeup: Arc::new(Notify::new()),
                poll,
                grace: time::Duration::ZERO,
            })
            .collect();
        // Messages queued for a provider this replica does not have (another replica's, or one
        // since removed from the configuration): looked at rarely, and only once they have been
        // due for one of those looks, so a replica that has the provider sends a fresh one
        // first; they fail as "not configured" and end `dead` with that reason unless a replica
        // that has the provider takes them.
        let wakeups: Vec<Arc<Notify>> = lanes.iter().map(|l| l.wakeup.clone()).collect();
        let rest: Vec<String> = all_providers().filter(|p| !configured.contains(p)).map(str::to_owned).collect();
        if !rest.is_empty() {
            let rare = poll * 20;
            let grace = time::Duration::try_from(rare).unwrap_or(time::Duration::seconds(20));
            lanes.push(Lane { providers: rest, wakeup: Arc::new(Notify::new()), poll: rare, grace });
        }
        let timeout = Duration::from_secs(self.config.send_timeout_secs.max(1));
        let events_http = match crate::events::client(timeout) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "outbox: cannot build the webhook client; events are not delivered");
                reqwest::Client::new()
            }
        };
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            clock: self.clock.clone(),
            keys: self.keys,
            senders: self.senders,
            config: self.config.clone(),
            auth: self.auth.clone(),
            events_http,
        });
        let mut tasks = JoinSet::new();
        for lane in lanes {
            tasks.spawn(lane.run(shared.clone(), shutdown.clone()));
        }
        // Event endpoints' lanes: each with its own wake-up and stop signal.
        let mut event_lanes: HashMap<String, (Arc<Notify>, watch::Sender<bool>)> = HashMap::new();
        sync_event_lanes(&shared, &mut event_lanes, &mut tasks, poll).await;
        let mut last_purge = self.clock.now();
        let mut last_sweep = self.clock.now();
        loop {
            tokio::select! {
                _ = self.wakeup.notified() => {
                    // One queued message wakes every lane; each claims only its own. (No
                    // `continue`: under steady traffic the housekeeping below must still run.)
                    for w in wakeups.iter().chain(event_lanes.values().map(|(w, _)| w)) {
                        w.notify_one();
                    }
                }
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            sync_event_lanes(&shared, &mut event_lanes, &mut tasks, poll).await;
            let now = self.clock.now();
            if now - last_sweep >= time::Duration::minutes(1) {
                last_sweep = now;
                sweep_abandoned(&self.auth).await;
            }
            if now - last_purge > time::Duration::hours(1) {
                last_purge = now;
                if let Err(e) = self.store.purge(now - time::Duration::days(1)).await {
                    tracing::warn!(error = %e, "purge failed");
                }
            }
        }
        for (_, stop) in event_lanes.values() {
            let _ = stop.send(true);
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// Start a lane for every event endpoint that has none, and stop those whose endpoint is gone
/// (its undelivered events were deleted with it).
async fn sync_event_lanes(
    shared: &Arc<Shared>,
    lanes: &mut HashMap<String, (Arc<Notify>, watch::Sender<bool>)>,
    tasks: &mut JoinSet<()>,
    poll: Duration,
) {
    let endpoints = match shared.auth.webhook_endpoints().await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "outbox: cannot read the webhook endpoints");
            return;
        }
    };
    let providers: HashSet<String> = endpoints.iter().map(|e| e.provider()).collect();
    lanes.retain(|p, (_, stop)| {
        let keep = providers.contains(p);
        if !keep {
            let _ = stop.send(true);
        }
        keep
    });
    for p in providers {
        if lanes.contains_key(&p) {
            continue;
        }
        let (stop, stopped) = watch::channel(false);
        let wakeup = Arc::new(Notify::new());
        let lane = Lane { providers: vec![p.clone()], wakeup: wakeup.clone(), poll, grace: time::Duration::ZERO };
        tasks.spawn(lane.run(shared.clone(), stopped));
        wakeup.notify_one();
        lanes.insert(p, (wakeup, stop));
    }
}

/// Count flows that expired at a step as `abandoned` there, so operators see where users drop
/// off. The store hands each expired flow to one replica.
pub async fn sweep_abandoned(auth: &latchkey_core::Auth) {
    loop {
        match auth.sweep_expired_flows(500).await {
            Ok(events) => {
                for e in &events {
                    metrics::counter!("latchkey_flow_steps_total", "step" => e.step, "outcome" => e.outcome)
                        .increment(1);
                }
                if events.len() < 500 {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "sweeping expired flows failed");
                return;
            }
        }
    }
}

impl Lane {
    /// Claims in batches and sends from a local queue: up to `2 × concurrency` messages are
    /// held (claimed, their leases renewed) and topped up when half have finished, so a busy
    /// lane writes one claim per batch, not one per message.
    async fn run(self, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
        let concurrency = shared.config.concurrency.max(1);
        let target = concurrency * 2;
        let slots = Arc::new(Semaphore::new(concurrency));
        // Every message this lane holds, queued or being sent: their leases are renewed.
        let held: Arc<Mutex<HashSet<MessageId>>> = Arc::default();
        let mut queue: VecDeque<OutboxMessage> = VecDeque::new();
        let lease = shared.lease();
        // Renewed three times per lease, so one slow database round trip does not lose it.
        let mut renew = tokio::time::interval((lease / 3).max(Duration::from_millis(100)));
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sends = JoinSet::new();
        loop {
            let holding = queue.len() + sends.len();
            let mut full_batch = false;
            if holding <= concurrency {
                let mut room = target - holding;
                for provider in &self.providers {
                    if room == 0 {
                        break;
                    }
                    let limit = u32::try_from(room).unwrap_or(u32::MAX);
                    // Due `grace` ago, leased until `lease` from now.
                    let due_by = shared.clock.now() - self.grace;
                    // Each claim is a write to the database, found something or not: the count
                    // shows a worker woken for nothing.
                    metrics::counter!("latchkey_outbox_claims_total", "provider" => provider.clone()).increment(1);
                    match shared.store.claim_outbox(provider, due_by, limit, shared.lease_time() + self.grace).await {
                        Ok(batch) => {
                            full_batch |= batch.len() == room;
                            room -= batch.len();
                            if let Ok(mut set) = held.lock() {
                                set.extend(batch.iter().map(|m| m.id));
                            }
                            queue.extend(batch);
                        }
                        Err(e) => tracing::error!(error = %e, provider, "outbox: database unavailable"),
                    }
                }
            }
            while let Some(m) = queue.pop_front() {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    queue.push_front(m);
                    break;
                };
                let (shared, holding) = (shared.clone(), Holding { id: m.id, held: held.clone() });
                sends.spawn(async move {
                    shared.deliver(m).await;
                    // Released even if the send panicked: a message nobody is sending must not
                    // have its lease renewed for ever.
                    drop(holding);
                    drop(permit);
                });
            }
            if full_batch && queue.len() + sends.len() <= concurrency {
                // More may be due and there is room: claim again at once.
                continue;
            }
            tokio::select! {
                _ = self.wakeup.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
                Some(_) = sends.join_next(), if !sends.is_empty() => {}
                _ = renew.tick() => shared.renew(&held).await,
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
        }
        // Sends in flight get a moment to finish. The rest, and the queued messages, keep their
        // claim until the lease ends and another worker sends them (delivery is at least once).
        let grace = Duration::from_secs(shared.config.send_timeout_secs.min(5));
        let _ = tokio::time::timeout(grace, async { while sends.join_next().await.is_some() {} }).await;
        sends.abort_all();
    }
}

/// A message this lane holds; dropping it stops its lease's renewal.
struct Holding {
    id: MessageId,
    held: Arc<Mutex<HashSet<MessageId>>>,
}

impl Drop for Holding {
    fn drop(&mut self) {
        if let Ok(mut set) = self.held.lock() {
            set.remove(&self.id);
        }
    }
}

impl Shared {
    fn lease(&self) -> Duration {
        Duration::from_secs(self.config.lease_secs.max(1))
    }

    fn lease_time(&self) -> time::Duration {
        time::Duration::seconds(i64::try_from(self.config.lease_secs.max(1)).unwrap_or(60))
    }

    async fn renew(&self, held: &Mutex<HashSet<MessageId>>) {
        let ids: Vec<MessageId> = match held.lock() {
            Ok(set) => set.iter().copied().collect(),
            Err(_) => return,
        };
        if ids.is_empty() {
            return;
        }
        let until = self.clock.now() + self.lease_time();
        if let Err(e) = self.store.renew_outbox(&ids, until).await {
            tracing::warn!(error = %e, "outbox: cannot renew leases; another worker may send these messages too");
        }
    }

    async fn send(&self, m: &OutboxMessage, body: &str, now_unix: i64) -> Result<(), Failure> {
        if !m.provider.starts_with(latchkey_core::events::PROVIDER_PREFIX) {
            return self.senders.send(m, body, now_unix).await;
        }
        let endpoints = self.auth.webhook_endpoints().await.map_err(|e| Failure::retry(e.to_string()))?;
        let endpoint = endpoints
            .iter()
            .find(|e| e.id == m.to)
            .ok_or_else(|| Failure::retry(format!("endpoint {} is gone", m.to)))?;
        crate::events::send(&self.events_http, endpoint, m, body, now_unix).await.map_err(Failure::retry)
    }

    async fn deliver(&self, m: OutboxMessage) {
        let now = self.clock.now();
        let body = m
            .body_sealed
            .as_deref()
            .ok_or_else(|| "message has no body".to_owned())
            .and_then(|s| self.keys.open(&m.id.to_string(), s).map_err(|e| e.to_string()))
            .and_then(|b| String::from_utf8(b).map_err(|e| e.to_string()));
        let deadline = Duration::from_secs(self.config.send_timeout_secs.max(1));
        let result = match body {
            Ok(body) => {
                tokio::time::timeout(deadline, self.send(&m, &body, now.unix_timestamp())).await.unwrap_or_else(|_| {
                    Err(Failure::retry(format!("{}: no answer within {} s", m.provider, deadline.as_secs())))
                })
            }
            Err(e) => Err(Failure::retry(format!("cannot open message body: {e}"))),
        };
        // Times are the attempt's start, as they always were: the retry is due `backoff` after
        // it began (a send that used its whole deadline is tried again sooner), and a test's
        // fake clock moved while a send is in flight cannot push the retry out of reach.
        let marked = match result {
            Ok(()) => {
                // The development outbox keeps a message; it is not counted as sent.
                let outcome = if m.provider == DEV { "kept" } else { "sent" };
                count(&m, outcome);
                self.store.outbox_sent(m.id, now, m.provider == DEV).await
            }
            Err(Failure { reason: e, permanent }) => {
                let retry = (!permanent && m.attempts < self.config.max_attempts)
                    .then(|| now + backoff(&self.config, m.attempts));
                count(&m, if retry.is_some() { "retry" } else { "dead" });
                tracing::warn!(message_id = %m.id, channel = %m.channel, provider = %m.provider, attempts = m.attempts, error = %e, will_retry = retry.is_some(), "delivery failed");
                self.store.outbox_failed(m.id, &e, retry).await
            }
        };
        if let Err(e) = marked {
            // The lease runs out and the message is tried again: at least once, never lost.
            tracing::error!(message_id = %m.id, error = %e, "outbox: cannot record the delivery outcome");
        }
    }
}

fn count(m: &OutboxMessage, outcome: &'static str) {
    metrics::counter!(
        "latchkey_outbox_messages_total",
        "channel" => m.channel.clone(),
        "provider" => m.provider.clone(),
        "outcome" => outcome
    )
    .increment(1);
}
