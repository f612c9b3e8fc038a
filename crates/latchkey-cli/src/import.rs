//! `latchkey import FILE`: accounts from another system, as JSON Lines (docs/migration.md).
//! Streamed a batch at a time (memory stays flat whatever the file's size), each batch one
//! transaction; running it again after a kill or a failure imports only what is missing. A
//! progress bar with rate and ETA on a terminal, progress lines otherwise, and a summary of what
//! was refused and why. Nothing printed ever holds a password hash or a secret.

use latchkey_core::account::{ImportRow, Imported};
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `latchkey import`'s options.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// The JSON Lines file (`-` for standard input).
    pub file: PathBuf,
    /// Check every row and report, writing nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Rows per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub batch: u32,
    /// Write every refused row here as JSON Lines: `{"line", "username", "reason"}`.
    #[arg(long)]
    pub rejects: Option<PathBuf>,
}

/// A line's JSON error without the values it quotes (a hash in the wrong place must not be
/// echoed).
fn scrubbed(e: &serde_json::Error) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in e.to_string().chars() {
        match (c, quoted) {
            ('"', false) => {
                quoted = true;
                out.push_str("\"…");
            }
            ('"', true) => {
                quoted = false;
                out.push('"');
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

fn parse(line: &str) -> Result<ImportRow, String> {
    serde_json::from_str(line).map_err(|e| format!("not a row: {}", scrubbed(&e)))
}

/// Progress on a terminal (a bar redrawn in place) or as plain lines.
struct Progress {
    total_bytes: Option<u64>,
    started: Instant,
    last: Instant,
    terminal: bool,
}

impl Progress {
    fn show(&mut self, rows: u64, bytes: u64, done: bool) {
        let every = if self.terminal { Duration::from_millis(200) } else { Duration::from_secs(10) };
        if !done && self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = rows as f64 / secs;
        let fraction = self.total_bytes.filter(|t| *t > 0).map(|t| (bytes as f64 / t as f64).min(1.0));
        let eta = fraction.filter(|f| *f > 0.0).map(|f| secs * (1.0 - f) / f);
        let eta = eta.map_or("?".to_owned(), |s| format!("{}:{:02}", (s as u64) / 60, (s as u64) % 60));
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let width = 30;
            let filled = fraction.map_or(0, |f| (f * width as f64) as usize);
            let bar: String = "#".repeat(filled) + &".".repeat(width - filled);
            let pct = fraction.map_or("  ?".to_owned(), |f| format!("{:3.0}", f * 100.0));
            let _ = write!(err, "\r[{bar}] {pct}%  {rows} rows  {rate:.0}/s  ETA {eta}  ");
            if done {
                let _ = writeln!(err);
            }
        } else {
            let pct = fraction.map_or(String::new(), |f| format!(" ({:.0}%)", f * 100.0));
            let _ = writeln!(err, "progress: {rows} rows{pct}, {rate:.0} rows/s, ETA {eta}");
        }
    }
}

/// Run the import against the configured database.
pub async fn run(mut config: latchkey_server::config::Config, args: ImportArgs) -> anyhow::Result<bool> {
    // The import opens the database and keys as the server does, but serves nothing.
    config.metrics_listen = None;
    config.admin_listen = None;
    let server =
        latchkey_server::Server::build(&config, std::sync::Arc::new(latchkey_core::clock::SystemClock)).await?;
    let admin = server.auth.admin();
    let (reader, total_bytes): (Box<dyn BufRead>, Option<u64>) = if args.file.as_os_str() == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f = std::fs::File::open(&args.file).map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(std::io::BufReader::with_capacity(1 << 20, f)), len)
    };
    let mut rejects = match &args.rejects {
        Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => None,
    };
    let now = Instant::now();
    let mut progress = Progress { total_bytes, started: now, last: now, terminal: std::io::stderr().is_terminal() };
    let (mut created, mut exists, mut refused) = (0u64, 0u64, 0u64);
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut shown = 0;
    let (mut line_no, mut bytes) = (0u64, 0u64);
    let mut lines = reader.lines();
    loop {
        // One batch: its rows, with their line numbers and usernames (for the report).
        let mut rows = Vec::new();
        let mut meta = Vec::new();
        for line in lines.by_ref() {
            let line = line?;
            line_no += 1;
            bytes += line.len() as u64 + 1;
            if line.trim().is_empty() {
                continue;
            }
            let row = parse(&line);
            let username = row.as_ref().map(|r| r.username.clone()).ok();
            rows.push(row);
            meta.push((line_no, username));
            if rows.len() == args.batch as usize {
                break;
            }
        }
        if rows.is_empty() {
            break;
        }
        let outcomes = admin.import(rows, args.dry_run).await?;
        for (outcome, (line, username)) in outcomes.into_iter().zip(meta) {
            match outcome {
                Imported::Created => created += 1,
                Imported::Exists => exists += 1,
                Imported::Rejected(reason) => {
                    refused += 1;
                    let kind = reason.split(':').next().unwrap_or(&reason).to_owned();
                    *reasons.entry(kind).or_default() += 1;
                    if shown < 20 {
                        shown += 1;
                        if progress.terminal {
                            eprintln!();
                        }
                        eprintln!("line {line}: {reason}");
                    }
                    if let Some(w) = rejects.as_mut() {
                        let j = serde_json::json!({"line": line, "username": username, "reason": reason});
                        writeln!(w, "{j}")?;
                    }
                }
            }
        }
        progress.show(created + exists + refused, bytes, false);
    }
    progress.show(created + exists + refused, bytes, true);
    if let Some(mut w) = rejects {
        w.flush()?;
    }
    let verb = if args.dry_run { "would import" } else { "imported" };
    println!("{verb} {created}, already there {exists}, refused {refused}");
    for (kind, n) in &reasons {
        println!("  refused for {kind}: {n}");
    }
    Ok(refused == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_row_is_reported_without_the_values_it_holds() {
        let e = parse(r#"{"username": "ann", "password_hash": 42, "email_verified": "$2b$10$secret"}"#).unwrap_err();
        assert!(!e.contains("$2b$10$secret"), "{e}");
        let e = parse(r#"{"username": "ann", "email_verified": "$2b$10$secret"}"#).unwrap_err();
        assert!(!e.contains("secret") && e.contains("not a row"), "{e}");
        let e = parse(r#"{"username": "ann", "passwd": "x"}"#).unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
