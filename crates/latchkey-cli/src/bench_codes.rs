//! The SMS or email code step that completes a sign-in (issue 17, item 1), measured alone:
//! accounts with a verified phone (SMS) or address (email) are imported and given an active
//! SMS or email factor straight in the database (the benchmarks' fast path: enrolling thousands
//! through the API would take longer than the measurement; never a production path), their
//! password steps run first (each asks for its one-time code, sent to the development outbox),
//! the codes are read from the outbox once, and the measured window only answers `sms_code` or
//! `email_code` steps — each flow once.

use crate::bench_kit::{Outbox, Target, drive, report};
use crate::bench_totp::{PASSWORD, bench_password_hash, import};
use latchkey_client::Client;
use latchkey_core::ids::FactorId;
use latchkey_core::model::Factor;
use latchkey_core::store::{Batch, Write};
use latchkey_proto::{MfaMethod, NextStep};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Sign-ins waiting at their code step: the flow, and its account's address or number.
type Prepared = Arc<Mutex<Vec<(String, String)>>>;

/// Import `flows` accounts, run their password steps, then answer the code steps.
pub async fn run(target: Target, channel: &str, flows: usize) -> anyhow::Result<()> {
    let (method, channel) = match channel {
        "sms" => (MfaMethod::Sms, "sms"),
        "email" => (MfaMethod::Email, "email"),
        other => anyhow::bail!("--channel must be sms or email, not {other}"),
    };
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    // Distinct numbers across the runs against one server: three digits of the run, six of the
    // account (+1 555: never a real one).
    let run_n = u32::from_str_radix(&run_id[26..32], 16)? % 1000;
    let hash = bench_password_hash()?;
    let mut recipients = Vec::with_capacity(flows);
    let mut rows = Vec::with_capacity(flows);
    for i in 0..flows {
        let username = format!("code-{}-{i}", &run_id[20..]);
        let email = format!("{username}@bench.invalid");
        let mut row =
            serde_json::json!({ "username": username, "email": email, "email_verified": true, "password_hash": hash });
        if method == MfaMethod::Sms {
            let phone = format!("+1555{run_n:03}{i:06}");
            row["phone"] = phone.clone().into();
            row["phone_verified"] = true.into();
            recipients.push(phone);
        } else {
            recipients.push(email);
        }
        rows.push(row);
    }
    import(&target, &rows)?;
    let outbox = Outbox::open(&target.data_dir, target.database_url.clone()).await?;
    let store = outbox.store();
    let now = time::OffsetDateTime::now_utc();
    for chunk in (0..flows).collect::<Vec<_>>().chunks(500) {
        let mut writes = Vec::with_capacity(chunk.len());
        for i in chunk {
            let username = format!("code-{}-{i}", &run_id[20..]);
            let user = store
                .user_by_username(&latchkey_core::identity::canonical_username(&username))
                .await?
                .ok_or_else(|| anyhow::anyhow!("{username} was not imported"))?;
            writes.push(Write::InsertFactor(Factor {
                id: FactorId::new(),
                user_id: user.id,
                kind: channel.to_owned(),
                state: "active".into(),
                secret_sealed: None,
                last_step: None,
                created_at: now,
                last_used_at: None,
            }));
        }
        store.apply(Batch(writes)).await?;
    }

    // The password steps, `concurrency` at a time: each leaves a flow at its code step.
    eprintln!("bench: {flows} accounts imported; preparing their {channel} code steps");
    let waiting: Prepared = Arc::new(Mutex::new(Vec::with_capacity(flows)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let recipients = Arc::new(recipients);
    let mut tasks = vec![];
    for _ in 0..target.concurrency {
        let (waiting, next, recipients, run_id) = (waiting.clone(), next.clone(), recipients.clone(), run_id.clone());
        let client = Client::with_user_agent(&target.url, "latchkey-bench")?;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(to) = recipients.get(i) else { return Ok::<_, anyhow::Error>(()) };
                let username = format!("code-{}-{i}", &run_id[20..]);
                let mut a = client.sign_in(&username, PASSWORD).await?;
                if matches!(a.next_step, NextStep::SelectMfa { .. }) {
                    a = client.select_mfa(&a.flow_id, method).await?;
                }
                anyhow::ensure!(
                    matches!(
                        (&a.next_step, method),
                        (NextStep::SmsCode { .. }, MfaMethod::Sms) | (NextStep::EmailCode { .. }, MfaMethod::Email)
                    ),
                    "{username}: expected a {channel} code step, got {}",
                    a.next_step.name()
                );
                if let Ok(mut w) = waiting.lock() {
                    w.push((a.flow_id, to.clone()));
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    // Every code, read from the development outbox once.
    let codes: HashMap<String, String> = outbox.codes().await?;
    let queue: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(
        waiting
            .lock()
            .map_err(|_| anyhow::anyhow!("a preparing worker failed"))?
            .iter()
            .filter_map(|(flow, to)| codes.get(to).map(|code| (flow.clone(), code.clone())))
            .collect(),
    ));
    let ready = queue.lock().map(|q| q.len()).unwrap_or(0);
    anyhow::ensure!(ready == flows, "only {ready} of {flows} codes found in the development outbox");
    // The server's delivery worker passes each queued message on (to its log, here): let it
    // finish, or the measured window would share the core with that backlog.
    for _ in 0..600 {
        let backlog = store.outbox_backlog().await?;
        if backlog.iter().all(|b| b.status == latchkey_core::model::OutboxStatus::Dead || b.count == 0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    eprintln!("bench: {flows} {channel} code steps ready; warming up 2 s, then measuring {} s", target.seconds);
    let workers: Vec<(Client, Prepared)> = (0..target.concurrency)
        .map(|_| Ok((Client::with_user_agent(&target.url, "latchkey-bench")?, queue.clone())))
        .collect::<anyhow::Result<_>>()?;
    let (all, errors) = drive(workers, target.seconds, move |w| async move {
        let (client, queue) = w.as_ref();
        let Some((flow_id, code)) = queue.lock().ok().and_then(|mut q| q.pop()) else {
            // Every prepared step is spent: raise --flows.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            return false;
        };
        let answer = match method {
            MfaMethod::Sms => client.sms_code(&flow_id, &code).await,
            _ => client.email_code(&flow_id, &code).await,
        };
        matches!(answer, Ok(a) if a.tokens.is_some())
    })
    .await?;
    let left = queue.lock().map(|q| q.len()).unwrap_or(0);
    anyhow::ensure!(left > 0, "every prepared step was used: run again with more --flows");
    report("code-step", &format!("\"channel\":\"{channel}\","), all, errors, target.concurrency, target.seconds);
    Ok(())
}
