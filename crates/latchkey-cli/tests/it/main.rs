//! The real binary: `latchkey serve` on a free port with a fresh data directory, driven over
//! HTTP; `latchkey outbox --json`, `config check` and `migrate` as an operator runs them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use latchkey_client::Client;
use latchkey_proto::{MfaMethod, NextStep, SignOutScope, SignUpRequest};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

mod admin;
mod bench;
mod import;
mod keys;

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("latchkey-cli-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Serve {
    child: Child,
    url: String,
    /// What it printed before it listened.
    startup: Vec<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `latchkey serve` in `dir` and read the address it prints.
fn serve(dir: &Path) -> Serve {
    serve_with(dir, &[])
}

/// The same with environment variables set.
fn serve_with(dir: &Path, env: &[(&str, &str)]) -> Serve {
    serve_args(dir, &[], env)
}

/// `latchkey serve` with more arguments (`--config …`).
fn serve_args(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut url = None;
    let mut seen = vec![];
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if let Some(rest) = line.strip_prefix("latchkey: listening on ") {
            url = Some(rest.trim().to_owned());
            break;
        }
        // With JSON logs (the default) the banner is a log line too.
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v["message"] == "listening"
        {
            url = v["url"].as_str().map(str::to_owned);
            break;
        }
    }
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let url = url.unwrap_or_else(|| panic!("serve did not start: {seen:?}"));
    Serve { child, url, startup: seen }
}

fn outbox(dir: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(BIN).args(["outbox", "--json"]).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_no_configuration_runs_the_whole_password_journey() {
    let dir = temp_dir();
    // The issuer is the public URL; fixed here because the restart below gets another port.
    let public_url = [("LATCHKEY_PUBLIC_URL", "https://auth.example.test")];
    let server = serve_with(&dir, &public_url);
    assert!(dir.join("latchkey-data/latchkey.db").exists());
    assert_eq!(server.startup.iter().filter(|l| l.contains("created key file")).count(), 3, "{:?}", server.startup);
    for key in ["jwt-signing-key.p8", "data-key", "pepper"] {
        let meta = std::fs::metadata(dir.join("latchkey-data").join(key)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{key} is private");
        }
        let _ = meta;
    }
    let c = Client::new(&server.url).unwrap();
    let pw = "correct horse battery";
    let a = c
        .sign_up(&SignUpRequest {
            username: "cli".into(),
            password: Some(pw.into()),
            email: Some("cli@example.com".into()),
            phone: None,
            locale: None,
        })
        .await
        .unwrap();
    let messages = outbox(&dir);
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    for field in ["channel", "to", "subject", "body", "created_at"] {
        assert!(m.get(field).is_some(), "outbox line lacks {field}: {m}");
    }
    assert_eq!((m["channel"].as_str(), m["to"].as_str()), (Some("email"), Some("cli@example.com")));
    let code: String =
        m["body"].as_str().unwrap().split(|ch: char| !ch.is_ascii_digit()).find(|w| w.len() == 6).unwrap().into();
    assert_eq!(c.confirm_sign_up(&a.flow_id, &code).await.unwrap().next_step, NextStep::Done);
    let t = c.sign_in("cli", pw).await.unwrap().tokens.unwrap();
    assert_eq!(c.me(&t.access_token).await.unwrap().username, "cli");
    let t = c.refresh(&t.refresh_token).await.unwrap();
    c.sign_out(&t.access_token, SignOutScope::Session).await.unwrap();
    assert!(c.me(&t.access_token).await.is_err());
    // A restart keeps the keys: a token signed before still verifies after.
    let t = c.sign_in("cli", pw).await.unwrap().tokens.unwrap();
    drop(server);
    let server = serve_with(&dir, &public_url);
    assert!(!server.startup.iter().any(|l| l.contains("created key file")), "a restart reuses the keys");
    let c = Client::new(&server.url).unwrap();
    assert_eq!(c.me(&t.access_token).await.unwrap().username, "cli");
}

/// The newest 6-digit code the development outbox holds for `to`.
fn code_for(dir: &Path, to: &str) -> String {
    let messages = outbox(dir);
    let m = messages.iter().rev().find(|m| m["to"].as_str() == Some(to)).unwrap();
    m["body"].as_str().unwrap().split(|ch: char| !ch.is_ascii_digit()).find(|w| w.len() == 6).unwrap().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_emulator_enrols_and_signs_in_by_pin_and_by_biometric_key() {
    let dir = temp_dir();
    // A phone just added is no sign-in factor for a week; this test has no week to wait.
    let server = serve_with(&dir, &[("LATCHKEY_POLICY__RECOVERY__PHONE_CHANGE_COOLDOWN_SECS", "0")]);
    let c = Client::new(&server.url).unwrap();
    let pw = "correct horse battery";
    let req = SignUpRequest {
        username: "dev".into(),
        password: Some(pw.into()),
        email: Some("dev@example.com".into()),
        phone: None,
        locale: None,
    };
    let a = c.sign_up(&req).await.unwrap();
    c.confirm_sign_up(&a.flow_id, &code_for(&dir, "dev@example.com")).await.unwrap();
    // aal2 through an SMS factor (no waiting for a new TOTP step on the real clock).
    let t = c.sign_in("dev", pw).await.unwrap().tokens.unwrap();
    let v = c.enroll_sms(&t.access_token, Some("+14155550199")).await.unwrap();
    c.verify_code(&v.flow_id, &code_for(&dir, "+14155550199")).await.unwrap();
    let f = c.sign_in("dev", pw).await.unwrap();
    let t = c.sms_code(&f.flow_id, &code_for(&dir, "+14155550199")).await.unwrap().tokens.unwrap();
    let device = dir.join("device.json");
    let cli = |args: &[&str]| {
        let mut all = vec!["device"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--url", &server.url, "--file", device.to_str().unwrap()]);
        Command::new(BIN).args(&all).current_dir(&dir).output().unwrap()
    };
    let out = cli(&["enroll", "--access-token", &t.access_token, "--name", "Terminal", "--pin", "371946"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let device_id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&device).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let out = cli(&["sign-in", "--pin", "371946"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["tokens"]["token_type"], "DPoP");
    // The session is bound to the device's key: only the device can use and refresh it.
    let access = answer["tokens"]["access_token"].as_str().unwrap();
    let e = c.me(access).await.unwrap_err();
    assert!(matches!(e, latchkey_client::ClientError::Decode(_)), "the SDK needs the device key: {e}");
    let refresh = answer["tokens"]["refresh_token"].as_str().unwrap();
    assert_eq!(c.refresh(refresh).await.unwrap_err().code(), Some("invalid_dpop_proof"));
    let out = cli(&["refresh"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&["me"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let me: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((me["acr"].as_str(), me["amr"].clone()), (Some("aal2"), serde_json::json!(["hwk", "pin", "mfa"])));
    assert!(cli(&["sign-in"]).status.success(), "the biometric key");
    let wrong = cli(&["sign-in", "--pin", "902817"]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stdout).contains("code_mismatch"));
    let listed = c.devices(&t.access_token).await.unwrap().devices;
    assert_eq!((listed[0].id.as_str(), listed[0].name.as_str()), (device_id.as_str(), "Terminal"));
    // Push approval: a password sign-in elsewhere picks the phone, which approves it with the
    // number that screen shows.
    let f = c.sign_in("dev", pw).await.unwrap();
    let p = c.select_mfa(&f.flow_id, MfaMethod::PushApproval).await.unwrap();
    let NextStep::PushApproval { number, .. } = p.next_step else { panic!("{:?}", p.next_step) };
    let out = cli(&["approve", "--number", &number]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.lines().next().unwrap().contains("\"kind\":\"sign_in\""), "{printed}");
    assert!(printed.lines().nth(1).unwrap().contains("\"approved\""), "{printed}");
    let done = c.wait_flow(&f.flow_id, 5).await.unwrap();
    assert!(done.tokens.is_some(), "{done:?}");
    // An action: the app asks the phone to approve a payment; the emulator shows it, checks its
    // hash and signs; the app gets the approval JWT for its backend.
    let action = latchkey_proto::Action {
        kind: "payment".into(),
        text: "Pay €120.00 to ACME Ltd".into(),
        data: Some(serde_json::json!({"amount_minor": 12000, "payee": "ACME Ltd"})),
    };
    let req = latchkey_proto::StepUpRequest { action: Some(action.clone()), ..Default::default() };
    let a = c.step_up(&t.access_token, &req).await.unwrap();
    let NextStep::PushApproval { number, .. } = a.next_step else { panic!("{:?}", a.next_step) };
    let out = cli(&["approve", "--number", &number]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let shown: serde_json::Value = serde_json::from_str(printed.lines().next().unwrap()).unwrap();
    assert_eq!(shown["action"]["text"], "Pay €120.00 to ACME Ltd");
    assert_eq!(shown["kind"], format!("action:{}", latchkey_client::action_hash(&action).unwrap()));
    let done = c.wait_flow(&a.flow_id, 5).await.unwrap();
    assert!(done.approval.is_some() && done.tokens.is_some(), "{done:?}");
}

#[test]
fn the_device_emulator_runs_the_passwordless_journey_and_a_sim_swap_is_denied() {
    let dir = temp_dir();
    let server = serve(&dir);
    let device = dir.join("phone.json");
    let cli = |args: &[&str]| {
        let mut all = vec!["device"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--url", &server.url, "--file", device.to_str().unwrap()]);
        let out = Command::new(BIN).args(&all).current_dir(&dir).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let json = |out: String| serde_json::from_str::<serde_json::Value>(&out).unwrap();
    let a = json(cli(&["sign-up", "--username", "pat", "--phone", "+14155550123", "--email", "pat@example.com"]));
    assert_eq!(a["next_step"]["type"], "confirm_sign_up");
    let flow = a["flow_id"].as_str().unwrap();
    let confirm = format!(r#"{{"step":"confirm_sign_up","code":"{}"}}"#, code_for(&dir, "+14155550123"));
    assert_eq!(json(cli(&["answer", "--flow", flow, &confirm]))["next_step"]["type"], "verify_code");
    let verify = format!(r#"{{"step":"verify_code","code":"{}"}}"#, code_for(&dir, "pat@example.com"));
    assert_eq!(json(cli(&["answer", "--flow", flow, &verify]))["next_step"]["type"], "enroll_device");
    cli(&["enroll", "--flow", flow, "--pin", "371946"]);
    let me = json(cli(&["me"]));
    assert_eq!((&me["acr"], &me["amr"]), (&serde_json::json!("aal1"), &serde_json::json!(["sms", "hwk"])));
    // A SIM swap: a new device with the SMS code must ask pat's phone or pat's mailbox; the
    // thief asks the phone, and pat reports it there.
    let thief = dir.join("thief.json");
    let thief_cli = |args: &[&str]| {
        let mut all = vec!["device"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--url", &server.url, "--file", thief.to_str().unwrap()]);
        let out = Command::new(BIN).args(&all).current_dir(&dir).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        json(String::from_utf8(out.stdout).unwrap())
    };
    let a = thief_cli(&["sign-in", "--username", "pat"]);
    let flow = a["flow_id"].as_str().unwrap();
    let code = format!(r#"{{"step":"sms_code","code":"{}"}}"#, code_for(&dir, "+14155550123"));
    let r = thief_cli(&["answer", "--flow", flow, &code]);
    assert_eq!((r["next_step"]["type"].as_str(), r["tokens"].is_null()), (Some("select_mfa"), true));
    assert_eq!(r["next_step"]["methods"], serde_json::json!(["push_approval", "email"]));
    let p = thief_cli(&["answer", "--flow", flow, r#"{"step":"select_mfa","method":"push_approval"}"#]);
    assert_eq!(p["next_step"]["type"], "push_approval");
    let shown = cli(&["approve"]);
    let asked = json(shown.lines().next().unwrap().to_owned());
    assert_eq!(asked["kind"], "new_device", "{shown}");
    let answered = cli(&["approve", "--report"]);
    assert_eq!(json(answered.lines().nth(1).unwrap().to_owned())["status"], "reported");
    let r = thief_cli(&["answer", "--flow", flow, r#"{"step":"push_approval"}"#]);
    assert_eq!((r["next_step"]["type"].as_str(), r["tokens"].is_null()), (Some("denied"), true));
    // Pat's phone is lost. On a new phone pat recovers with two proofs: the mailbox, then the
    // number (a replacement SIM); the new phone is enrolled and signed in.
    let new = dir.join("new-phone.json");
    let new_cli = |args: &[&str]| {
        let mut all = vec!["device"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--url", &server.url, "--file", new.to_str().unwrap()]);
        let out = Command::new(BIN).args(&all).current_dir(&dir).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let r = json(new_cli(&["recover", "--username", "pat"]));
    assert_eq!(r["next_step"]["type"], "email_code", "{r}");
    let flow = r["flow_id"].as_str().unwrap();
    let email = format!(r#"{{"step":"email_code","code":"{}"}}"#, code_for(&dir, "pat@example.com"));
    let r = json(new_cli(&["answer", "--flow", flow, &email]));
    assert_eq!(r["next_step"]["methods"], serde_json::json!(["push_approval", "sms", "recovery_wait"]), "{r}");
    json(new_cli(&["answer", "--flow", flow, r#"{"step":"select_mfa","method":"sms"}"#]));
    let sms = format!(r#"{{"step":"sms_code","code":"{}"}}"#, code_for(&dir, "+14155550123"));
    assert_eq!(json(new_cli(&["answer", "--flow", flow, &sms]))["next_step"]["type"], "enroll_device");
    new_cli(&["enroll", "--flow", flow, "--pin", "902817"]);
    let me = json(new_cli(&["me"]));
    assert_eq!(me["amr"], serde_json::json!(["email", "sms", "hwk"]), "{me}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_passkey_emulator_registers_and_signs_in_with_no_username() {
    let dir = temp_dir();
    let server = serve_with(
        &dir,
        &[
            ("LATCHKEY_POLICY__PASSKEYS__RP_ID", "localhost"),
            ("LATCHKEY_POLICY__RECOVERY__PHONE_CHANGE_COOLDOWN_SECS", "0"),
        ],
    );
    let c = Client::new(&server.url).unwrap();
    let pw = "correct horse battery";
    let req = SignUpRequest {
        username: "kim".into(),
        password: Some(pw.into()),
        email: Some("kim@example.com".into()),
        phone: None,
        locale: None,
    };
    let a = c.sign_up(&req).await.unwrap();
    c.confirm_sign_up(&a.flow_id, &code_for(&dir, "kim@example.com")).await.unwrap();
    let t = c.sign_in("kim", pw).await.unwrap().tokens.unwrap();
    let v = c.enroll_sms(&t.access_token, Some("+14155550198")).await.unwrap();
    c.verify_code(&v.flow_id, &code_for(&dir, "+14155550198")).await.unwrap();
    let f = c.sign_in("kim", pw).await.unwrap();
    let t = c.sms_code(&f.flow_id, &code_for(&dir, "+14155550198")).await.unwrap().tokens.unwrap();
    let file = dir.join("passkey.json");
    let cli = |args: &[&str]| {
        let mut all = vec!["passkey"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--url", &server.url, "--file", file.to_str().unwrap()]);
        Command::new(BIN).args(&all).current_dir(&dir).output().unwrap()
    };
    let out = cli(&["register", "--access-token", &t.access_token, "--name", "Terminal"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    for expected_counter in [1, 2] {
        let out = cli(&["sign-in"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let me = c.me(answer["tokens"]["access_token"].as_str().unwrap()).await.unwrap();
        assert_eq!((me.username.as_str(), me.acr.as_str()), ("kim", "aal2"));
        assert_eq!(me.amr, ["swk", "user", "mfa"]);
        let kept: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(kept["counter"], expected_counter, "the file keeps the counter it signed with");
    }
    // Another origin than the configured https://localhost: refused, exit status 1.
    let out = cli(&["sign-in", "--origin", "https://evil.localhost"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("code_mismatch"), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = c.passkeys(&t.access_token).await.unwrap().passkeys;
    assert_eq!((listed.len(), listed[0].name.as_str()), (1, "Terminal"));
}

/// `latchkey serve` in `dir` that must refuse to start: its standard error.
fn serve_refused(dir: &Path) -> String {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success());
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return err;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started without its keys");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_server_missing_or_mismatching_its_key_files_refuses_to_start_and_says_what_to_restore() {
    let dir = temp_dir();
    let data = dir.join("latchkey-data");
    drop(serve(&dir));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for (path, mode) in [(data.join("latchkey.db"), 0o600), (data.clone(), 0o700), (data.join("pepper"), 0o600)] {
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, mode, "{}", path.display());
        }
    }
    // A restore that forgot the pepper: no new one is made.
    let pepper = std::fs::read(data.join("pepper")).unwrap();
    std::fs::remove_file(data.join("pepper")).unwrap();
    let err = serve_refused(&dir);
    assert!(err.contains("pepper is missing") && err.contains("Restore pepper"), "{err}");
    assert!(!data.join("pepper").exists(), "no new pepper was written");
    // Another deployment's pepper: refused by its fingerprint.
    std::fs::write(data.join("pepper"), [7u8; 32]).unwrap();
    let err = serve_refused(&dir);
    assert!(err.contains("pepper") && err.contains("not the key this database was set up with"), "{err}");
    std::fs::write(data.join("pepper"), &pepper).unwrap();
    drop(serve(&dir));
}

#[test]
fn a_plain_http_public_url_off_this_machine_is_warned_about_at_start() {
    let dir = temp_dir();
    let server = serve_with(&dir, &[("LATCHKEY_PUBLIC_URL", "http://auth.example.test")]);
    let warning =
        server.startup.iter().find(|l| l.contains("plain HTTP")).unwrap_or_else(|| panic!("{:?}", server.startup));
    let line: serde_json::Value = serde_json::from_str(warning).unwrap();
    assert_eq!(line["level"], "WARN", "{line}");
    drop(server);
    let quiet = serve_with(&dir, &[("LATCHKEY_PUBLIC_URL", "https://auth.example.test")]);
    assert!(!quiet.startup.iter().any(|l| l.contains("plain HTTP")), "{:?}", quiet.startup);
}

#[test]
fn read_only_commands_never_create_data() {
    let dir = temp_dir();
    let out = Command::new(BIN).args(["outbox"]).current_dir(&dir).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no Latchkey data"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("latchkey-data").exists(), "nothing was created");
}

#[test]
fn config_check_validates_and_redacts_secrets() {
    let dir = temp_dir();
    let secret = dir.join("admin-token");
    std::fs::write(&secret, "an-admin-token-that-is-long-enough-0123456789\n").unwrap();
    std::fs::write(
        dir.join("latchkey.toml"),
        "listen = \"127.0.0.1:9999\"\nunknown_key = true\n[[backends]]\nclient_id = \"orders\"\nclient_secret = \"backend-secret-0123456789abcdef0123\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check", "--config", "latchkey.toml"])
        .current_dir(&dir)
        .env("LATCHKEY_ADMIN_TOKEN_FILE", &secret)
        .env("LATCHKEY_SMTP_URL", "smtps://user:hunter2@mail.example.com")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("listen = \"127.0.0.1:9999\""), "{stdout}");
    assert!(stdout.contains("admin_token = \"<redacted>\""), "{stdout}");
    assert!(!stdout.contains("hunter2") && !stdout.contains("an-admin-token"), "{stdout}");
    assert!(stdout.contains("client_id = \"orders\"") && !stdout.contains("backend-secret"), "{stdout}");
    assert!(stderr.contains("unknown configuration key `unknown_key`"), "{stderr}");
    let bad = Command::new(BIN)
        .args(["config", "check"])
        .current_dir(&dir)
        .env("LATCHKEY_LISTEN", "not an address")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("listen"));
}

#[test]
fn migrate_creates_the_database_and_is_idempotent() {
    let dir = temp_dir();
    for _ in 0..2 {
        let out = Command::new(BIN).args(["migrate", "--data-dir", "d"]).current_dir(&dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(dir.join("d/latchkey.db").exists());
    if let Ok(url) = std::env::var("LATCHKEY_TEST_DATABASE_URL") {
        let out = Command::new(BIN).args(["migrate", "--database-url", &url]).current_dir(&dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("postgres"));
    }
}

#[test]
fn docs_openapi_json_is_what_the_server_serves() {
    let out = Command::new(BIN).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let generated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json")).unwrap();
    let committed: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert!(
        generated == committed,
        "docs/openapi.json is stale: run `cargo run --bin latchkey -- openapi > docs/openapi.json`"
    );
}

#[test]
fn totp_prints_the_code_of_a_secret_at_a_time() {
    // RFC 6238 App. B: the 20-byte seed "12345678901234567890", 59 s → 94287082 (6 digits: 287082).
    let out = Command::new(BIN).args(["totp", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "--at", "59"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "287082");
    let bad = Command::new(BIN).args(["totp", "not base32!"]).output().unwrap();
    assert!(!bad.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_genuine_app_gate_is_tried_with_development_play_keys() {
    let dir = temp_dir();
    let cli = |args: &[&str]| Command::new(BIN).args(args).current_dir(&dir).output().unwrap();
    let out = cli(&["app-integrity", "play-keys", "--require", "recovery"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("latchkey-play.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(dir.join("genuine.toml"), &out.stdout).unwrap();
    let server = serve_args(&dir, &["--config", "genuine.toml"], &[]);
    let recover = |proof: Option<String>| {
        let mut r = reqwest::Client::new()
            .post(format!("{}/v1/recovery", server.url))
            .json(&serde_json::json!({"username": "nobody"}));
        if let Some(p) = proof {
            r = r.header("latchkey-app-integrity", p);
        }
        r.send()
    };
    // Without a proof: refused.
    let r = recover(None).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"]["code"], "app_integrity_required");
    // With the genuine app's verdict for a fresh challenge: the recovery starts; once only.
    let out = cli(&["app-integrity", "play-token", "--url", &server.url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let proof = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(proof.starts_with("play "), "{proof}");
    let r = recover(Some(proof.clone())).await.unwrap();
    assert_eq!(r.status(), 200);
    // An unknown account's recovery looks like a real one: its first proof is a code, by SMS or
    // email as the server's secret picks.
    let first = r.json::<serde_json::Value>().await.unwrap()["next_step"]["type"].clone();
    assert!(first == "sms_code" || first == "email_code", "{first}");
    let r = recover(Some(proof)).await.unwrap();
    assert_eq!(r.status(), 403, "a challenge is spent once");
}
