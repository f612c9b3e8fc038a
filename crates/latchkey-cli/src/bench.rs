//! Load generators that drive real flows over HTTP through the SDK and report throughput and
//! latency percentiles. Measure with the server pinned to one core (see docs/benchmarks.md).

use crate::bench_kit::{Outbox, PASSWORD, Target, bench_phone, device_account, drive, password_account, report};
use anyhow::Context;
use clap::Subcommand;
use latchkey_client::Client;
use latchkey_proto::NextStep;
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
        #[command(flatten)]
        target: Target,
    },
    /// Device sign-ins (device id → nonce → signature → tokens): one passwordless account and
    /// one software device per worker, created first through the development outbox.
    DeviceSignIn {
        #[command(flatten)]
        target: Target,
        /// `biometric` (a signature only) or `pin` (a signature and the PIN: one Argon2id check).
        #[arg(long, default_value = "biometric")]
        unlock: String,
    },
    /// Push approvals with number matching: per worker, one account with a password, an SMS
    /// factor and an enrolled software phone (set up through the development outbox); then each
    /// cycle signs in with the password, chooses `push_approval`, has the phone fetch the approval
    /// (signed request) and approve it with the number (biometric-key signature), and collects
    /// the tokens with `GET /v1/flows/{id}?wait=5`. Run the server with Argon2 at its minimum
    /// and the push limits raised (`bench/sign-in.sh` does) to measure the push path.
    PushApproval {
        #[command(flatten)]
        target: Target,
    },
    /// The TOTP step that completes a sign-in, alone: `--flows` accounts with an authenticator
    /// app are imported into the server's database (`--data-dir`/`--database-url`), their
    /// password steps run first, and the measured window answers only `totp_code` steps, each
    /// once with its account's current code. Run the server with Argon2 at its minimum
    /// (`bench/sign-in.sh` does) so the preparation is quick.
    Totp {
        #[command(flatten)]
        target: Target,
        /// Sign-ins prepared at `totp_code`: more than the measured window can answer.
        #[arg(long, default_value_t = 20_000)]
        flows: usize,
        /// Only prepare: save the waiting steps to this file and measure nothing (then restart
        /// the server with its real Argon2 and measure them with `--prepared`).
        #[arg(long, conflicts_with = "prepared")]
        prepare_to: Option<PathBuf>,
        /// Measure the steps an earlier `--prepare-to` saved, preparing nothing.
        #[arg(long)]
        prepared: Option<PathBuf>,
    },
    /// The SMS or email code step that completes a sign-in, alone: `--flows` accounts with a
    /// verified phone (`--channel sms`) or address (`email`) are imported, their password steps
    /// run first with `acr_values=aal2` (the code goes to the development outbox, read once),
    /// and the measured window answers only the code steps, each once. Run the server with
    /// Argon2 at its minimum and the send limits raised (`bench/sign-in.sh` does).
    Code {
        #[command(flatten)]
        target: Target,
        /// `sms` or `email`.
        #[arg(long, default_value = "sms")]
        channel: String,
        /// Sign-ins prepared at their code step: more than the measured window can answer.
        #[arg(long, default_value_t = 20_000)]
        flows: usize,
    },
    /// Token refreshes (rotation with reuse detection): `--binding bearer` refreshes a password
    /// session's tokens; `dpop` a device session's, each refresh with a DPoP proof by the
    /// device's key (its `jti` recorded once).
    Refresh {
        #[command(flatten)]
        target: Target,
        /// `bearer` or `dpop`.
        #[arg(long, default_value = "bearer")]
        binding: String,
    },
    /// `GET /v1/me`: an access token verified (signature, session, account) and the profile
    /// read; `--binding dpop` with a device session's token and a DPoP proof on each request.
    Me {
        #[command(flatten)]
        target: Target,
        /// `bearer` or `dpop`.
        #[arg(long, default_value = "bearer")]
        binding: String,
    },
    /// Outbox drain rate: serves an SMS webhook on `--sink`, queues `--messages` SMS messages
    /// straight into the server's database (run the server with `sms_webhook_url =
    /// http://<sink>/sms`; bench/outbox.sh does) and reports the messages per second that arrive.
    Outbox {
        /// The server's data directory (its data key seals the messages).
        #[arg(long, default_value = "./latchkey-data")]
        data_dir: PathBuf,
        /// The server's database, if not the default SQLite file in the data directory.
        #[arg(long)]
        database_url: Option<String>,
        /// Where the SMS webhook the server delivers to listens.
        #[arg(long, default_value = "127.0.0.1:18182")]
        sink: String,
        /// Messages in the burst.
        #[arg(long, default_value_t = 2000)]
        messages: usize,
        /// How long the sink takes to answer each message (a real provider's round trip; an
        /// SMTP conversation with a hosted provider is 40 ms or more).
        #[arg(long, default_value_t = 40)]
        sink_latency_ms: u64,
    },
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let pid = match &cmd {
        BenchCommand::SignIn { target }
        | BenchCommand::DeviceSignIn { target, .. }
        | BenchCommand::PushApproval { target }
        | BenchCommand::Totp { target, .. }
        | BenchCommand::Code { target, .. }
        | BenchCommand::Refresh { target, .. }
        | BenchCommand::Me { target, .. } => target.server_pid,
        BenchCommand::Hash { .. } | BenchCommand::Outbox { .. } => None,
    };
    if let Some(pid) = pid {
        let _ = crate::bench_kit::SERVER_PID.set(pid);
    }
    match cmd {
        BenchCommand::Hash { m_kib, t, p, count } => hash(m_kib, t, p, count).await,
        BenchCommand::SignIn { target } => sign_in(target).await,
        BenchCommand::DeviceSignIn { target, unlock } => device_sign_in(target, &unlock).await,
        BenchCommand::PushApproval { target } => push_approval(target).await,
        BenchCommand::Totp { target, flows, prepare_to, prepared } => {
            crate::bench_totp::run(target, flows, prepare_to, prepared).await
        }
        BenchCommand::Code { target, channel, flows } => crate::bench_codes::run(target, &channel, flows).await,
        BenchCommand::Refresh { target, binding } => crate::bench_tokens::refresh(target, &binding).await,
        BenchCommand::Me { target, binding } => crate::bench_tokens::me(target, &binding).await,
        BenchCommand::Outbox { data_dir, database_url, sink, messages, sink_latency_ms } => {
            let latency = Duration::from_millis(sink_latency_ms);
            crate::bench_outbox::run(&data_dir, database_url, &sink, messages, latency).await
        }
    }
}

async fn device_sign_in(target: Target, unlock: &str) -> anyhow::Result<()> {
    let Target { url, data_dir, database_url, concurrency, seconds, .. } = target;
    use latchkey_client::Unlock;
    let pin_mode = match unlock {
        "biometric" => false,
        "pin" => true,
        other => anyhow::bail!("--unlock must be biometric or pin, not {other}"),
    };
    let outbox = Outbox::open(&data_dir, database_url).await?;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let pin = "371946";
    let mut devices = vec![];
    for i in 0..concurrency {
        devices.push(device_account(&outbox, &url, &run_id, i, pin).await?.0);
    }
    eprintln!("bench: {concurrency} devices ready; warming up 2 s, then measuring {seconds} s");
    let (all, errors) = drive(devices, seconds, move |w| async move {
        let (client, device_id, keystore) = w.as_ref();
        let how = if pin_mode { Unlock::Pin(pin) } else { Unlock::Biometric };
        matches!(client.device_sign_in(device_id, keystore, how).await, Ok(a) if a.tokens.is_some())
    })
    .await?;
    report("device-sign-in", &format!("\"unlock\":\"{unlock}\","), all, errors, concurrency, seconds);
    Ok(())
}

async fn push_approval(target: Target) -> anyhow::Result<()> {
    let Target { url, data_dir, database_url, concurrency, seconds, .. } = target;
    use latchkey_client::SoftwareKeystore;
    use latchkey_proto::{ApprovalDecision, MfaMethod};
    let outbox = Outbox::open(&data_dir, database_url).await?;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let mut accounts = vec![];
    for i in 0..concurrency {
        let screen = Client::with_user_agent(&url, "latchkey-bench")?;
        let username = format!("push-{}-{i}", &run_id[20..]);
        let phone_number = bench_phone(&run_id, i)?;
        password_account(&outbox, &screen, &username).await?;
        // aal2 (password + SMS) to enrol the phone.
        let t = screen.sign_in(&username, PASSWORD).await?.tokens.context("the first sign-in")?;
        let v = screen.enroll_sms(&t.access_token, Some(&phone_number)).await?;
        screen.verify_code(&v.flow_id, &outbox.code_for(&phone_number).await?).await?;
        let f = screen.sign_in(&username, PASSWORD).await?;
        let t = screen.sms_code(&f.flow_id, &outbox.code_for(&phone_number).await?).await?.tokens.context("aal2")?;
        let keystore = SoftwareKeystore::new();
        let (device_id, _) = screen.enroll_device(&t.access_token, &keystore, "bench", "cli", "371946").await?;
        let phone = screen.with_device_key(std::sync::Arc::new(keystore), &device_id)?;
        accounts.push((screen, phone, username));
    }
    eprintln!("bench: {concurrency} accounts with a phone ready; warming up 2 s, then measuring {seconds} s");
    let (all, errors) = drive(accounts, seconds, move |w| async move {
        let (screen, phone, username) = w.as_ref();
        let cycle = async {
            let a = screen.sign_in(username, PASSWORD).await?;
            let p = screen.select_mfa(&a.flow_id, MfaMethod::PushApproval).await?;
            let NextStep::PushApproval { number, .. } = p.next_step else { anyhow::bail!("no push_approval step") };
            let asked = phone.device_approvals().await?.approvals;
            let req = asked.first().context("the phone was not asked")?;
            phone.answer_approval(req, ApprovalDecision::Approve, Some(&number)).await?;
            Ok::<_, anyhow::Error>(screen.wait_flow(&a.flow_id, 5).await?.tokens.is_some())
        };
        cycle.await.unwrap_or(false)
    })
    .await?;
    report("push-approval", "", all, errors, concurrency, seconds);
    Ok(())
}

async fn sign_in(target: Target) -> anyhow::Result<()> {
    let Target { url, data_dir, database_url, concurrency, seconds, .. } = target;
    let outbox = Outbox::open(&data_dir, database_url).await?;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let mut users = vec![];
    for i in 0..concurrency {
        let client = Client::with_user_agent(&url, "latchkey-bench")?;
        let username = format!("bench-{}-{i}", &run_id[20..]);
        password_account(&outbox, &client, &username).await?;
        users.push((client, username));
    }
    eprintln!("bench: {concurrency} users ready; warming up 2 s, then measuring {seconds} s");
    let (all, errors) = drive(users, seconds, move |w| async move {
        let (client, username) = w.as_ref();
        matches!(client.sign_in(username, PASSWORD).await, Ok(a) if a.tokens.is_some())
    })
    .await?;
    report("sign-in", "", all, errors, concurrency, seconds);
    Ok(())
}

async fn hash(m_kib: u32, t: u32, p: u32, count: u32) -> anyhow::Result<()> {
    use latchkey_core::factors::password::{HashParams, SecretHasher};
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
