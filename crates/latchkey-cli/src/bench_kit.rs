//! What the load generators share: the target, accounts made through the development outbox,
//! the driver that runs workers and the one-line JSON report.

use anyhow::Context;
use clap::Args;
use latchkey_client::Client;
use latchkey_proto::{NextStep, SignUpRequest};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The server a load generator drives, and how hard.
#[derive(Args)]
pub(crate) struct Target {
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// The server's data directory (to read codes from its development outbox).
    #[arg(long, default_value = "./latchkey-data")]
    pub(crate) data_dir: PathBuf,
    /// The server's database, if not the default SQLite file in the data directory.
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// Concurrent workers, each with its own account (at most the per-IP send limit, 20 by
    /// default, unless the server raises it as bench/sign-in.sh does).
    #[arg(long, default_value_t = 8)]
    pub(crate) concurrency: usize,
    /// Seconds to run after a 2-second warm-up.
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u64,
    /// The server's process id, on this machine: the report then gives the server's CPU time
    /// per operation over the measured window alone (`bench/sign-in.sh` passes it).
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
}

/// The server process the measured window's CPU is read from (`--server-pid`).
pub(crate) static SERVER_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
/// The server's CPU seconds over the last measured window.
static WINDOW_CPU: std::sync::Mutex<Option<f64>> = std::sync::Mutex::new(None);

/// The server's user and system CPU time so far, in seconds (`/proc/<pid>/stat`, whose clock
/// ticks are Linux's fixed USER_HZ, 100 a second).
fn server_cpu_secs() -> Option<f64> {
    let pid = SERVER_PID.get()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Reads codes from a server's development outbox.
pub(crate) struct Outbox {
    db: latchkey_store::Database,
    keys: latchkey_core::crypto::Keys,
    data_dir: PathBuf,
}

impl Outbox {
    pub(crate) async fn open(data_dir: &std::path::Path, database_url: Option<String>) -> anyhow::Result<Self> {
        let config =
            latchkey_server::config::Config { data_dir: data_dir.to_owned(), database_url, ..Default::default() };
        let (ring, _) = latchkey_server::keys::load(data_dir, false)?;
        let open = latchkey_store::OpenOptions { existing_only: true, ..Default::default() };
        let db = latchkey_store::Database::open(&config.database_url(), &open).await?;
        Ok(Self { db, keys: ring.keys, data_dir: data_dir.to_owned() })
    }

    /// The server's store (the benchmarks' fast paths write to it directly).
    pub(crate) fn store(&self) -> std::sync::Arc<dyn latchkey_core::store::Store> {
        self.db.store()
    }

    /// The newest 6-digit code sent to `to`.
    pub(crate) async fn code_for(&self, to: &str) -> anyhow::Result<String> {
        let messages =
            latchkey_server::outbox::read(self.db.store().as_ref(), &self.keys, latchkey_server::delivery::DEV).await?;
        let body = messages.iter().rev().find(|m| m.to == to).map(|m| m.body.clone()).ok_or_else(|| {
            anyhow::anyhow!("no code for {to} in the development outbox of {}", self.data_dir.display())
        })?;
        Ok(code_in(&body))
    }

    /// The newest 6-digit code sent to each recipient.
    pub(crate) async fn codes(&self) -> anyhow::Result<std::collections::HashMap<String, String>> {
        let messages =
            latchkey_server::outbox::read(self.db.store().as_ref(), &self.keys, latchkey_server::delivery::DEV).await?;
        // Oldest first: a later message to the same recipient replaces an earlier one.
        Ok(messages.iter().map(|m| (m.to.clone(), code_in(&m.body))).collect())
    }
}

/// The code in a message's body ("… 123456. …").
fn code_in(body: &str) -> String {
    body.split_whitespace()
        .find(|w| w.len() == 7 && w.ends_with('.') && w[..6].bytes().all(|b| b.is_ascii_digit()))
        .map(|w| w[..6].to_owned())
        .unwrap_or_default()
}

/// The password every bench account has.
pub(crate) const PASSWORD: &str = "bench-password-not-common-7";

/// A distinct phone number per worker and run: +1 555 01xx xxxx style, never a real one.
pub(crate) fn bench_phone(run_id: &str, i: usize) -> anyhow::Result<String> {
    Ok(format!("+1555{:07}", (u32::from_str_radix(&run_id[24..30], 16)? % 9_000 + 1_000) * 100 + i as u32 % 100))
}

/// A confirmed account with [`PASSWORD`] and an email address, signed up through `client`.
pub(crate) async fn password_account(outbox: &Outbox, client: &Client, username: &str) -> anyhow::Result<()> {
    let email = format!("{username}@bench.invalid");
    let req = SignUpRequest {
        username: username.into(),
        password: Some(PASSWORD.into()),
        email: Some(email.clone()),
        phone: None,
        locale: None,
    };
    let answer = client.sign_up(&req).await?;
    let done = client.confirm_sign_up(&answer.flow_id, &outbox.code_for(&email).await?).await?;
    anyhow::ensure!(done.next_step == NextStep::Done, "confirming {username} failed: {:?}", done.next_step);
    Ok(())
}

/// Run one task per worker, each calling `once` in a loop for a 2-second warm-up and then
/// `seconds`; returns the latencies of the successful calls in the measured window and the
/// number of failures.
pub(crate) async fn drive<W, F, Fut>(workers: Vec<W>, seconds: u64, once: F) -> anyhow::Result<(Vec<Duration>, u64)>
where
    W: Send + Sync + 'static,
    F: Fn(std::sync::Arc<W>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let warm_until = Instant::now() + Duration::from_secs(2);
    let end = warm_until + Duration::from_secs(seconds);
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(warm_until.into()).await;
        let before = server_cpu_secs();
        tokio::time::sleep_until(end.into()).await;
        let used = server_cpu_secs().zip(before).map(|(after, before)| after - before);
        if let Ok(mut w) = WINDOW_CPU.lock() {
            *w = used;
        }
    });
    let mut tasks = vec![];
    for w in workers {
        let (w, once) = (std::sync::Arc::new(w), once.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (vec![], 0u64);
            while Instant::now() < end {
                let t = Instant::now();
                let ok = once(w.clone()).await;
                if t >= warm_until {
                    if ok { lat.push(t.elapsed()) } else { errors += 1 }
                }
            }
            (lat, errors)
        }));
    }
    sampler.await?;
    let (mut all, mut errors) = (vec![], 0);
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    Ok((all, errors))
}

/// The CPU an operation cannot do without on this machine, in µs, from the physical floor of
/// DEPENDENCIES.md (one core, release build): a request 7, a point read 5, a commit at
/// `synchronous=NORMAL` 18, a P-256 verify 58, an ES256 JWT signed 28 or verified 56, an
/// Argon2id OWASP hash 16,000. The report's `floor_ratio` is the measured server CPU per
/// operation over it (docs/benchmarks.md, "Floors").
fn floor_us(bench: &str, extra: &str) -> Option<f64> {
    Some(match bench {
        // A request, three reads (the flow, the account, its factors), one commit, one JWT.
        "totp-step" | "code-step" => 7.0 + 3.0 * 5.0 + 18.0 + 28.0,
        // Two requests (nonce, signature), three reads, one P-256 verify, two commits, one JWT.
        "device-sign-in" if extra.contains("\"pin\"") => 150.0 + 16_000.0,
        "device-sign-in" => 150.0,
        // A password request, one hash, one commit, one JWT.
        "sign-in" => 16_000.0 + 7.0 + 5.0 + 18.0 + 28.0,
        // Five requests (sign-in, choose push, the phone's fetch and answer, the wait), two
        // P-256 verifies (signed fetch, approval), four commits, one JWT.
        "push-approval" => 5.0 * 7.0 + 2.0 * 58.0 + 4.0 * 18.0 + 28.0,
        // A request, the token's read, one commit, one JWT; DPoP adds a verify and a commit.
        "refresh" if extra.contains("dpop") => 7.0 + 5.0 + 18.0 + 28.0 + 58.0 + 18.0,
        "refresh" => 7.0 + 5.0 + 18.0 + 28.0,
        // A request, a JWT verified, the session read; DPoP adds a verify and a commit.
        "me" if extra.contains("dpop") => 7.0 + 56.0 + 5.0 + 58.0 + 18.0,
        "me" => 7.0 + 56.0 + 5.0,
        _ => return None,
    })
}

/// Latencies of the measured window, and the errors, into one JSON line.
pub(crate) fn report(bench: &str, extra: &str, mut all: Vec<Duration>, errors: u64, concurrency: usize, seconds: u64) {
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    // The server's CPU over the measured window, per operation (with `--server-pid`).
    let cpu = WINDOW_CPU.lock().ok().and_then(|w| *w).filter(|_| !all.is_empty());
    let floor = floor_us(bench, extra);
    let cpu = match (cpu, floor) {
        (Some(secs), Some(floor)) => format!(
            ",\"server_cpu_ms_per_operation\":{:.3},\"floor_us\":{floor:.0},\"floor_ratio\":{:.1}",
            secs * 1000.0 / all.len() as f64,
            secs * 1e6 / all.len() as f64 / floor
        ),
        (Some(secs), None) => format!(",\"server_cpu_ms_per_operation\":{:.3}", secs * 1000.0 / all.len() as f64),
        (None, _) => String::new(),
    };
    println!(
        "{{\"bench\":\"{bench}\",{extra}\"concurrency\":{concurrency},\"seconds\":{seconds},\"operations\":{},\"errors\":{errors},\"per_second\":{:.1},\"p50_ms\":{:.2},\"p90_ms\":{:.2},\"p99_ms\":{:.2},\"p99_9_ms\":{:.2}{cpu}}}",
        all.len(),
        all.len() as f64 / seconds as f64,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999)
    );
}

/// A passwordless account with one software device enrolled with `pin`: the client, the
/// device's id and its key store, and the enrolment's tokens (a device session, DPoP-bound).
pub(crate) async fn device_account(
    outbox: &Outbox,
    url: &str,
    run_id: &str,
    i: usize,
    pin: &str,
) -> anyhow::Result<((Client, String, latchkey_client::SoftwareKeystore), latchkey_proto::Tokens)> {
    let client = Client::with_user_agent(url, "latchkey-bench")?;
    let username = format!("dev-{}-{i}", &run_id[20..]);
    let phone = bench_phone(run_id, i)?;
    let answer = client
        .sign_up(&SignUpRequest {
            username: username.clone(),
            password: None,
            email: Some(format!("{username}@bench.invalid")),
            phone: Some(phone.clone()),
            locale: None,
        })
        .await?;
    let mut enroll = client.confirm_sign_up(&answer.flow_id, &outbox.code_for(&phone).await?).await?;
    // A passwordless sign-up with an email verifies it before the first device.
    if matches!(enroll.next_step, NextStep::VerifyCode { .. }) {
        let email = format!("{username}@bench.invalid");
        enroll = client.verify_code(&enroll.flow_id, &outbox.code_for(&email).await?).await?;
    }
    let keystore = latchkey_client::SoftwareKeystore::new();
    let (device_id, done) = client.enroll_device_step(&enroll, &keystore, "bench", "cli", pin).await?;
    let tokens = done.tokens.with_context(|| format!("enrolling {username}'s device failed: {:?}", done.next_step))?;
    Ok(((client, device_id, keystore), tokens))
}
