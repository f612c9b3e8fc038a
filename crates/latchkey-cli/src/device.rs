//! `latchkey device …`: the SDK as a device emulator, so the passwordless journey can be tried from
//! a terminal against a running server. The software keys, and the tokens of the device's last
//! sign-in, are kept in a JSON file (mode 0600). The session is bound to the device's possession
//! key (DPoP), so `refresh` and `me` sign a proof with it, as an app does.

use anyhow::Context;
use clap::{Args, Subcommand};
use latchkey_client::{Client, SoftwareKeystore, Unlock};
use latchkey_proto::{ApprovalDecision, Channel, NextStep, SignUpRequest, StepAnswer, Tokens};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Enrol this emulated device: creates both keys and sets the PIN. Either from a recent aal2
    /// session (`--access-token`) or as the `enroll_device` step of a passwordless sign-up or a
    /// new-device sign-in (`--flow`; the device is then signed in).
    Enroll {
        #[command(flatten)]
        common: DeviceArgs,
        /// An access token of a session signed in at aal2 in the last 10 minutes.
        #[arg(long, env = "LATCHKEY_ACCESS_TOKEN", required_unless_present = "flow", conflicts_with = "flow")]
        access_token: Option<String>,
        /// The id of a flow whose next step is `enroll_device`.
        #[arg(long)]
        flow: Option<String>,
        /// The device's name.
        #[arg(long, default_value = "latchkey CLI")]
        name: String,
        /// The app PIN (6–12 digits, not an easy one).
        #[arg(long)]
        pin: String,
    },
    /// Sign in with the emulated device: biometric key, or possession key and `--pin`. Prints the
    /// flow's final answer (tokens on success) as JSON. With `--username`, start a passwordless
    /// account's first sign-in on this (not yet enrolled) device instead: SMS code, second proof,
    /// then `enroll --flow`.
    SignIn {
        #[command(flatten)]
        common: DeviceArgs,
        /// Use the possession key with this PIN instead of the biometric key.
        #[arg(long, conflicts_with = "username")]
        pin: Option<String>,
        /// A new device's sign-in for this passwordless account.
        #[arg(long)]
        username: Option<String>,
    },
    /// Passwordless sign-up from this device: prints the answer (`confirm_sign_up`, by SMS).
    SignUp {
        #[command(flatten)]
        common: DeviceArgs,
        /// The username.
        #[arg(long)]
        username: String,
        /// The phone number (E.164), confirmed by SMS.
        #[arg(long)]
        phone: String,
        /// An email address (recommended: a second proof for new devices once verified).
        #[arg(long)]
        email: Option<String>,
    },
    /// Recover an account from this (new) device: prints the first step (`email_code` or
    /// `sms_code`). Answer it and the second proof with `answer`, or choose
    /// '{"step":"select_mfa","method":"recovery_wait"}' and come back after `ready_at` with
    /// '{"step":"recovery_wait"}'; a passwordless account then enrols this device with
    /// `enroll --flow`.
    Recover {
        #[command(flatten)]
        common: DeviceArgs,
        /// The account.
        #[arg(long)]
        username: String,
        /// Where the first code goes: `email` or `sms` (default: the email when verified).
        #[arg(long)]
        channel: Option<String>,
    },
    /// From this enrolled device: cancel every recovery of its account in progress ("this
    /// wasn't me"), signed by the device's key.
    CancelRecovery {
        #[command(flatten)]
        common: DeviceArgs,
    },
    /// Answer a flow's step from this device, e.g. '{"step":"sms_code","code":"123456"}'. Prints
    /// the answer. (A flow answers only the client that started it.)
    Answer {
        #[command(flatten)]
        common: DeviceArgs,
        /// The flow id.
        #[arg(long)]
        flow: String,
        /// The step answer as JSON.
        answer: String,
    },
    /// Rotate the device session's refresh token (with a DPoP proof by the possession key).
    Refresh {
        #[command(flatten)]
        common: DeviceArgs,
    },
    /// `GET /v1/me` with the device session (DPoP-bound access token).
    Me {
        #[command(flatten)]
        common: DeviceArgs,
    },
    /// Push approval on this device: prints the approval its account is asked (app, IP, client,
    /// kind) as JSON; `--number N` approves with the number shown on the signing-in screen,
    /// `--deny` denies, `--report` answers "this wasn't me". The answer is signed by the
    /// biometric key, the requests by the possession key.
    Approve {
        #[command(flatten)]
        common: DeviceArgs,
        /// Approve, with the number the signing-in screen shows.
        #[arg(long, conflicts_with_all = ["deny", "report"])]
        number: Option<String>,
        /// Deny: the sign-in ends.
        #[arg(long, conflicts_with = "report")]
        deny: bool,
        /// "This wasn't me": the sign-in ends, prompts pause, the account is told.
        #[arg(long)]
        report: bool,
    },
}

#[derive(Args)]
pub struct DeviceArgs {
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Where the emulated device keeps its id and keys.
    #[arg(long, default_value = "latchkey-device.json")]
    file: PathBuf,
}

pub async fn run(command: DeviceCommand) -> anyhow::Result<()> {
    match command {
        DeviceCommand::Enroll { common, access_token, flow, name, pin } => {
            let client = Client::new(&common.url)?;
            let keystore = SoftwareKeystore::new();
            let (device_id, answer) = match (access_token, flow) {
                (Some(token), _) => client.enroll_device(&token, &keystore, &name, "cli", &pin).await?,
                (None, Some(flow)) => {
                    let step = client.flow(&flow).await?;
                    client.enroll_device_step(&step, &keystore, &name, "cli", &pin).await?
                }
                (None, None) => anyhow::bail!("--access-token or --flow is required"),
            };
            if answer.next_step != NextStep::Done {
                anyhow::bail!("enrolment refused: {}", serde_json::to_string(&answer)?);
            }
            save(&common.file, &DeviceFile { device_id: device_id.clone(), keystore, tokens: answer.tokens })?;
            println!("{device_id}");
            eprintln!("enrolled; keys saved in {}", common.file.display());
            Ok(())
        }
        DeviceCommand::SignIn { common, username: Some(username), .. } => {
            let answer = Client::new(&common.url)?.sign_in_new_device(&username).await?;
            println!("{}", serde_json::to_string(&answer)?);
            Ok(())
        }
        DeviceCommand::SignUp { common, username, phone, email } => {
            let req = SignUpRequest { username, password: None, email, phone: Some(phone), locale: None };
            println!("{}", serde_json::to_string(&Client::new(&common.url)?.sign_up(&req).await?)?);
            Ok(())
        }
        DeviceCommand::Recover { common, username, channel } => {
            let channel = match channel.as_deref() {
                None => None,
                Some("email") => Some(Channel::Email),
                Some("sms") => Some(Channel::Sms),
                Some(other) => anyhow::bail!("--channel must be email or sms, not {other}"),
            };
            println!("{}", serde_json::to_string(&Client::new(&common.url)?.recover(&username, channel).await?)?);
            Ok(())
        }
        DeviceCommand::CancelRecovery { common } => {
            let device = load(&common.file)?;
            println!("{}", serde_json::to_string(&device.client(&common.url)?.cancel_recoveries_from_device().await?)?);
            Ok(())
        }
        DeviceCommand::Answer { common, flow, answer } => {
            let answer: StepAnswer = serde_json::from_str(&answer).context("the answer is not a step answer")?;
            println!("{}", serde_json::to_string(&Client::new(&common.url)?.answer(&flow, &answer).await?)?);
            Ok(())
        }
        DeviceCommand::SignIn { common, pin, username: None } => {
            let mut device = load(&common.file)?;
            let client = device.client(&common.url)?;
            let unlock = match pin.as_deref() {
                Some(pin) => Unlock::Pin(pin),
                None => Unlock::Biometric,
            };
            let answer = client.device_sign_in(&device.device_id, &device.keystore, unlock).await?;
            println!("{}", serde_json::to_string(&answer)?);
            let Some(tokens) = answer.tokens else { anyhow::bail!("not signed in") };
            device.tokens = Some(tokens);
            save(&common.file, &device)
        }
        DeviceCommand::Refresh { common } => {
            let mut device = load(&common.file)?;
            let client = device.client(&common.url)?;
            let refresh = device.tokens.as_ref().context("no session: run `latchkey device sign-in`")?;
            let tokens = client.refresh(&refresh.refresh_token).await?;
            println!("{}", serde_json::to_string(&tokens)?);
            device.tokens = Some(tokens);
            save(&common.file, &device)
        }
        DeviceCommand::Approve { common, number, deny, report } => {
            let device = load(&common.file)?;
            let client = device.client(&common.url)?;
            let pending = client.device_approvals().await?.approvals;
            let Some(req) = pending.first() else { anyhow::bail!("no approval is waiting") };
            println!("{}", serde_json::to_string(req)?);
            let decision = match (number.is_some(), deny, report) {
                (true, _, _) => ApprovalDecision::Approve,
                (_, true, _) => ApprovalDecision::Deny,
                (_, _, true) => ApprovalDecision::Report,
                _ => return Ok(()),
            };
            let outcome = client.answer_approval(req, decision, number.as_deref()).await?;
            println!("{}", serde_json::to_string(&outcome)?);
            Ok(())
        }
        DeviceCommand::Me { common } => {
            let device = load(&common.file)?;
            let client = device.client(&common.url)?;
            let tokens = device.tokens.as_ref().context("no session: run `latchkey device sign-in`")?;
            println!("{}", serde_json::to_string(&client.me(&tokens.access_token).await?)?);
            Ok(())
        }
    }
}

/// What the emulated device keeps.
struct DeviceFile {
    device_id: String,
    keystore: SoftwareKeystore,
    tokens: Option<Tokens>,
}

impl DeviceFile {
    /// A client proving its requests with this device's possession key.
    fn client(&self, url: &str) -> anyhow::Result<Client> {
        Ok(Client::new(url)?.with_device_key(Arc::new(self.keystore.clone()), &self.device_id)?)
    }
}

fn save(path: &std::path::Path, device: &DeviceFile) -> anyhow::Result<()> {
    let keys: serde_json::Map<String, serde_json::Value> = device
        .keystore
        .export()
        .into_iter()
        .map(|(alias, pkcs8)| (alias, data_encoding::BASE64URL_NOPAD.encode(&pkcs8).into()))
        .collect();
    let doc = serde_json::json!({"device_id": device.device_id, "keys": keys, "tokens": device.tokens});
    write_private(path, serde_json::to_string_pretty(&doc)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn load(path: &std::path::Path) -> anyhow::Result<DeviceFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} (run `latchkey device enroll` first)", path.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)?;
    let device_id = doc["device_id"].as_str().context("no device_id in the device file")?.to_owned();
    let keystore = SoftwareKeystore::new();
    for (alias, v) in doc["keys"].as_object().context("no keys in the device file")? {
        let pkcs8 = data_encoding::BASE64URL_NOPAD.decode(v.as_str().unwrap_or_default().as_bytes())?;
        keystore.import(alias, pkcs8)?;
    }
    let tokens = serde_json::from_value(doc["tokens"].clone()).unwrap_or(None);
    Ok(DeviceFile { device_id, keystore, tokens })
}

#[cfg(unix)]
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
