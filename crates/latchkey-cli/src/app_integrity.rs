//! `latchkey app-integrity …`: try the genuine-app gate (`[policy.app_integrity]`,
//! docs/attestation.md) from a terminal. `play-keys` makes development Play Integrity keys and
//! prints the configuration that trusts them; `play-token` plays the genuine app on a genuine
//! device: a challenge from the server, a verdict for it minted as Google's servers mint them, the
//! header to send. Whoever holds the keys file can mint any verdict: development only.

use anyhow::Context;
use clap::Subcommand;
use latchkey_core::factors::play_dev::{DevPlayKeys, genuine_verdict};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum AppIntegrityCommand {
    /// Make development Play Integrity keys (kept in `--file`, mode 0600) and print the TOML
    /// configuration that trusts them, for `latchkey serve --config`.
    PlayKeys {
        /// The Android app's package name.
        #[arg(long, default_value = "com.example.app")]
        package: String,
        /// The requests to gate, comma-separated: sign_up, code_sends, device_enrollment, recovery.
        #[arg(long, value_delimiter = ',')]
        require: Vec<String>,
        /// Where the keys are kept.
        #[arg(long, default_value = "latchkey-play.json")]
        file: PathBuf,
    },
    /// Print a `Latchkey-App-Integrity` header value, `play <token>`: a verdict of the genuine
    /// app on a genuine device for a fresh challenge from the server. Each works once.
    PlayToken {
        /// The server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The keys `play-keys` made.
        #[arg(long, default_value = "latchkey-play.json")]
        file: PathBuf,
    },
}

pub async fn run(command: AppIntegrityCommand) -> anyhow::Result<()> {
    match command {
        AppIntegrityCommand::PlayKeys { package, require, file } => {
            let keys = DevPlayKeys::generate(&package).map_err(anyhow::Error::msg)?;
            let config = keys.config().map_err(anyhow::Error::msg)?;
            crate::device::write_private(&file, serde_json::to_string_pretty(&keys)?.as_bytes())
                .with_context(|| format!("cannot write {}", file.display()))?;
            let require: Vec<String> =
                require.iter().map(|r| serde_json::Value::from(r.as_str()).to_string()).collect();
            println!(
                "# Development Play Integrity keys: whoever holds {} can mint any verdict.\n\
                 # Never use them in production (docs/attestation.md).\n\
                 [policy.app_integrity]\nrequire = [{}]\n\n\
                 [policy.app_integrity.play]\npackage_name = {}\ndecryption_key = \"{}\"\nverification_key = \"{}\"",
                file.display(),
                require.join(", "),
                serde_json::Value::from(config.package_name),
                config.decryption_key,
                config.verification_key,
            );
            Ok(())
        }
        AppIntegrityCommand::PlayToken { url, file } => {
            let raw = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let keys: DevPlayKeys =
                serde_json::from_str(&raw).with_context(|| format!("{} is not a keys file", file.display()))?;
            let url = format!("{}/v1/app-integrity/challenge", url.trim_end_matches('/'));
            let r = reqwest::Client::new().post(&url).send().await.with_context(|| format!("cannot reach {url}"))?;
            let status = r.status();
            let body: serde_json::Value = r.json().await.context("the challenge is not JSON")?;
            let challenge = body["challenge"].as_str().with_context(|| format!("{status}: {body}"))?;
            let now_ms = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)?;
            let token =
                keys.token(&genuine_verdict(&keys.package_name, challenge, now_ms)).map_err(anyhow::Error::msg)?;
            println!("play {token}");
            Ok(())
        }
    }
}
