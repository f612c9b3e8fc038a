//! `latchkey device …`: the SDK as a device emulator, so the passwordless journey can be tried from
//! a terminal against a running server. The software keys are kept in a JSON file (mode 0600).

use anyhow::Context;
use clap::{Args, Subcommand};
use latchkey_client::{Client, SoftwareKeystore, Unlock};
use latchkey_proto::NextStep;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Enrol this emulated device from a recent aal2 session: creates both keys and sets the PIN.
    Enroll {
        #[command(flatten)]
        common: DeviceArgs,
        /// An access token of a session signed in at aal2 in the last 10 minutes.
        #[arg(long, env = "LATCHKEY_ACCESS_TOKEN")]
        access_token: String,
        /// The device's name.
        #[arg(long, default_value = "latchkey CLI")]
        name: String,
        /// The app PIN (6–12 digits, not an easy one).
        #[arg(long)]
        pin: String,
    },
    /// Sign in with the emulated device: biometric key, or possession key and `--pin`. Prints the
    /// flow's final answer (tokens on success) as JSON.
    SignIn {
        #[command(flatten)]
        common: DeviceArgs,
        /// Use the possession key with this PIN instead of the biometric key.
        #[arg(long)]
        pin: Option<String>,
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
        DeviceCommand::Enroll { common, access_token, name, pin } => {
            let client = Client::new(&common.url)?;
            let keystore = SoftwareKeystore::new();
            let (device_id, answer) = client.enroll_device(&access_token, &keystore, &name, "cli", &pin).await?;
            if answer.next_step != NextStep::Done {
                anyhow::bail!("enrolment refused: {}", serde_json::to_string(&answer)?);
            }
            save(&common.file, &device_id, &keystore)?;
            println!("{device_id}");
            eprintln!("enrolled; keys saved in {}", common.file.display());
            Ok(())
        }
        DeviceCommand::SignIn { common, pin } => {
            let client = Client::new(&common.url)?;
            let (device_id, keystore) = load(&common.file)?;
            let unlock = match pin.as_deref() {
                Some(pin) => Unlock::Pin(pin),
                None => Unlock::Biometric,
            };
            let answer = client.device_sign_in(&device_id, &keystore, unlock).await?;
            println!("{}", serde_json::to_string(&answer)?);
            if answer.tokens.is_none() {
                anyhow::bail!("not signed in");
            }
            Ok(())
        }
    }
}

fn save(path: &std::path::Path, device_id: &str, keystore: &SoftwareKeystore) -> anyhow::Result<()> {
    let keys: serde_json::Map<String, serde_json::Value> = keystore
        .export()
        .into_iter()
        .map(|(alias, pkcs8)| (alias, data_encoding::BASE64URL_NOPAD.encode(&pkcs8).into()))
        .collect();
    let doc = serde_json::json!({"device_id": device_id, "keys": keys});
    write_private(path, serde_json::to_string_pretty(&doc)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn load(path: &std::path::Path) -> anyhow::Result<(String, SoftwareKeystore)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} (run `latchkey device enroll` first)", path.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)?;
    let device_id = doc["device_id"].as_str().context("no device_id in the device file")?.to_owned();
    let keystore = SoftwareKeystore::new();
    for (alias, v) in doc["keys"].as_object().context("no keys in the device file")? {
        let pkcs8 = data_encoding::BASE64URL_NOPAD.decode(v.as_str().unwrap_or_default().as_bytes())?;
        keystore.import(alias, pkcs8)?;
    }
    Ok((device_id, keystore))
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
