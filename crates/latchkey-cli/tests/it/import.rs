//! `latchkey import FILE` (issue 15, item 3) through the real binary, on both stores: every
//! password hash format signs in through the real server and is upgraded; a TOTP secret works
//! as the account's authenticator; refused rows change nothing and are reported without their
//! hashes; running it again imports nothing twice; a killed import resumes.

use super::{BIN, serve_with, temp_dir};
use latchkey_client::Client;
use latchkey_proto::NextStep;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const TOKEN: &str = "cli-admin-token-0123456789abcdef0123456789";
const PW: &str = "correct horse battery";
const TOTP: &str = "JBSWY3DPEHPK3PXP";

/// The rows: one per hash format (the known answers of `factors::legacy`, made by each system's
/// own library), a TOTP user, and two refused rows.
fn rows() -> Vec<serde_json::Value> {
    let firebase = concat!(
        "$firebase-scrypt$rounds=8,mem_cost=14,salt_separator=Bw==,",
        "signer_key=jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA==",
        "$42xEC+ixf3L2lw==$lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198JAdRuid5lQ=="
    );
    let hashes = [
        ("supa", "$2a$10$1vBhSCeglo/T0bmZ/XTUEueb55LJvcfwaR0BdFmy2oBkfsAMMwHge"),
        ("auth0", "$2b$10$RD3O9tErYQGB/MB2j.c43e3Pm.yFiobf.8zfQ8Z.W5QhM8VdHtO8C"),
        ("django", "pbkdf2_sha256$1000000$Zr4bKwlD1mYcYoV3nTqX0a$fJKm5ak8/KlBgOsySFuCPXzYl//WgaKPfl6jszeIIBw="),
        ("keycloak", "$pbkdf2-sha256$i=29000,l=32$MDEyMzQ1Njc4OWFiY2RlZg$HwysB+Ke0YuzHEd/zzqZI6iTbuC8ephxy6jSfQdwV8M"),
        ("scry", "$scrypt$ln=14,r=8,p=1$MDEyMzQ1Njc4OWFiY2RlZg$ebnHHTApWa0oNoXTYCCHxLXDaejcvcTRQhZaD1OJNCE"),
        ("argo", "$argon2id$v=19$m=19456,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$69I7qCjDTsQwhQqFvpQJiqEI0lGQvxC84fXE0Ktxca4"),
        ("fire", firebase),
    ];
    let mut rows: Vec<serde_json::Value> = hashes
        .iter()
        .map(|(u, h)| serde_json::json!({"username": u, "email": format!("{u}@example.com"), "email_verified": true, "password_hash": h}))
        .collect();
    rows[0]["phone"] = "+14155550188".into();
    rows[0]["phone_verified"] = true.into();
    rows.push(serde_json::json!({"username": "tina", "email": "tina@example.com", "password_hash": hashes[1].1, "totp_secret": TOTP}));
    rows.push(serde_json::json!({"username": "bad mail", "email": "nope", "password_hash": "$2b$10$secretsecretsecretsecretsecretsecretsecretsecretsecr"}));
    rows.push(serde_json::json!({"username": "md5", "email": "md5@example.com", "password_hash": "5f4dcc3b5aa765d61d8327deb882cf99"}));
    rows
}

fn write_rows(path: &Path, rows: &[serde_json::Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn import(dir: &Path, db: &[&str], args: &[&str]) -> Output {
    Command::new(BIN).arg("import").args(db).args(args).current_dir(dir).stdin(Stdio::null()).output().unwrap()
}

/// A fresh PostgreSQL schema for the binary, when the suite has a database.
fn postgres_url() -> Option<String> {
    let base = std::env::var("LATCHKEY_TEST_DATABASE_URL").ok()?;
    let schema = format!("t_import_{}", uuid::Uuid::now_v7().simple());
    let ok = Command::new("psql").arg(&base).args(["-qc", &format!("CREATE SCHEMA {schema}")]).status().unwrap();
    assert!(ok.success(), "psql cannot create a schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}

async fn imported_accounts_sign_in_and_a_killed_import_resumes(database_url: Option<String>) {
    let dir = temp_dir();
    let db: Vec<&str> = match &database_url {
        Some(u) => vec!["--database-url", u.as_str()],
        None => vec![],
    };
    let mut env = vec![("LATCHKEY_ADMIN_TOKEN", TOKEN)];
    if let Some(u) = &database_url {
        env.push(("LATCHKEY_DATABASE_URL", u.as_str()));
    }
    let server = serve_with(&dir, &env);
    let file = dir.join("users.jsonl");
    write_rows(&file, &rows());

    // A dry run writes nothing.
    let out = import(&dir, &db, &["--dry-run", file.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().next(), Some("would import 8, already there 0, refused 2"));
    let c = Client::new(&server.url).unwrap();
    assert!(c.sign_in("supa", PW).await.is_err(), "nothing was written");

    let rejects = dir.join("rejects.jsonl");
    let out = import(&dir, &db, &["--rejects", rejects.to_str().unwrap(), file.to_str().unwrap()]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "refused rows: exit 2. {stderr}");
    assert!(stdout.starts_with("imported 8, already there 0, refused 2"), "{stdout}");
    assert!(stderr.contains("line 9: username") || stderr.contains("line 9: email"), "{stderr}");
    assert!(stderr.contains("line 10: password_hash: not a recognised password hash"), "{stderr}");
    let reported = format!("{stdout}{stderr}{}", std::fs::read_to_string(&rejects).unwrap());
    assert!(!reported.contains("secretsecret") && !reported.contains("5f4dcc3b"), "no hash is ever printed");
    assert_eq!(std::fs::read_to_string(&rejects).unwrap().lines().count(), 2);

    // Again: nothing twice.
    let out = import(&dir, &db, &[file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("imported 0, already there 8, refused 2"));

    // Every format signs in, once through its own scheme and then through Argon2id.
    for user in ["supa", "auth0", "django", "keycloak", "scry", "argo"] {
        assert!(c.sign_in(user, "correct horse batterz").await.is_err(), "{user}: a wrong password");
        for _ in 0..2 {
            let t = c.sign_in(user, PW).await.unwrap_or_else(|e| panic!("{user}: {e}"));
            assert!(t.tokens.is_some(), "{user}: {:?}", t.next_step);
        }
    }
    for _ in 0..2 {
        assert!(c.sign_in("fire", "user1password").await.unwrap().tokens.is_some(), "Firebase's example");
    }
    // No pooled connections: the server closes idle ones after its header deadline, and a
    // request on one it just closed would fail for that reason alone.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let get = |path: String| {
        let (http, url) = (http.clone(), server.url.clone());
        async move {
            let r = http.get(format!("{url}{path}")).bearer_auth(TOKEN).send().await.unwrap();
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let upgraded = get("/admin/v1/audit?kind=password_upgraded&limit=100".into()).await;
    let mut from: Vec<&str> =
        upgraded["events"].as_array().unwrap().iter().filter_map(|e| e["detail"]["from"].as_str()).collect();
    from.sort();
    assert_eq!(from, ["argon2", "bcrypt", "bcrypt", "firebase-scrypt", "pbkdf2-sha256", "pbkdf2-sha256", "scrypt"]);
    let supa = get("/admin/v1/users/supa".into()).await;
    assert_eq!((supa["email_verified"].as_bool(), supa["phone_verified"].as_bool()), (Some(true), Some(true)));
    assert_eq!(supa["status"], "active");

    // The imported authenticator app is the account's second factor.
    let f = c.sign_in("tina", PW).await.unwrap();
    assert!(f.tokens.is_none(), "TOTP is asked: {:?}", f.next_step);
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    let key = data_encoding::BASE32_NOPAD.decode(TOTP.as_bytes()).unwrap();
    let code = latchkey_core::factors::totp::totp_at(&key, now, &Default::default());
    let f = match f.next_step {
        NextStep::TotpCode { .. } => f,
        _ => c.select_mfa(&f.flow_id, latchkey_proto::MfaMethod::Totp).await.unwrap(),
    };
    let done = c.totp_code(&f.flow_id, &code).await.unwrap();
    assert!(done.tokens.is_some(), "{:?}", done.next_step);

    // A big file, killed while it runs, then run again: every row once.
    let total = 10_000;
    let big: Vec<serde_json::Value> = (0..total)
        .map(|i| {
            serde_json::json!({"username": format!("bulk{i:05}"), "email": format!("bulk{i:05}@example.com"),
            "password_hash": "$2b$10$RD3O9tErYQGB/MB2j.c43e3Pm.yFiobf.8zfQ8Z.W5QhM8VdHtO8C"})
        })
        .collect();
    let file = dir.join("big.jsonl");
    write_rows(&file, &big);
    let mut child = Command::new(BIN)
        .arg("import")
        .args(&db)
        .arg(&file)
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let count = || async { get("/admin/v1/summary?days=1".into()).await["users"].as_u64().unwrap_or(0) };
    let before = count().await;
    loop {
        let n = count().await;
        if n >= before + 1_000 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the import ended before it could be killed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = count().await - before;
    assert!(partial > 0 && partial < total, "killed part way: {partial}");
    let out = import(&dir, &db, &["--batch", "250", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_owned();
    assert_eq!(said, format!("imported {}, already there {partial}, refused 0", total - partial));
    assert_eq!(count().await - before, total, "every row once");
}

#[tokio::test]
async fn import_on_sqlite() {
    imported_accounts_sign_in_and_a_killed_import_resumes(None).await;
}

#[tokio::test]
async fn import_on_postgres() {
    // CI always has PostgreSQL (.ci/run), so there this test always runs.
    match postgres_url() {
        Some(url) => imported_accounts_sign_in_and_a_killed_import_resumes(Some(url)).await,
        None => assert!(std::env::var_os("CI").is_none(), "CI runs both stores"),
    }
}
