//! Token benchmarks (issue 17, item 1): refreshing a session's tokens and `GET /v1/me`, for a
//! password session (bearer tokens) and a device session (DPoP-bound tokens, a proof on every
//! request).

use crate::bench_kit::{Outbox, PASSWORD, Target, device_account, drive, password_account, report};
use anyhow::Context;
use latchkey_client::Client;
use latchkey_proto::Tokens;
use std::sync::{Arc, Mutex};

/// One client per worker, signed in with `binding`'s kind of session.
async fn sessions(target: &Target, binding: &str) -> anyhow::Result<Vec<(Client, Mutex<Tokens>)>> {
    let outbox = Outbox::open(&target.data_dir, target.database_url.clone()).await?;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let mut out = vec![];
    for i in 0..target.concurrency {
        let (client, tokens) = match binding {
            "bearer" => {
                let client = Client::with_user_agent(&target.url, "latchkey-bench")?;
                let username = format!("tok-{}-{i}", &run_id[20..]);
                password_account(&outbox, &client, &username).await?;
                let t = client.sign_in(&username, PASSWORD).await?.tokens.context("the sign-in gave no tokens")?;
                (client, t)
            }
            "dpop" => {
                let ((client, device_id, keystore), t) =
                    device_account(&outbox, &target.url, &run_id, i, "371946").await?;
                (client.with_device_key(Arc::new(keystore), &device_id)?, t)
            }
            other => anyhow::bail!("--binding must be bearer or dpop, not {other}"),
        };
        out.push((client, Mutex::new(tokens)));
    }
    eprintln!("bench: {} {binding} sessions ready; warming up 2 s, then measuring {} s", out.len(), target.seconds);
    Ok(out)
}

/// `POST /v1/token` with `grant_type=refresh_token`, each worker using the refresh token the
/// last refresh returned.
pub async fn refresh(target: Target, binding: &str) -> anyhow::Result<()> {
    let workers = sessions(&target, binding).await?;
    let (all, errors) = drive(workers, target.seconds, |w| async move {
        let (client, tokens) = w.as_ref();
        let current = tokens.lock().map(|t| t.refresh_token.clone()).unwrap_or_default();
        match client.refresh(&current).await {
            Ok(fresh) => tokens.lock().map(|mut t| *t = fresh).is_ok(),
            Err(_) => false,
        }
    })
    .await?;
    report("refresh", &format!("\"binding\":\"{binding}\","), all, errors, target.concurrency, target.seconds);
    Ok(())
}

/// `GET /v1/me` with each worker's access token.
pub async fn me(target: Target, binding: &str) -> anyhow::Result<()> {
    let workers = sessions(&target, binding).await?;
    let (all, errors) = drive(workers, target.seconds, |w| async move {
        let (client, tokens) = w.as_ref();
        let access = tokens.lock().map(|t| t.access_token.clone()).unwrap_or_default();
        client.me(&access).await.is_ok()
    })
    .await?;
    report("me", &format!("\"binding\":\"{binding}\","), all, errors, target.concurrency, target.seconds);
    Ok(())
}
