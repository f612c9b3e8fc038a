//! `latchkey passkey …`: a software passkey authenticator (1Password's passkey-rs) playing the
//! platform, so passkeys can be tried from a terminal against a running server. It keeps one
//! passkey in a JSON file (mode 0600) and reports the origin it is given, as a browser would.

use anyhow::Context;
use clap::{Args, Subcommand};
use coset::CborSerializable;
use data_encoding::BASE64URL_NOPAD as B64;
use latchkey_client::Client;
use latchkey_proto::{FlowAnswer, NextStep};
use passkey::authenticator::{Authenticator, UiHint, UserCheck, UserValidationMethod};
use passkey::client::DefaultClientData;
use passkey::crypto::rust_crypto::RustCryptoBackend;
use passkey::types::Passkey;
use passkey::types::ctap2::{Aaguid, Ctap2Error};
use passkey::types::webauthn::{CredentialCreationOptions, CredentialRequestOptions};
use std::path::PathBuf;
use url::Url;

#[derive(Subcommand)]
pub enum PasskeyCommand {
    /// Register a passkey for the signed-in user (a session at aal2 from the last 10 minutes):
    /// `POST /v1/me/factors {"type":"passkey"}`, the ceremony, the answer. Keeps it in `--file`.
    Register {
        #[command(flatten)]
        common: PasskeyArgs,
        /// An access token of a session signed in at aal2 in the last 10 minutes.
        #[arg(long, env = "LATCHKEY_ACCESS_TOKEN")]
        access_token: String,
        /// The passkey's name.
        #[arg(long, default_value = "latchkey CLI")]
        name: String,
    },
    /// Sign in with the kept passkey and no username (`POST /v1/sign-in {"passkey":true}`).
    /// Prints the flow's final answer (tokens on success) as JSON.
    SignIn {
        #[command(flatten)]
        common: PasskeyArgs,
    },
}

#[derive(Args)]
pub struct PasskeyArgs {
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The origin the authenticator reports: one of `[policy.passkeys] origins` (whose default
    /// is `https://<rp_id>`).
    #[arg(long, default_value = "https://localhost")]
    origin: String,
    /// Where the passkey is kept.
    #[arg(long, default_value = "latchkey-passkey.json")]
    file: PathBuf,
}

/// The platform's user check: the user is present and verified (as after a PIN or biometric).
struct Unlocked;

#[async_trait::async_trait]
impl UserValidationMethod for Unlocked {
    type PasskeyItem = Passkey;

    async fn check_user<'a>(
        &self,
        _hint: UiHint<'a, Passkey>,
        presence: bool,
        verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        Ok(UserCheck { presence, verification })
    }

    fn is_verification_enabled(&self) -> Option<bool> {
        Some(true)
    }

    fn is_presence_enabled(&self) -> bool {
        true
    }
}

type Platform =
    passkey::client::Client<Option<Passkey>, Unlocked, RustCryptoBackend, public_suffix::PublicSuffixList, ()>;

fn platform(kept: Option<Passkey>) -> Platform {
    let mut auth = Authenticator::new(Aaguid::new_empty(), kept, Unlocked, RustCryptoBackend);
    auth.set_make_credentials_with_signature_counter(true);
    passkey::client::Client::new(auth).allows_insecure_localhost(true)
}

/// Run the `passkey` step's ceremony on `platform`: the credential as the platform returns it.
async fn ceremony(platform: &mut Platform, origin: &Url, step: &NextStep) -> anyhow::Result<serde_json::Value> {
    let NextStep::Passkey { ceremony, options, .. } = step else {
        anyhow::bail!("expected the passkey step, got {}", step.name());
    };
    let wrapped = serde_json::json!({ "publicKey": options });
    let credential = if ceremony == "create" {
        let req: CredentialCreationOptions = serde_json::from_value(wrapped)?;
        serde_json::to_value(
            platform.register(origin, req, DefaultClientData).await.map_err(|e| anyhow::anyhow!("{e:?}"))?,
        )?
    } else {
        let req: CredentialRequestOptions = serde_json::from_value(wrapped)?;
        let out = platform.authenticate(origin, req, DefaultClientData).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        serde_json::to_value(out)?
    };
    Ok(credential)
}

pub async fn run(command: PasskeyCommand) -> anyhow::Result<()> {
    match command {
        PasskeyCommand::Register { common, access_token, name } => {
            let (client, origin) = (Client::new(&common.url)?, Url::parse(&common.origin)?);
            let mut p = platform(None);
            let a = client.enroll_passkey(&access_token).await?;
            let credential = ceremony(&mut p, &origin, &a.next_step).await?;
            let done = client.passkey(&a.flow_id, credential, Some(&name)).await?;
            finish(&done)?;
            let kept = p.authenticator().store().clone().context("the authenticator kept no passkey")?;
            save(&common.file, &kept)?;
            println!("registered; passkey saved in {}", common.file.display());
        }
        PasskeyCommand::SignIn { common } => {
            let (client, origin) = (Client::new(&common.url)?, Url::parse(&common.origin)?);
            let mut p = platform(Some(load(&common.file)?));
            let a = client.sign_in_with_passkey().await?;
            let credential = ceremony(&mut p, &origin, &a.next_step).await?;
            let done = client.passkey(&a.flow_id, credential, None).await?;
            if let Some(kept) = p.authenticator().store().clone() {
                save(&common.file, &kept)?; // its counter moved on
            }
            println!("{}", serde_json::to_string_pretty(&done)?);
            finish(&done)?;
        }
    }
    Ok(())
}

fn finish(a: &FlowAnswer) -> anyhow::Result<()> {
    match (&a.next_step, &a.error) {
        (NextStep::Done, _) => Ok(()),
        (_, Some(e)) => anyhow::bail!("refused: {} ({})", e.code, e.message),
        (step, None) => anyhow::bail!("unexpected step {}", step.name()),
    }
}

fn save(path: &std::path::Path, k: &Passkey) -> anyhow::Result<()> {
    let key = k.key.clone().to_vec().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let doc = serde_json::json!({
        "rp_id": k.rp_id,
        "credential_id": B64.encode(&k.credential_id),
        "user_handle": k.user_handle.as_ref().map(|h| B64.encode(h)),
        "counter": k.counter,
        "key": B64.encode(&key),
    });
    crate::device::write_private(path, serde_json::to_string_pretty(&doc)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn load(path: &std::path::Path) -> anyhow::Result<Passkey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} (run `latchkey passkey register` first)", path.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)?;
    let bytes = |field: &str| -> anyhow::Result<Vec<u8>> {
        Ok(B64.decode(doc[field].as_str().with_context(|| format!("no {field} in the passkey file"))?.as_bytes())?)
    };
    let key = coset::CoseKey::from_slice(&bytes("key")?).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(Passkey {
        key,
        credential_id: bytes("credential_id")?.into(),
        rp_id: doc["rp_id"].as_str().context("no rp_id in the passkey file")?.to_owned(),
        user_handle: doc["user_handle"].as_str().map(|h| B64.decode(h.as_bytes())).transpose()?.map(Into::into),
        username: None,
        user_display_name: None,
        counter: doc["counter"].as_u64().map(u32::try_from).transpose()?,
        extensions: Default::default(),
    })
}
