//! `latchkey admin …` against the real server: tables by default, the API's JSON with `--json`,
//! the token from the environment, errors on stderr with a failing exit status.

use super::{BIN, serve_with, temp_dir};
use std::path::Path;
use std::process::{Command, Output};

const TOKEN: &str = "cli-admin-token-0123456789abcdef0123456789";

fn admin(dir: &Path, url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("admin")
        .args(args)
        .env("LATCHKEY_URL", url)
        .env("LATCHKEY_ADMIN_TOKEN", TOKEN)
        .env_remove("LATCHKEY_ADMIN_TOKEN_FILE")
        .current_dir(dir)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn the_admin_cli_lists_invites_acts_and_reads_the_audit_log() {
    let dir = temp_dir();
    let server = serve_with(&dir, &[("LATCHKEY_ADMIN_TOKEN", TOKEN)]);
    let url = server.url.as_str();
    // An invitation creates the account; the list shows it as a table, and as JSON.
    let said = ok(&admin(&dir, url, &["users", "create", "Mira", "--email", "mira@example.com"]));
    assert!(said.starts_with("invited Mira: the invitation went to m"), "{said}");
    let table = ok(&admin(&dir, url, &["users", "list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("USERNAME") && lines[0].contains("STATUS"), "{table}");
    assert!(lines[1].starts_with("Mira") && lines[1].contains("unconfirmed"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&admin(&dir, url, &["--json", "users", "list", "--query", "mi"]))).unwrap();
    assert_eq!(json["users"][0]["email"], "mira@example.com");
    assert!(json["next_cursor"].is_null());
    ok(&admin(&dir, url, &["users", "create", "Pat", "--phone", "+14155550123", "--role", "read_only"]));
    let by_phone = ok(&admin(&dir, url, &["users", "list", "--query", "+1415"]));
    assert!(
        by_phone.lines().nth(1).is_some_and(|l| l.starts_with("Pat")) && by_phone.lines().count() == 2,
        "{by_phone}"
    );
    let shown = ok(&admin(&dir, url, &["users", "show", "mira"]));
    assert!(shown.contains("mira@example.com") && shown.contains("FACTORS"), "{shown}");

    // Actions, then the audit log naming who did them.
    assert_eq!(ok(&admin(&dir, url, &["users", "disable", "mira"])).trim(), "disabled mira");
    let audit = ok(&admin(&dir, url, &["audit", "--kind", "admin_disable"]));
    assert!(audit.contains("admin_disable") && audit.contains("admin_token"), "{audit}");
    let outbox = ok(&admin(&dir, url, &["outbox"]));
    assert!(outbox.contains("mira@example.com") && !outbox.contains("code="), "{outbox}");
    let summary = ok(&admin(&dir, url, &["summary", "--days", "7"]));
    assert!(summary.starts_with("accounts: 2 (disabled 1, unconfirmed 1)"), "{summary}");

    // Refusals say why, on stderr, with a failing status.
    let out = admin(&dir, url, &["users", "delete", "mira"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--yes"));
    let out = admin(&dir, url, &["users", "show", "nobody"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404 not_found"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN)
        .args(["admin", "users", "list"])
        .env("LATCHKEY_URL", url)
        .env("LATCHKEY_ADMIN_TOKEN", "not-the-token")
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("401"));
    assert_eq!(ok(&admin(&dir, url, &["users", "delete", "mira", "--yes"])).trim(), "deleted mira");
    let json: serde_json::Value = serde_json::from_str(&ok(&admin(&dir, url, &["--json", "users", "list"]))).unwrap();
    assert_eq!(json["users"].as_array().unwrap().len(), 1, "only Pat is left");
}
