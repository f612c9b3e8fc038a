//! Load generators that drive real flows over HTTP through the SDK and report throughput and
//! latency percentiles. Measure with the server pinned to one core (see docs/benchmarks.md).

use clap::Subcommand;
use latchkey_client::Client;
use latchkey_proto::{NextStep, SignUpRequest};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// The cost of one Argon2id password verification with these parameters, on one thread: the
    /// floor of a password sign-in (use it to choose `argon2.*` for your hardware).
    Hash {
        /// Memory in KiB.
        #[arg(long, default_value_t = 19456)]
        m_kib: u32,
        /// Iterations.
        #[arg(long, default_value_t = 2)]
        t: u32,
        /// Lanes.
        #[arg(long, default_value_t = 1)]
        p: u32,
        /// Verifications to time.
        #[arg(long, default_value_t = 50)]
        count: u32,
    },
    /// Password sign-ins (username + password → tokens). Creates one user per worker first, reading
    /// confirmation codes from the server's development outbox (so run it against a server with
    /// no email provider, on this machine, with its data directory).
    SignIn {
        /// The server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The server's data directory (to read confirmation codes).
        #[arg(long, default_value = "./latchkey-data")]
        data_dir: PathBuf,
        /// The server's database, if not the default SQLite file in the data directory.
        #[arg(long)]
        database_url: Option<String>,
        /// Concurrent workers (one user each; at most the per-IP send limit, 20 by default).
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Seconds to run after a 2-second warm-up.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Hash { m_kib, t, p, count } => hash(m_kib, t, p, count).await,
        BenchCommand::SignIn { url, data_dir, database_url, concurrency, seconds } => {
            sign_in(url, data_dir, database_url, concurrency, seconds).await
        }
    }
}

async fn sign_in(
    url: String,
    data_dir: PathBuf,
    database_url: Option<String>,
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let config = latchkey_server::config::Config { data_dir: data_dir.clone(), database_url, ..Default::default() };
    let (ring, _) = latchkey_server::keys::load_or_create(&data_dir)?;
    let db = latchkey_store::Database::open(&config.database_url(), &Default::default()).await?;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let password = "bench-password-not-common-7";
    let mut users = vec![];
    for i in 0..concurrency {
        let client = Client::with_user_agent(&url, "latchkey-bench")?;
        let username = format!("bench-{}-{i}", &run_id[20..]);
        let email = format!("{username}@bench.invalid");
        let answer = client
            .sign_up(&SignUpRequest {
                username: username.clone(),
                password: Some(password.into()),
                email: Some(email.clone()),
                phone: None,
            })
            .await?;
        let messages =
            latchkey_server::outbox::read(db.store().as_ref(), &ring.keys, latchkey_server::delivery::DEV).await?;
        let body = messages.iter().rev().find(|m| m.to == email).map(|m| m.body.clone()).ok_or_else(|| {
            anyhow::anyhow!("no code for {email} in the development outbox of {}", data_dir.display())
        })?;
        let code: String = body
            .split_whitespace()
            .find(|w| w.len() == 7 && w.ends_with('.') && w[..6].bytes().all(|b| b.is_ascii_digit()))
            .map(|w| w[..6].to_owned())
            .unwrap_or_default();
        let done = client.confirm_sign_up(&answer.flow_id, &code).await?;
        anyhow::ensure!(done.next_step == NextStep::Done, "confirming {username} failed: {:?}", done.next_step);
        users.push((client, username));
    }
    eprintln!("bench: {concurrency} users ready; warming up 2 s, then measuring {seconds} s");
    let warm_until = Instant::now() + Duration::from_secs(2);
    let end = warm_until + Duration::from_secs(seconds);
    let mut tasks = vec![];
    for (client, username) in users {
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![];
            let mut errors = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                let ok = matches!(client.sign_in(&username, password).await, Ok(a) if a.tokens.is_some());
                if t >= warm_until {
                    if ok { lat.push(t.elapsed()) } else { errors += 1 }
                }
            }
            (lat, errors)
        }));
    }
    let mut all = vec![];
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    println!(
        "{{\"bench\":\"sign-in\",\"concurrency\":{concurrency},\"seconds\":{seconds},\"sign_ins\":{},\"errors\":{errors},\"per_second\":{:.1},\"p50_ms\":{:.2},\"p90_ms\":{:.2},\"p99_ms\":{:.2}}}",
        all.len(),
        all.len() as f64 / seconds as f64,
        pct(0.50),
        pct(0.90),
        pct(0.99)
    );
    Ok(())
}

async fn hash(m_kib: u32, t: u32, p: u32, count: u32) -> anyhow::Result<()> {
    use latchkey_core::password::{HashParams, SecretHasher};
    use latchkey_core::secret::{OsRandom, SecretBytes, SecretString};
    let hasher =
        SecretHasher::new(SecretBytes::new(vec![7; 32]), HashParams { m_kib, t, p }, 1, std::sync::Arc::new(OsRandom))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pw = SecretString::new("bench password");
    let phc = hasher.hash(&pw).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut times = vec![];
    for _ in 0..count.max(1) {
        let start = Instant::now();
        hasher.verify(&pw, Some(&phc)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{{\"bench\":\"hash\",\"m_kib\":{m_kib},\"t\":{t},\"p\":{p},\"count\":{},\"median_ms\":{median:.2},\"min_ms\":{:.2},\"max_ms\":{:.2},\"per_second_per_core\":{:.1}}}",
        times.len(),
        times[0],
        times[times.len() - 1],
        1000.0 / median
    );
    Ok(())
}
