//! `latchkey`: the server and its tools in one binary.

mod admin;
mod app_integrity;
mod backup;
mod bench;
mod bench_codes;
mod bench_kit;
mod bench_outbox;
mod bench_tokens;
mod bench_totp;
mod device;
mod import;
mod passkey;

use clap::{Args, Parser, Subcommand};
use latchkey_core::clock::SystemClock;
use latchkey_server::Server;
use latchkey_server::config::{Config, Overrides};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "latchkey", version, about = "Latchkey: authentication for mobile apps")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (SQLite in ./latchkey-data unless told otherwise).
    Serve(Common),
    /// Apply database migrations and exit.
    Migrate(Common),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the development outbox: messages that were not sent because no provider is configured.
    Outbox {
        #[command(flatten)]
        common: Common,
        /// One JSON object per line: channel, to, subject, body, created_at.
        #[arg(long)]
        json: bool,
    },
    /// Key files: rotate the token-signing key (docs/operations.md, "Rotating keys").
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Write one archive of the database (SQLite; PostgreSQL is dumped with pg_dump) and every
    /// key file, taken while the server runs.
    Backup {
        #[command(flatten)]
        common: Common,
        /// The archive to write (a new file, mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Unpack a `latchkey backup` archive into a new data directory, checking every file.
    Restore {
        /// The archive.
        #[arg(long)]
        from: PathBuf,
        /// The data directory to create (it must be empty or missing).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Print the current code of an authenticator-app secret (Base32), for testing.
    Totp {
        /// The Base32 secret (`setup_totp`'s `secret`).
        secret: String,
        /// Unix time to compute the code for (default: now).
        #[arg(long)]
        at: Option<u64>,
    },
    /// Print the OpenAPI 3.1 document (docs/openapi.json is this output).
    Openapi,
    /// A device emulator (the SDK with software keys): enrol, sign in by biometric key or PIN.
    Device {
        #[command(subcommand)]
        command: device::DeviceCommand,
    },
    /// A software passkey authenticator: register a passkey and sign in with it, no username.
    Passkey {
        #[command(subcommand)]
        command: passkey::PasskeyCommand,
    },
    /// Development Play Integrity keys and verdicts: try the genuine-app gate from a terminal.
    AppIntegrity {
        #[command(subcommand)]
        command: app_integrity::AppIntegrityCommand,
    },
    /// The admin API from a terminal: users, the audit log, the outbox, the summary.
    Admin(admin::AdminArgs),
    /// Import accounts from another system (JSON Lines; docs/migration.md). Exits 2 when rows
    /// were refused.
    Import {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: import::ImportArgs,
    },
    /// Load generators that drive real flows over HTTP.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// One step of a key rotation; restart every replica after each step.
    Rotate {
        #[command(flatten)]
        common: Common,
        /// The token-signing key: without a flag, stage a new key (published, not signing).
        #[arg(long, required = true)]
        jwt: bool,
        /// Sign with the staged key; the current one stays published and accepted, as retired.
        #[arg(long, conflicts_with = "retire")]
        activate: bool,
        /// Remove the retired key: the tokens it signed are refused from then.
        #[arg(long)]
        retire: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print it (secrets redacted).
    Check(Common),
}

#[derive(Args, Clone)]
struct Common {
    /// A TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (LATCHKEY_LISTEN).
    #[arg(long)]
    listen: Option<String>,
    /// Data directory: SQLite database and keys (LATCHKEY_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Database URL, sqlite:… or postgres://… (LATCHKEY_DATABASE_URL).
    #[arg(long)]
    database_url: Option<String>,
    /// Serve HTTPS with this PEM certificate chain, reloaded when it changes (LATCHKEY_TLS_CERT).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key (LATCHKEY_TLS_KEY).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl Common {
    fn load(&self) -> anyhow::Result<Config> {
        let overrides = Overrides {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
        };
        let loaded = Config::load(self.config.as_deref(), &overrides)?;
        for w in &loaded.warnings {
            eprintln!("warning: {w}");
        }
        Ok(loaded.config)
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(c) => serve(c.load()?).await,
        Command::Migrate(c) => {
            let config = c.load()?;
            if config.database_url.is_none() {
                latchkey_server::keys::create_data_dir(&config.data_dir)?;
            }
            let db = latchkey_store::Database::open(&config.database_url(), &Default::default()).await?;
            db.migrate().await?;
            println!("migrated the {} database", db.kind());
            Ok(())
        }
        Command::Config { command: ConfigCommand::Check(c) } => {
            let config = c.load()?;
            print!("{}", config.redacted_toml()?);
            eprintln!("configuration is valid");
            Ok(())
        }
        Command::Outbox { common, json } => outbox(common.load()?, json).await,
        Command::Import { common, args } => {
            if import::run(common.load()?, args).await? {
                Ok(())
            } else {
                // Rows were refused (listed above): a status of its own, so scripts can tell.
                std::process::exit(2)
            }
        }
        Command::Totp { secret, at } => {
            let cleaned: String =
                secret.chars().filter(|c| !c.is_whitespace() && *c != '=').collect::<String>().to_uppercase();
            let key = data_encoding::BASE32_NOPAD
                .decode(cleaned.as_bytes())
                .map_err(|e| anyhow::anyhow!("not Base32: {e}"))?;
            let now = at.unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp().try_into().unwrap_or(0));
            println!("{}", latchkey_core::factors::totp::totp_at(&key, now, &Default::default()));
            Ok(())
        }
        Command::Openapi => {
            println!("{}", latchkey_server::http::openapi_json());
            Ok(())
        }
        Command::Keys { command: KeysCommand::Rotate { common, jwt: _, activate, retire } } => {
            use latchkey_server::keys::JwtRotation;
            let config = common.load()?;
            let open = latchkey_store::OpenOptions { existing_only: true, ..Default::default() };
            let db = latchkey_store::Database::open(&config.database_url(), &open).await?;
            let step = match (activate, retire) {
                (true, _) => JwtRotation::Activate,
                (_, true) => JwtRotation::Retire,
                _ => JwtRotation::Stage,
            };
            let said = latchkey_server::keys::rotate_jwt(
                &config.data_dir,
                db.store().as_ref(),
                step,
                time::OffsetDateTime::now_utc(),
            )
            .await?;
            db.close().await;
            eprintln!("latchkey: {said}");
            Ok(())
        }
        Command::Backup { common, out } => backup::backup(&common.load()?, &out).await,
        Command::Restore { from, data_dir } => backup::restore(&from, &data_dir).await,
        Command::Device { command } => device::run(command).await,
        Command::Passkey { command } => passkey::run(command).await,
        Command::AppIntegrity { command } => app_integrity::run(command).await,
        Command::Bench { command } => bench::run(command).await,
        Command::Admin(args) => admin::run(args).await,
    }
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    latchkey_server::init_logging(&config);
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    // Without a public URL the server is its own issuer and DPoP target: name the address it got
    // (`--listen 127.0.0.1:0` picks a port).
    if config.public_url.is_none() {
        config.public_url = Some(format!("{}://{addr}", config.scheme()));
    }
    if let Some(w) = config.plain_http_warning() {
        tracing::warn!("{w}");
    }
    let server = Server::build(&config, Arc::new(SystemClock)).await?;
    let data_dir = std::fs::canonicalize(&config.data_dir).unwrap_or(config.data_dir.clone());
    let outbox_hint = (config.smtp_url.is_none() || config.sms_webhook_url.is_none())
        .then(|| format!("latchkey outbox --data-dir {}", data_dir.display()));
    if config.log_format == "json" {
        // One JSON object per line like every other log line, for log shippers.
        for f in &server.created_files {
            tracing::info!(file = %f, "created key file");
        }
        tracing::info!(
            url = %format!("{}://{addr}", config.scheme()),
            data_dir = %data_dir.display(),
            database = server.db.kind(),
            metrics = server.metrics_addr.map(|a| format!("http://{a}/metrics")),
            admin = server.admin_addr.map(|a| format!("http://{a}/admin/v1")),
            development_outbox = outbox_hint,
            version = env!("CARGO_PKG_VERSION"),
            "listening"
        );
    } else {
        for f in &server.created_files {
            eprintln!("latchkey: created key file {f}");
        }
        eprintln!("latchkey: listening on {}://{addr}", config.scheme());
        eprintln!("latchkey: data directory {} ({} database)", data_dir.display(), server.db.kind());
        if let Some(a) = server.metrics_addr {
            eprintln!("latchkey: metrics on http://{a}/metrics");
        }
        if let Some(a) = server.admin_addr {
            eprintln!("latchkey: admin API on http://{a}/admin/v1");
        }
        if let Some(hint) = outbox_hint {
            eprintln!("latchkey: messages without a provider go to the development outbox: `{hint}`");
        }
    }
    server.serve(listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

async fn outbox(config: Config, json: bool) -> anyhow::Result<()> {
    // Read-only: never creates a data directory, keys or a database where there were none.
    let (ring, _) = latchkey_server::keys::load(&config.data_dir, false)?;
    let open = latchkey_store::OpenOptions { existing_only: true, ..Default::default() };
    let db = latchkey_store::Database::open(&config.database_url(), &open).await?;
    let messages =
        latchkey_server::outbox::read(db.store().as_ref(), &ring.keys, latchkey_server::delivery::DEV).await?;
    for m in messages {
        if json {
            println!("{}", serde_json::to_string(&m)?);
        } else {
            println!("{}  {} to {}\n  {}\n  {}\n", m.created_at, m.channel, m.to, m.subject, m.body);
        }
    }
    Ok(())
}
