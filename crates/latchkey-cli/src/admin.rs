//! `latchkey admin …`: the admin API from a terminal. Readable tables by default, the API's JSON
//! with `--json`. The credential is the admin token (`LATCHKEY_ADMIN_TOKEN`, or a file named by
//! `LATCHKEY_ADMIN_TOKEN_FILE` / `--token-file`) or an admin account's access token
//! (`LATCHKEY_ACCESS_TOKEN`); never an argument, so it stays out of `ps` and shell history.

use clap::{Args, Subcommand};
use latchkey_proto as proto;
use serde_json::Value;
use std::path::PathBuf;

#[derive(Args)]
pub struct AdminArgs {
    /// The server (LATCHKEY_URL; default http://127.0.0.1:8080).
    #[arg(long, env = "LATCHKEY_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A file holding the admin token (else LATCHKEY_ADMIN_TOKEN_FILE, LATCHKEY_ADMIN_TOKEN,
    /// or an admin account's LATCHKEY_ACCESS_TOKEN).
    #[arg(long, env = "LATCHKEY_ADMIN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Accounts.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// The audit log, newest first.
    Audit {
        /// One account: its username, or a deleted account's id.
        #[arg(long)]
        user: Option<String>,
        /// One kind (sign_in, totp_code, account_deleted, admin_disable, …).
        #[arg(long)]
        kind: Option<String>,
        /// One outcome (success, failure, …).
        #[arg(long)]
        outcome: Option<String>,
        /// At or after (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Before (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        #[command(flatten)]
        page: Page,
    },
    /// The outbox, newest first (never message bodies); `requeue` sends a dead message again.
    Outbox {
        /// pending, sending, sent or dead.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        page: Page,
        #[command(subcommand)]
        command: Option<OutboxCommand>,
    },
    /// Accounts, MFA adoption, the sign-in funnel and delivery health.
    Summary {
        /// The window in days (1–366).
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
}

#[derive(Args)]
struct Page {
    /// Page size (1–100).
    #[arg(long)]
    limit: Option<u32>,
    /// The `next_cursor` a previous page printed.
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// Send a dead message again from its first attempt.
    Requeue {
        /// The message id.
        id: String,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Find accounts (newest first).
    List {
        /// A prefix of the username, email or phone.
        #[arg(long)]
        query: Option<String>,
        /// active, unconfirmed, locked or disabled.
        #[arg(long)]
        status: Option<String>,
        /// totp, sms, email, recovery_codes, device or none.
        #[arg(long)]
        factor: Option<String>,
        #[command(flatten)]
        page: Page,
    },
    /// One account: profile, factors, devices, sessions, recent events.
    Show { username: String },
    /// Invite someone: they get a link to choose a password.
    Create {
        username: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        phone: Option<String>,
        /// admin or read_only, to invite an admin.
        #[arg(long)]
        role: Option<String>,
        /// The invitee's language (en, de, …): the invitation and later messages use it.
        #[arg(long)]
        locale: Option<String>,
    },
    /// Delete an account for good (personal data erased, the owner told).
    Delete {
        username: String,
        /// Confirm: this cannot be undone.
        #[arg(long)]
        yes: bool,
    },
    /// Disable the account and end its sessions.
    Disable { username: String },
    /// Enable a disabled account.
    Enable { username: String },
    /// Clear the password and second-factor lockouts.
    Unlock { username: String },
    /// End every session.
    RevokeSessions { username: String },
    /// The next sign-in must choose a new password.
    RequirePasswordChange { username: String },
    /// Remove a lost factor (the user is told).
    ResetFactor { username: String, factor_id: String },
    /// Revoke a device (the user is told).
    RevokeDevice { username: String, device_id: String },
    /// Make the account an admin (admin, read_only) or not (none).
    Role { username: String, role: String },
}

struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Option<Value>> {
        let mut req =
            self.http.request(method, format!("{}{path}", self.url.trim_end_matches('/'))).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| anyhow::anyhow!("cannot reach {}: {e}", self.url))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let err: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let code = err["error"]["code"].as_str().unwrap_or("error");
            let message = err["error"]["message"].as_str().unwrap_or(text.as_str());
            anyhow::bail!("{} {code}: {message}", status.as_u16());
        }
        Ok(if text.is_empty() { None } else { Some(serde_json::from_str(&text)?) })
    }

    async fn get(&self, path: &str, query: &[(&str, Option<String>)]) -> anyhow::Result<Value> {
        let q: Vec<String> =
            query.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v)))).collect();
        let path = if q.is_empty() { path.to_owned() } else { format!("{path}?{}", q.join("&")) };
        Ok(self.call(reqwest::Method::GET, &path, None).await?.unwrap_or(Value::Null))
    }
}

/// Percent-encode a query value (RFC 3986 unreserved characters stay).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn token(file: Option<&PathBuf>) -> anyhow::Result<String> {
    if let Some(f) = file {
        let t = std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?;
        return Ok(t.trim().to_owned());
    }
    for var in ["LATCHKEY_ADMIN_TOKEN", "LATCHKEY_ACCESS_TOKEN"] {
        if let Ok(t) = std::env::var(var)
            && !t.trim().is_empty()
        {
            return Ok(t.trim().to_owned());
        }
    }
    anyhow::bail!(
        "no credential: set LATCHKEY_ADMIN_TOKEN (or LATCHKEY_ADMIN_TOKEN_FILE, or an admin account's LATCHKEY_ACCESS_TOKEN)"
    )
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let api = Api { http: reqwest::Client::new(), url: args.url.clone(), token: token(args.token_file.as_ref())? };
    let json = args.json;
    let user = |u: &str| format!("/admin/v1/users/{}", encode(u));
    match args.command {
        AdminCommand::Users { command } => match command {
            UsersCommand::List { query, status, factor, page } => {
                let v = api
                    .get(
                        "/admin/v1/users",
                        &[
                            ("query", query),
                            ("status", status),
                            ("factor", factor),
                            ("limit", page.limit.map(|l| l.to_string())),
                            ("cursor", page.cursor),
                        ],
                    )
                    .await?;
                print_page(
                    &v,
                    json,
                    "users",
                    &["username", "status", "email", "phone", "factors", "devices", "last_seen_at", "created_at"],
                )
            }
            UsersCommand::Show { username } => {
                let v = api.get(&user(&username), &[]).await?;
                if json {
                    return print_json(&v);
                }
                let u: proto::AdminUser = serde_json::from_value(v)?;
                show_user(&u);
                Ok(())
            }
            UsersCommand::Create { username, email, phone, role, locale } => {
                let body = serde_json::json!({"username": username, "email": email, "phone": phone, "role": role, "locale": locale});
                let v = api.call(reqwest::Method::POST, "/admin/v1/users", Some(body)).await?.unwrap_or(Value::Null);
                if json {
                    return print_json(&v);
                }
                println!(
                    "invited {username}: the invitation went to {} and works until {}",
                    text(&v["destination"]),
                    text(&v["expires_at"])
                );
                Ok(())
            }
            UsersCommand::Delete { username, yes } => {
                if !yes {
                    anyhow::bail!("deleting {username} cannot be undone: add --yes");
                }
                done(&api, reqwest::Method::DELETE, &user(&username), None, &format!("deleted {username}")).await
            }
            UsersCommand::Disable { username } => {
                done(
                    &api,
                    reqwest::Method::POST,
                    &format!("{}/disable", user(&username)),
                    None,
                    &format!("disabled {username}"),
                )
                .await
            }
            UsersCommand::Enable { username } => {
                done(
                    &api,
                    reqwest::Method::POST,
                    &format!("{}/enable", user(&username)),
                    None,
                    &format!("enabled {username}"),
                )
                .await
            }
            UsersCommand::Unlock { username } => {
                done(
                    &api,
                    reqwest::Method::POST,
                    &format!("{}/unlock", user(&username)),
                    None,
                    &format!("unlocked {username}"),
                )
                .await
            }
            UsersCommand::RevokeSessions { username } => {
                let said = format!("ended every session of {username}");
                done(&api, reqwest::Method::DELETE, &format!("{}/sessions", user(&username)), None, &said).await
            }
            UsersCommand::RequirePasswordChange { username } => {
                let said = format!("{username} must choose a new password at the next sign-in");
                done(&api, reqwest::Method::POST, &format!("{}/require-password-change", user(&username)), None, &said)
                    .await
            }
            UsersCommand::ResetFactor { username, factor_id } => {
                let path = format!("{}/factors/{}", user(&username), encode(&factor_id));
                done(&api, reqwest::Method::DELETE, &path, None, &format!("removed factor {factor_id} of {username}"))
                    .await
            }
            UsersCommand::RevokeDevice { username, device_id } => {
                let path = format!("{}/devices/{}", user(&username), encode(&device_id));
                done(&api, reqwest::Method::DELETE, &path, None, &format!("revoked device {device_id} of {username}"))
                    .await
            }
            UsersCommand::Role { username, role } => {
                let value = if role == "none" { Value::Null } else { Value::String(role.clone()) };
                let body = serde_json::json!({ "role": value });
                done(
                    &api,
                    reqwest::Method::PUT,
                    &format!("{}/role", user(&username)),
                    Some(body),
                    &format!("{username}: role {role}"),
                )
                .await
            }
        },
        AdminCommand::Audit { user, kind, outcome, since, until, page } => {
            let v = api
                .get(
                    "/admin/v1/audit",
                    &[
                        ("user", user),
                        ("kind", kind),
                        ("outcome", outcome),
                        ("since", since),
                        ("until", until),
                        ("limit", page.limit.map(|l| l.to_string())),
                        ("cursor", page.cursor),
                    ],
                )
                .await?;
            print_page(&v, json, "events", &["at", "kind", "outcome", "user_id", "ip", "detail"])
        }
        AdminCommand::Outbox { command: Some(OutboxCommand::Requeue { id }), .. } => {
            let path = format!("/admin/v1/outbox/{}/requeue", encode(&id));
            done(&api, reqwest::Method::POST, &path, None, &format!("queued {id} again")).await
        }
        AdminCommand::Outbox { status, page, command: None } => {
            let v = api
                .get(
                    "/admin/v1/outbox",
                    &[("status", status), ("limit", page.limit.map(|l| l.to_string())), ("cursor", page.cursor)],
                )
                .await?;
            print_page(
                &v,
                json,
                "messages",
                &["id", "created_at", "channel", "provider", "recipient", "status", "attempts", "last_error"],
            )
        }
        AdminCommand::Summary { days } => {
            let v = api.get("/admin/v1/summary", &[("days", Some(days.to_string()))]).await?;
            if json {
                return print_json(&v);
            }
            let s: proto::AdminSummary = serde_json::from_value(v)?;
            show_summary(&s);
            Ok(())
        }
    }
}

async fn done(api: &Api, method: reqwest::Method, path: &str, body: Option<Value>, said: &str) -> anyhow::Result<()> {
    api.call(method, path, body).await?;
    println!("{said}");
    Ok(())
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A value as a table cell: strings as they are, lists joined, nothing as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(","),
        Value::Object(o) if o.is_empty() => "-".into(),
        other => other.to_string(),
    }
}

/// Rows as aligned columns, each cell cut to 40 characters.
fn table(columns: &[&str], rows: &[Vec<String>]) -> String {
    let cut = |s: &str| -> String {
        let s: String = s.chars().filter(|c| !c.is_control()).collect();
        if s.chars().count() > 40 { format!("{}…", s.chars().take(39).collect::<String>()) } else { s }
    };
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| cut(c)).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| rows.iter().map(|r| r[i].chars().count()).chain([c.len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count()))).collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out =
        vec![line(columns.iter().map(|c| c.to_uppercase()).collect::<Vec<_>>().iter().map(String::as_str).collect())];
    out.extend(rows.iter().map(|r| line(r.iter().map(String::as_str).collect())));
    out.join("\n")
}

fn print_page(v: &Value, json: bool, key: &str, columns: &[&str]) -> anyhow::Result<()> {
    if json {
        return print_json(v);
    }
    let items = v[key].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = items.iter().map(|i| columns.iter().map(|c| text(&i[*c])).collect()).collect();
    println!("{}", table(columns, &rows));
    match v["next_cursor"].as_str() {
        Some(c) => eprintln!("{} shown; more with --cursor {c}", rows.len()),
        None => eprintln!("{} shown", rows.len()),
    }
    Ok(())
}

fn show_user(u: &proto::AdminUser) {
    let field = |k: &str, v: String| println!("{k:<22}{v}");
    field("username", u.username.clone());
    field("id", u.id.clone());
    field("status", u.status.clone());
    let verified = |v: bool| if v { " (verified)" } else { "" };
    field("email", format!("{}{}", u.email.as_deref().unwrap_or("-"), verified(u.email_verified)));
    field("phone", format!("{}{}", u.phone.as_deref().unwrap_or("-"), verified(u.phone_verified)));
    field("admin role", u.admin_role.clone().unwrap_or_else(|| "-".into()));
    field("must change password", u.must_change_password.to_string());
    field("created", u.created_at.clone());
    println!("\nFACTORS");
    let rows: Vec<Vec<String>> = u
        .factors
        .factors
        .iter()
        .map(|f| vec![f.id.clone(), f.kind.clone(), f.state.clone(), f.created_at.clone()])
        .collect();
    println!("{}", table(&["id", "type", "state", "created_at"], &rows));
    println!("\nDEVICES");
    let rows: Vec<Vec<String>> = u
        .devices
        .devices
        .iter()
        .map(|d| vec![d.id.clone(), d.name.clone(), d.platform.clone(), d.created_at.clone()])
        .collect();
    println!("{}", table(&["id", "name", "platform", "created_at"], &rows));
    println!("\nSESSIONS");
    let rows: Vec<Vec<String>> = u
        .sessions
        .sessions
        .iter()
        .map(|s| vec![s.id.clone(), s.acr.clone(), s.created_at.clone(), s.ip.clone().unwrap_or_default()])
        .collect();
    println!("{}", table(&["id", "acr", "created_at", "ip"], &rows));
    println!("\nRECENT EVENTS");
    let rows: Vec<Vec<String>> =
        u.recent_events.iter().take(20).map(|e| vec![e.at.clone(), e.kind.clone(), e.outcome.clone()]).collect();
    println!("{}", table(&["at", "kind", "outcome"], &rows));
}

fn show_summary(s: &proto::AdminSummary) {
    println!(
        "accounts: {} ({})",
        s.users,
        s.users_by_status.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    );
    let factors: Vec<String> = s.users_by_factor.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("second factors: {}; none {}", factors.join(", "), s.users_without_factor);
    println!("\nSIGN-IN FUNNEL since {}", s.since);
    let mut steps: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for p in &s.funnel {
        *steps.entry((p.step.clone(), p.outcome.clone())).or_default() += p.count;
    }
    let rows: Vec<Vec<String>> = steps.into_iter().map(|((st, o), n)| vec![st, o, n.to_string()]).collect();
    println!("{}", table(&["step", "outcome", "count"], &rows));
    println!("\nDELIVERY");
    let rows: Vec<Vec<String>> = s
        .delivery
        .iter()
        .map(|d| vec![d.provider.clone(), d.status.clone(), d.count.to_string(), d.retried.to_string()])
        .collect();
    println!("{}", table(&["provider", "status", "count", "retried"], &rows));
    println!("\nOUTBOX DEPTH");
    let rows: Vec<Vec<String>> =
        s.outbox_depth.iter().map(|d| vec![d.provider.clone(), d.status.clone(), d.count.to_string()]).collect();
    println!("{}", table(&["provider", "status", "count"], &rows));
}
