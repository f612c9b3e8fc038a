//! The TOTP step that completes a sign-in (issue 17, item 1), measured alone: accounts with an
//! authenticator app are imported (`latchkey import`, each with its own secret and a cheap
//! bcrypt hash of one password), their password steps are run first, and the measured window
//! only answers `totp_code` steps — each flow once, each account once, so no code repeats and the
//! server's replay refusal is never what is measured.

use crate::bench_kit::{Target, drive, report};
use latchkey_client::Client;
use latchkey_core::factors::totp::{TotpParams, totp_at};
use latchkey_proto::NextStep;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

pub(crate) const PASSWORD: &str = "bench-totp-password-7";

/// Sign-ins waiting at `totp_code`: the flow, and its account's TOTP secret.
type Prepared = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A bcrypt hash of [`PASSWORD`] at the lowest cost: imported accounts' password steps are
/// preparation, not what is measured.
pub(crate) fn bench_password_hash() -> anyhow::Result<String> {
    Ok(bcrypt::hash_with_salt(PASSWORD, 4, [7u8; 16])?.format_for_version(bcrypt::Version::TwoB))
}

/// Import `rows` into the target's database with `latchkey import` (the fast path).
pub(crate) fn import(target: &Target, rows: &[serde_json::Value]) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("latchkey-bench-import-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("accounts.jsonl");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for row in rows {
            writeln!(out, "{row}")?;
        }
    }
    let mut import = std::process::Command::new(std::env::current_exe()?);
    import.arg("import").arg("--data-dir").arg(&target.data_dir).arg(&file);
    if let Some(url) = &target.database_url {
        import.arg("--database-url").arg(url);
    }
    let status = import.stdout(std::process::Stdio::null()).status()?;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(status.success(), "importing the bench accounts failed");
    Ok(())
}

/// Import `flows` accounts, run their password steps, then answer the `totp_code` steps.
///
/// Split in two for a measurement beside a password storm (`bench/sign-in.sh`, `STORM=N`):
/// `prepare_to` runs the password steps (against a server whose Argon2 is at its minimum) and
/// saves the waiting steps to a file; `prepared` measures steps saved that way (against the
/// same database served with its real Argon2, so a storm beside it hashes at full cost).
pub async fn run(
    target: Target,
    flows: usize,
    prepare_to: Option<std::path::PathBuf>,
    prepared: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    if let Some(file) = prepared {
        return measure(&target, load(&file)?).await;
    }
    let queue = prepare(&target, flows).await?;
    match prepare_to {
        Some(file) => save(&file, &queue),
        None => measure(&target, queue).await,
    }
}

/// Write the prepared steps, one `flow_id base32-secret` line each.
fn save(file: &std::path::Path, queue: &Prepared) -> anyhow::Result<()> {
    let steps = queue.lock().map_err(|_| anyhow::anyhow!("the prepared steps' lock was poisoned"))?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    for (flow_id, secret) in steps.iter() {
        writeln!(out, "{flow_id} {}", data_encoding::BASE32_NOPAD.encode(secret))?;
    }
    out.flush()?;
    eprintln!("bench: {} totp_code steps saved to {}", steps.len(), file.display());
    Ok(())
}

/// Read steps written by [`save`].
fn load(file: &std::path::Path) -> anyhow::Result<Prepared> {
    let text = std::fs::read_to_string(file)?;
    let mut steps = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (flow_id, secret) =
            line.split_once(' ').ok_or_else(|| anyhow::anyhow!("{}: not a `flow_id secret` line", file.display()))?;
        steps.push((flow_id.to_owned(), data_encoding::BASE32_NOPAD.decode(secret.as_bytes())?));
    }
    anyhow::ensure!(!steps.is_empty(), "{}: no prepared steps", file.display());
    Ok(Arc::new(Mutex::new(steps)))
}

/// Import `flows` accounts with an authenticator app and run their password steps: each leaves
/// a sign-in waiting at `totp_code`.
async fn prepare(target: &Target, flows: usize) -> anyhow::Result<Prepared> {
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let hash = bench_password_hash()?;
    let mut secrets = Vec::with_capacity(flows);
    let mut rows = Vec::with_capacity(flows);
    for i in 0..flows {
        let n = u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes();
        let secret: Vec<u8> = uuid::Uuid::new_v4().as_bytes().iter().chain(&n).copied().collect();
        rows.push(serde_json::json!({
            "username": format!("totp-{}-{i}", &run_id[20..]),
            "email": format!("totp-{}-{i}@bench.invalid", &run_id[20..]),
            "email_verified": true,
            "password_hash": hash,
            "totp_secret": data_encoding::BASE32_NOPAD.encode(&secret),
        }));
        secrets.push(secret);
    }
    import(target, &rows)?;

    // The password steps, `concurrency` at a time: each leaves a flow at `totp_code`.
    eprintln!("bench: {flows} accounts imported; preparing their totp_code steps");
    let queue: Prepared = Arc::new(Mutex::new(Vec::with_capacity(flows)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let secrets = Arc::new(secrets);
    let mut tasks = vec![];
    for _ in 0..target.concurrency {
        let (queue, next, secrets, run_id) = (queue.clone(), next.clone(), secrets.clone(), run_id.clone());
        let client = Client::with_user_agent(&target.url, "latchkey-bench")?;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(secret) = secrets.get(i) else { return Ok::<_, anyhow::Error>(()) };
                let username = format!("totp-{}-{i}", &run_id[20..]);
                let a = client.sign_in(&username, PASSWORD).await?;
                anyhow::ensure!(
                    matches!(a.next_step, NextStep::TotpCode { .. }),
                    "{username}: expected totp_code, got {:?}",
                    a.next_step
                );
                if let Ok(mut q) = queue.lock() {
                    q.push((a.flow_id, secret.clone()));
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    eprintln!("bench: {flows} totp_code steps ready");
    Ok(queue)
}

/// Answer the prepared `totp_code` steps, each once with its account's current code.
async fn measure(target: &Target, queue: Prepared) -> anyhow::Result<()> {
    eprintln!("bench: warming up 2 s, then measuring {} s", target.seconds);
    let workers: Vec<(Client, Prepared)> = (0..target.concurrency)
        .map(|_| Ok((Client::with_user_agent(&target.url, "latchkey-bench")?, queue.clone())))
        .collect::<anyhow::Result<_>>()?;
    let (all, errors) = drive(workers, target.seconds, |w| async move {
        let (client, queue) = w.as_ref();
        let Some((flow_id, secret)) = queue.lock().ok().and_then(|mut q| q.pop()) else {
            // Every prepared step is spent: raise --flows.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            return false;
        };
        let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
        let code = totp_at(&secret, now, &TotpParams::default());
        matches!(client.totp_code(&flow_id, &code).await, Ok(a) if a.tokens.is_some())
    })
    .await?;
    let left = queue.lock().map(|q| q.len()).unwrap_or(0);
    anyhow::ensure!(left > 0, "every prepared step was used: run again with more --flows");
    report("totp-step", "", all, errors, target.concurrency, target.seconds);
    Ok(())
}
