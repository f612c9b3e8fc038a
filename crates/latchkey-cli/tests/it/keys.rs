//! Key safety through the real binary: rotating the token-signing key (checklist TOK-3), and
//! `latchkey backup` / `latchkey restore` carrying the database and its keys together.

use super::{BIN, code_for, serve_with, temp_dir};
use latchkey_client::Client;
use latchkey_proto::{NextStep, SignUpRequest};
use std::path::Path;
use std::process::Command;

const PW: &str = "correct horse battery";
const PUBLIC_URL: [(&str, &str); 1] = [("LATCHKEY_PUBLIC_URL", "https://auth.example.test")];

/// Run the binary in `dir`; its standard error, and whether it succeeded.
fn run(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(args).current_dir(dir).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The key ids the JWKS publishes, in order.
async fn published(url: &str) -> Vec<String> {
    let jwks: serde_json::Value =
        reqwest::get(format!("{url}/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

/// The `kid` in a JWT's header.
fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header = data_encoding::BASE64URL_NOPAD.decode(header.as_bytes()).unwrap();
    serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"].as_str().unwrap().to_owned()
}

async fn confirmed_user(dir: &Path, c: &Client, username: &str) {
    let email = format!("{username}@example.com");
    let a = c
        .sign_up(&SignUpRequest {
            username: username.into(),
            password: Some(PW.into()),
            email: Some(email.clone()),
            phone: None,
            locale: None,
        })
        .await
        .unwrap();
    assert_eq!(c.confirm_sign_up(&a.flow_id, &code_for(dir, &email)).await.unwrap().next_step, NextStep::Done);
}

async fn access_token(c: &Client) -> String {
    c.sign_in("rot", PW).await.unwrap().tokens.unwrap().access_token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tok_3_a_new_signing_key_is_published_before_it_signs_and_a_removed_keys_tokens_are_refused() {
    let dir = temp_dir();
    let server = serve_with(&dir, &PUBLIC_URL);
    let c = Client::new(&server.url).unwrap();
    confirmed_user(&dir, &c, "rot").await;
    let old = access_token(&c).await;
    let first = published(&server.url).await;
    assert_eq!(first, vec![kid(&old)]);
    drop(server);
    assert!(!run(&dir, &["keys", "rotate", "--jwt", "--activate"]).0, "nothing is staged yet");
    assert!(!run(&dir, &["keys", "rotate", "--jwt", "--retire"]).0, "nothing is retired yet");

    // Staged: published (resource servers can fetch it) but not yet signing.
    let (ok, said) = run(&dir, &["keys", "rotate", "--jwt"]);
    assert!(ok && said.contains("staged signing key"), "{said}");
    let server = serve_with(&dir, &PUBLIC_URL);
    let c = Client::new(&server.url).unwrap();
    let keys = published(&server.url).await;
    assert_eq!((keys.len(), &keys[0]), (2, &first[0]), "{keys:?}");
    let staged = keys[1].clone();
    assert_eq!(kid(&access_token(&c).await), first[0], "a staged key does not sign");
    assert_eq!(c.me(&old).await.unwrap().username, "rot");
    drop(server);

    // Activated: the new key signs; the old one is still published and its tokens accepted.
    let (ok, said) = run(&dir, &["keys", "rotate", "--jwt", "--activate"]);
    assert!(ok && said.contains(&format!("now signing with {staged}")), "{said}");
    assert!(!run(&dir, &["keys", "rotate", "--jwt", "--activate"]).0, "nothing staged any more");
    let server = serve_with(&dir, &PUBLIC_URL);
    let c = Client::new(&server.url).unwrap();
    assert_eq!(published(&server.url).await, vec![staged.clone(), first[0].clone()]);
    let new = access_token(&c).await;
    assert_eq!(kid(&new), staged);
    assert_eq!(c.me(&old).await.unwrap().username, "rot", "an old token is good until it expires");
    drop(server);

    // Retired: the old key is gone from the JWKS and its tokens are refused.
    let (ok, said) = run(&dir, &["keys", "rotate", "--jwt", "--retire"]);
    assert!(ok && said.contains("removed the retired key"), "{said}");
    let server = serve_with(&dir, &PUBLIC_URL);
    let c = Client::new(&server.url).unwrap();
    assert_eq!(published(&server.url).await, vec![staged]);
    assert!(c.me(&old).await.is_err(), "a token signed by a removed key is refused");
    assert_eq!(c.me(&new).await.unwrap().username, "rot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_carry_the_database_and_its_keys_together() {
    let dir = temp_dir();
    let server = serve_with(&dir, &PUBLIC_URL);
    let c = Client::new(&server.url).unwrap();
    confirmed_user(&dir, &c, "rot").await;
    let token = access_token(&c).await;
    // Taken while the server runs.
    let archive = dir.join("backup.tar");
    let (ok, said) = run(&dir, &["backup", "--out", archive.to_str().unwrap()]);
    assert!(ok, "{said}");
    assert!(said.contains("latchkey.db") && said.contains("pepper") && said.contains("data-key"), "{said}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(!run(&dir, &["backup", "--out", archive.to_str().unwrap()]).0, "an archive is never overwritten");
    drop(server);

    let elsewhere = temp_dir();
    let data = elsewhere.join("latchkey-data");
    let (ok, said) = run(&elsewhere, &["restore", "--from", archive.to_str().unwrap(), "--data-dir", "latchkey-data"]);
    assert!(ok, "{said}");
    let (again, said) =
        run(&elsewhere, &["restore", "--from", archive.to_str().unwrap(), "--data-dir", "latchkey-data"]);
    assert!(!again && said.contains("not empty"), "a restore never overwrites: {said}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for name in ["latchkey.db", "pepper", "data-key", "jwt-signing-key.p8"] {
            assert_eq!(std::fs::metadata(data.join(name)).unwrap().permissions().mode() & 0o777, 0o600, "{name}");
        }
    }
    // The restored server knows the account (its password checks against the restored pepper)
    // and the tokens signed before (the restored signing key).
    let server = serve_with(&elsewhere, &PUBLIC_URL);
    assert!(!server.startup.iter().any(|l| l.contains("created key file")), "{:?}", server.startup);
    let c = Client::new(&server.url).unwrap();
    assert_eq!(c.me(&token).await.unwrap().username, "rot");
    assert_eq!(kid(&access_token(&c).await), kid(&token));

    // A damaged archive is refused, and nothing is written.
    let mut bytes = std::fs::read(&archive).unwrap();
    let at = bytes.windows(4).position(|w| w == b"SQLi").unwrap() + 100;
    bytes[at] ^= 0xff;
    let damaged = dir.join("damaged.tar");
    std::fs::write(&damaged, bytes).unwrap();
    let (ok, said) = run(&dir, &["restore", "--from", damaged.to_str().unwrap(), "--data-dir", "restored"]);
    assert!(!ok && said.contains("latchkey.db is damaged"), "{said}");
    assert!(!dir.join("restored").exists());
}
