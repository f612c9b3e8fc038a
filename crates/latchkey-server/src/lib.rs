//! The Latchkey server: configuration, keys, the HTTP adapter, token signing and delivery.

pub mod config;
pub mod delivery;
pub mod dpop;
pub mod events;
mod hashing;
pub mod hooks;
pub mod http;
pub mod jwt;
pub mod keys;
mod listen;
pub mod outbox;
pub mod push;
pub mod risk_sources;
pub mod telemetry;
pub mod tls;
pub mod twilio;
pub mod webhook;
pub mod worker;

use config::Config;
use latchkey_core::clock::Clock;
use latchkey_core::crypto::Keys;
use latchkey_core::factors::password::SecretHasher;
use latchkey_core::secret::{OsRandom, Random};
use latchkey_core::{Auth, AuthParts};
use latchkey_store::{Database, OpenOptions};
use std::sync::Arc;

/// A server ready to serve.
pub struct Server {
    /// The router.
    pub router: axum::Router,
    /// The domain service (tests reach the store through it).
    pub auth: Auth,
    /// The database.
    pub db: Database,
    /// The keys (to read the development outbox).
    pub keys: Keys,
    /// Files created at start-up (keys), for the start-up message.
    pub created_files: Vec<String>,
    /// Where `/metrics` is served when `metrics_listen` is set.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where `/admin/v1/…` is served when `admin_listen` is set.
    pub admin_addr: Option<std::net::SocketAddr>,
    /// The extra listeners and what they serve.
    extra: Vec<(tokio::net::TcpListener, axum::Router)>,
    /// TLS for every listener, when configured, and how often its files are looked at.
    tls: Option<(Arc<tls::Tls>, std::time::Duration)>,
    worker: worker::Worker,
    http: config::HttpConfig,
}

pub use telemetry::metrics_handle;

/// Install the JSON (or pretty) log subscriber. Call once, from the binary.
pub fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if config.log_format == "pretty" {
        builder.try_init()
    } else {
        builder.json().with_current_span(true).with_span_list(false).flatten_event(true).try_init()
    };
}

impl Server {
    /// Open the database, migrate, load or create keys, and assemble the service.
    pub async fn build(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        Self::build_with(
            config,
            clock,
            OpenOptions { max_connections: config.database_max_connections, ..Default::default() },
        )
        .await
    }

    /// As [`Server::build`] with explicit database options (tests use a PostgreSQL schema each).
    pub async fn build_with(config: &Config, clock: Arc<dyn Clock>, open: OpenOptions) -> anyhow::Result<Self> {
        config.validate()?;
        // Before anything is created: a wrong certificate path stops the start at once.
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some((
                Arc::new(tls::Tls::load(cert, key)?),
                std::time::Duration::from_secs(config.tls_reload_secs.max(1)),
            )),
            _ => None,
        };
        keys::create_data_dir(&config.data_dir)?;
        let db = Database::open(&config.database_url(), &open)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;
        db.migrate().await.map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
        let (ring, created_files) = keys::load_checked(&config.data_dir, db.store().as_ref(), clock.now()).await?;
        let mut settings = config.policy.clone();
        if settings.tokens.issuer == latchkey_core::settings::TokenSettings::default().issuer {
            settings.tokens.issuer = config.issuer();
        }
        let signer = Arc::new(jwt::JwtSigner::new(
            &ring.signing,
            &ring.published,
            &settings.tokens.issuer,
            &settings.tokens.audience,
        )?);
        let rng: Arc<dyn Random> = Arc::new(OsRandom);
        let concurrency = config
            .hash_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
        let hasher = SecretHasher::new(ring.keys.pepper.clone(), config.argon2, concurrency, rng.clone())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
            .with_runner(hashing::low_priority_runner(concurrency, db.writes_waiting())?);
        let wakeup = Arc::new(tokio::sync::Notify::new());
        let store = db.store();
        let risk = risk_sources::load(&settings.risk)?;
        let auth = Auth::new(AuthParts {
            store: store.clone(),
            clock: clock.clone(),
            rng,
            keys: ring.keys.clone(),
            hasher,
            signer: signer.clone(),
            settings,
            routes: delivery::routes(config),
            outbox_wakeup: wakeup.clone(),
            risk,
            webhooks: config.webhooks.iter().map(config::WebhookConfig::endpoint).collect(),
            hooks: Arc::new(hooks::HttpHooks::new(&config.hooks, clock.clone())?),
        });
        let worker = worker::Worker {
            store,
            clock,
            keys: ring.keys.clone(),
            senders: delivery::Senders::new(config)?,
            config: config.outbox.clone(),
            wakeup,
            auth: auth.clone(),
        };
        let state = http::AppState {
            auth: auth.clone(),
            signer,
            metrics: metrics_handle(),
            openapi: Arc::new(http::openapi_json_for(&config.policy.attributes)),
            admin_token: config.admin_token.as_deref().map(Arc::from),
            backends: Arc::new(
                config.backends.iter().map(|b| (b.client_id.clone(), b.client_secret.clone())).collect(),
            ),
            trust_forwarded_for: config.trust_forwarded_for,
            database_kind: db.kind(),
            request_timeout: std::time::Duration::from_secs(config.http.request_timeout_secs.max(1)),
        };
        let body_timeout = std::time::Duration::from_secs(config.http.body_timeout_secs.max(1));
        let surfaces = http::Surfaces {
            api: true,
            metrics: config.metrics_listen.is_none(),
            admin: config.admin_listen.is_none(),
        };
        let build = |surfaces| {
            http::router_for(state.clone(), surfaces)
                .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(body_timeout))
        };
        let router = build(surfaces);
        let mut extra = vec![];
        let (mut metrics_addr, mut admin_addr) = (None, None);
        for (addr, surfaces, slot) in [
            (&config.metrics_listen, http::Surfaces { api: false, metrics: true, admin: false }, &mut metrics_addr),
            (&config.admin_listen, http::Surfaces { api: false, metrics: false, admin: true }, &mut admin_addr),
        ] {
            if let Some(addr) = addr {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
                *slot = Some(listener.local_addr()?);
                extra.push((listener, build(surfaces)));
            }
        }
        Ok(Self {
            router,
            auth,
            db,
            keys: ring.keys,
            created_files,
            metrics_addr,
            admin_addr,
            extra,
            tls,
            worker,
            http: config.http.clone(),
        })
    }

    /// Serve on `listener` (and run the outbox worker) until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let worker = tokio::spawn(self.worker.run(stop_rx.clone()));
        let mut extras = tokio::task::JoinSet::new();
        let acceptor = self.tls.as_ref().map(|(t, _)| t.acceptor());
        if let Some((t, every)) = &self.tls {
            extras.spawn(t.clone().watch(*every, stop_rx.clone()));
        }
        for (l, router) in self.extra {
            let (http, mut stop, tls) = (self.http.clone(), stop_rx.clone(), acceptor.clone());
            extras.spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = listen::serve(l, router, &http, tls, stopped).await {
                    tracing::error!(error = %e, "an operations listener failed");
                }
            });
        }
        listen::serve(listener, self.router, &self.http, acceptor, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await?;
        while extras.join_next().await.is_some() {}
        let _ = worker.await;
        Ok(())
    }
}
