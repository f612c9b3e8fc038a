//! Test-only: a real Latchkey server on `127.0.0.1:0` with a fake clock, driven over HTTP
//! through the SDK. SQLite always; PostgreSQL when `LATCHKEY_TEST_DATABASE_URL` is set (each
//! server gets its own schema, so tests run in parallel on one database).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use latchkey_client::Client;
use latchkey_core::clock::FakeClock;
use latchkey_server::Server;
use latchkey_server::config::Config;
use latchkey_server::outbox::DevMessage;
use latchkey_store::{Database, OpenOptions};
use std::sync::{Arc, Mutex, OnceLock};

pub use latchkey_client;
pub use latchkey_proto as proto;

/// The admin token every test server accepts.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";
/// The user agent of [`TestServer::client`].
pub const USER_AGENT: &str = "latchkey-testkit";

/// Which store a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file.
    Sqlite,
    /// A fresh schema in `LATCHKEY_TEST_DATABASE_URL`.
    Postgres,
}

impl Backend {
    /// Whether this backend can run here; says so loudly when it cannot.
    pub fn available(self) -> bool {
        match self {
            Backend::Sqlite => true,
            Backend::Postgres => {
                let set = std::env::var("LATCHKEY_TEST_DATABASE_URL").is_ok();
                if !set {
                    // In CI a skip must not pass for a success.
                    assert!(
                        std::env::var("CI").is_err(),
                        "CI must set LATCHKEY_TEST_DATABASE_URL: PostgreSQL tests cannot be skipped there"
                    );
                    eprintln!("SKIPPED on PostgreSQL: set LATCHKEY_TEST_DATABASE_URL to run this test there");
                }
                set
            }
        }
    }
}

fn machine_lock() -> &'static Arc<tokio::sync::RwLock<()>> {
    static LOCK: OnceLock<Arc<tokio::sync::RwLock<()>>> = OnceLock::new();
    LOCK.get_or_init(|| Arc::new(tokio::sync::RwLock::new(())))
}

/// Held by every ordinary test: many run at once.
pub async fn shared_machine() -> tokio::sync::OwnedRwLockReadGuard<()> {
    machine_lock().clone().read_owned().await
}

/// Held by a test that measures time: no other test of this process runs meanwhile, so the
/// measurement is not another test's load (a 2-core machine under the whole suite varies by
/// ±20 ms between two identical requests).
pub async fn exclusive_machine() -> tokio::sync::OwnedRwLockWriteGuard<()> {
    machine_lock().clone().write_owned().await
}

/// Logs of every test server in this process, as JSON lines (for checks that no secret is logged).
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().map(|b| b.clone()).unwrap_or_default()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn install_log_capture() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let buf = log_buffer().clone();
        let _ = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,sqlx=warn,hyper=info,reqwest=info,h2=info,rustls=info",
            ))
            .with_writer(move || Capture(buf.clone()))
            .try_init();
    });
}

/// A running server and what a test needs to drive it.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The server's clock.
    pub clock: FakeClock,
    /// The configuration it runs with.
    pub config: Config,
    /// Its database (for dumps and fault injection).
    pub db: Database,
    /// The domain service (for the store).
    pub auth: latchkey_core::Auth,
    /// `http://…` of the `metrics_listen` listener, when configured.
    pub metrics_url: Option<String>,
    /// `http://…` of the `admin_listen` listener, when configured.
    pub admin_url: Option<String>,
    keys: latchkey_core::crypto::Keys,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    open: OpenOptions,
}

/// A configuration for a test: fresh data directory, fresh database, admin token, fast outbox.
pub fn test_config(backend: Backend) -> (Config, OpenOptions) {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let dir = std::env::temp_dir().join(format!("latchkey-test-{id}"));
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.clone(),
        admin_token: Some(ADMIN_TOKEN.into()),
        dev_log_message_bodies: false,
        hash_concurrency: Some(2),
        ..Default::default()
    };
    config.outbox.poll_interval_ms = 25;
    // Recovery's clocks in seconds, so tests of other things can add a phone and use it at once
    // or reset a password without a 72-hour wait; recovery tests set the real values they test.
    config.policy.recovery.delay_secs = 60;
    config.policy.recovery.phone_change_cooldown_secs = 0;
    config.policy.recovery.email_change_cooldown_secs = 0;
    // Every test client comes from 127.0.0.1, and tests of lockouts fail many passwords from
    // it: no risk `delay` (3 s a request) unless a test sets the one it tests.
    config.policy.risk.delay_secs = 0;
    let mut open = OpenOptions { max_connections: Some(8), ..Default::default() };
    match backend {
        Backend::Sqlite => {
            config.database_url = Some(format!("sqlite://{}?mode=rwc", dir.join("latchkey.db").display()))
        }
        Backend::Postgres => {
            config.database_url = std::env::var("LATCHKEY_TEST_DATABASE_URL").ok();
            open.pg_schema = Some(format!("t_{id}"));
        }
    }
    (config, open)
}

impl TestServer {
    /// A server with the test defaults.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// A server with the test defaults changed by `f`.
    pub async fn start_with(backend: Backend, f: impl FnOnce(&mut Config)) -> Self {
        let (mut config, open) = test_config(backend);
        f(&mut config);
        Self::start_on(config, open, FakeClock::new(time::OffsetDateTime::now_utc())).await
    }

    /// Another replica on the same database, data directory and clock.
    pub async fn replica(&self) -> Self {
        self.replica_with(|_| {}).await
    }

    /// Another replica on the same database, data directory and clock, its configuration
    /// changed by `f` (another provider, say).
    pub async fn replica_with(&self, f: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.config.clone();
        f(&mut config);
        Self::start_on(config, self.open.clone(), self.clock.clone()).await
    }

    /// A server with exactly this configuration and clock.
    pub async fn start_on(mut config: Config, open: OpenOptions, clock: FakeClock) -> Self {
        install_log_capture();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("{}://{addr}", config.scheme());
        if config.public_url.is_none() {
            config.public_url = Some(url.clone());
        }
        let server = Server::build_with(&config, Arc::new(clock.clone()), open.clone())
            .await
            .expect("test server builds (is PostgreSQL reachable?)");
        let (db, auth, keys) = (server.db.clone(), server.auth.clone(), server.keys.clone());
        let metrics_url = server.metrics_addr.map(|a| format!("http://{a}"));
        let admin_url = server.admin_addr.map(|a| format!("http://{a}"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self { url, clock, config, db, auth, keys, metrics_url, admin_url, stop: Some(tx), task: Some(task), open }
    }

    /// `plaintext` sealed as the server seals a message body (for messages a test queues itself).
    pub fn seal(&self, aad: &str, plaintext: &str) -> String {
        self.keys.seal(&latchkey_core::secret::OsRandom, aad, plaintext.as_bytes()).unwrap()
    }

    /// The server's time, in Unix seconds.
    pub fn clock_unix(&self) -> i64 {
        use latchkey_core::clock::Clock;
        self.clock.now().unix_timestamp()
    }

    /// An SDK client with the test user agent.
    pub fn client(&self) -> Client {
        Client::with_user_agent(&self.url, USER_AGENT).unwrap()
    }

    /// An SDK client whose requests come, as a trusted proxy says (`X-Forwarded-For`; the
    /// server needs `trust_forwarded_for`), from `ip`, with the user agent `user_agent`.
    pub fn client_at(&self, ip: &str, user_agent: &str) -> Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-forwarded-for", reqwest::header::HeaderValue::from_str(ip).unwrap());
        let http = reqwest::Client::builder().user_agent(user_agent).default_headers(headers).build().unwrap();
        Client::with_http(&self.url, http)
    }

    /// A raw HTTP client (same user agent) for crafted requests.
    pub fn raw(&self) -> RawClient {
        RawClient { base: self.url.clone(), http: reqwest::Client::new() }
    }

    /// A raw HTTP client for another of the server's listeners (`metrics_url`, `admin_url`).
    pub fn raw_at(&self, base: &str) -> RawClient {
        RawClient { base: base.to_owned(), http: reqwest::Client::new() }
    }

    /// The development outbox, oldest first.
    pub async fn outbox(&self) -> Vec<DevMessage> {
        latchkey_server::outbox::read(self.auth.store().as_ref(), &self.keys, latchkey_server::delivery::DEV)
            .await
            .unwrap()
    }

    /// How many development messages went to `to`.
    pub async fn messages_to(&self, to: &str) -> usize {
        self.outbox().await.iter().filter(|m| m.to == to).count()
    }

    /// The newest code sent to `to`.
    pub async fn code_for(&self, to: &str) -> String {
        let messages = self.outbox().await;
        let m = messages.iter().rev().find(|m| m.to == to).unwrap_or_else(|| panic!("no message to {to}"));
        extract_code(&m.body)
    }

    /// Sign up and confirm `username` (email `<username>@example.com`).
    pub async fn create_user(&self, username: &str, password: &str) -> String {
        let email = format!("{username}@example.com");
        let c = self.client();
        let a = c
            .sign_up(&proto::SignUpRequest {
                username: username.into(),
                password: Some(password.into()),
                email: Some(email.clone()),
                phone: None,
                locale: None,
            })
            .await
            .unwrap();
        let code = self.code_for(&email).await;
        let done = c.confirm_sign_up(&a.flow_id, &code).await.unwrap();
        assert_eq!(done.next_step, proto::NextStep::Done);
        email
    }

    /// Sign in with a password and return the tokens.
    pub async fn sign_in(&self, username: &str, password: &str) -> proto::Tokens {
        let a = self.client().sign_in(username, password).await.unwrap();
        a.tokens.unwrap_or_else(|| panic!("expected tokens, got {:?}", a.next_step))
    }

    /// A passwordless account (username, phone, and an email verified inside the sign-up when
    /// given) with its first device, enrolled with `pin`: the device's id, its key store and the
    /// sign-up's tokens.
    pub async fn passwordless_account(
        &self,
        name: &str,
        phone: &str,
        email: Option<&str>,
        pin: &str,
    ) -> (String, latchkey_client::SoftwareKeystore, proto::Tokens) {
        self.passwordless_account_via(&self.client(), name, phone, email, pin).await
    }

    /// [`passwordless_account`](Self::passwordless_account) through the client `c` (another
    /// address for the server: a proxy in front of it, say).
    pub async fn passwordless_account_via(
        &self,
        c: &Client,
        name: &str,
        phone: &str,
        email: Option<&str>,
        pin: &str,
    ) -> (String, latchkey_client::SoftwareKeystore, proto::Tokens) {
        use proto::{Channel, NextStep};
        let req = proto::SignUpRequest {
            username: name.into(),
            password: None,
            email: email.map(str::to_owned),
            phone: Some(phone.into()),
            locale: None,
        };
        let a = c.sign_up(&req).await.unwrap();
        assert!(
            matches!(&a.next_step, NextStep::ConfirmSignUp { channel: Channel::Sms, .. }),
            "the phone is what a passwordless sign-up confirms: {:?}",
            a.next_step
        );
        let mut e = c.confirm_sign_up(&a.flow_id, &self.code_for(phone).await).await.unwrap();
        if let Some(email) = email {
            // The email is verified too, so it is a second proof from day one.
            assert!(matches!(&e.next_step, NextStep::VerifyCode { channel: Channel::Email, .. }), "{:?}", e.next_step);
            e = c.verify_code(&a.flow_id, &self.code_for(email).await).await.unwrap();
        }
        assert!(matches!(e.next_step, NextStep::EnrollDevice { .. }), "{:?}", e.next_step);
        assert!(e.tokens.is_none());
        let ks = latchkey_client::SoftwareKeystore::new();
        let (id, done) = c.enroll_device_step(&e, &ks, "First phone", "ios", pin).await.unwrap();
        let tokens = done.tokens.clone().unwrap_or_else(|| panic!("the first device completes the sign-up: {done:?}"));
        (id, ks, tokens)
    }

    /// Reset the password of an account with no second proof (its email only): `forgot-password`,
    /// the code and the new password, then `recovery_wait` out the delay. The final answer.
    pub async fn reset_password_by_waiting(&self, username: &str, email: &str, password: &str) -> proto::FlowAnswer {
        let c = self.client();
        let f = c.forgot_password(username).await.unwrap();
        let a = c.reset_password(&f.flow_id, &self.code_for(email).await, password).await.unwrap();
        let a = match a.next_step {
            proto::NextStep::SelectMfa { .. } => {
                c.select_mfa(&f.flow_id, proto::MfaMethod::RecoveryWait).await.unwrap()
            }
            _ => a,
        };
        assert!(matches!(a.next_step, proto::NextStep::RecoveryWait { .. }), "{:?}", a.next_step);
        let delay = i64::try_from(self.config.policy.recovery.delay_secs).unwrap();
        self.clock.advance(time::Duration::seconds(delay + 1));
        c.recovery_wait(&f.flow_id).await.unwrap()
    }

    /// Tell the server to stop, as a crash would from the database's point of view: its
    /// outbox worker stops renewing what it claimed.
    pub fn stop_now(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Stop serving (the database stays).
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The authenticator app's code for a Base32 secret at the server's time, `offset` steps away.
pub fn totp_code(secret_b32: &str, clock: &FakeClock, offset: i64) -> String {
    use latchkey_core::clock::Clock;
    use latchkey_core::factors::totp::{TotpAlgorithm, hotp, step_at};
    let secret = data_encoding::BASE32_NOPAD.decode(secret_b32.as_bytes()).unwrap();
    let now = u64::try_from(clock.now().unix_timestamp()).unwrap();
    let step = step_at(now, &Default::default()).checked_add_signed(offset).unwrap();
    hotp(&secret, step, 6, TotpAlgorithm::Sha1)
}

/// The 6-digit code in a message body.
pub fn extract_code(body: &str) -> String {
    body.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {body:?}"))
        .to_owned()
}

/// A response: status, headers, body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status.
    pub status: u16,
    /// Headers (lower-case names), in order.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl RawResponse {
    /// The body as JSON (`null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The claims of a JWT, unverified (tests read what the server put in its tokens).
pub fn jwt_claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).unwrap_or_default();
    let bytes = data_encoding::BASE64URL_NOPAD.decode(payload.as_bytes()).unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
}

/// Requests the SDK would never send (forged tokens, malformed bodies), with full responses.
#[derive(Clone)]
pub struct RawClient {
    base: String,
    http: reqwest::Client,
}

impl RawClient {
    /// A request with an optional bearer token and JSON body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> RawResponse {
        self.raw(method, path, bearer, body.map(|b| b.to_string()), &[]).await
    }

    /// Anything: raw body text and extra headers.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> RawResponse {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base)).header("user-agent", USER_AGENT);
        if let Some(b) = body {
            let typed = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
            if !typed {
                req = req.header("content-type", "application/json");
            }
            req = req.body(b);
        }
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        RawResponse { status, headers, body: resp.text().await.unwrap() }
    }
}

/// A phone with Android Key Attestation: software keys (shared with [`AndroidKeystore::keys`]),
/// and for each biometric key a certificate chain under a test root whose KeyDescription says
/// what [`AndroidKeystore::claims`] makes of the good case (a TEE key that needs a biometric for
/// every use, with the server's challenge).
#[derive(Clone)]
pub struct AndroidKeystore {
    /// The keys themselves.
    pub keys: latchkey_client::SoftwareKeystore,
    /// The attestation root the server must trust.
    pub root: Arc<latchkey_core::factors::attestation::testing::TestRoot>,
    /// Turns the good claims into the ones this phone makes.
    pub claims: fn(
        latchkey_core::factors::attestation::testing::Claims,
    ) -> latchkey_core::factors::attestation::testing::Claims,
    /// The biometric the phone declares.
    pub biometric: &'static str,
}

impl AndroidKeystore {
    /// An honest phone with a fingerprint reader under `root`.
    pub fn new(root: Arc<latchkey_core::factors::attestation::testing::TestRoot>) -> Self {
        AndroidKeystore { keys: latchkey_client::SoftwareKeystore::new(), root, claims: |c| c, biometric: "fpt" }
    }
}

impl latchkey_client::Keystore for AndroidKeystore {
    fn create_key(&self, alias: &str, uv: bool) -> Result<Vec<u8>, latchkey_client::KeystoreError> {
        self.keys.create_key(alias, uv)
    }
    fn create_attested_key(
        &self,
        alias: &str,
        challenge: &[u8],
    ) -> Result<(Vec<u8>, Option<proto::DeviceAttestation>), latchkey_client::KeystoreError> {
        use data_encoding::BASE64URL_NOPAD;
        let public = self.keys.create_key(alias, true)?;
        let point = if public.len() == 91 { &public[26..] } else { &public[..] };
        let claims = (self.claims)(latchkey_core::factors::attestation::testing::Claims::good(challenge));
        let chain = self.root.chain(point, &claims);
        let attestation = proto::DeviceAttestation {
            format: "android_key".into(),
            certificates: chain.iter().map(|c| BASE64URL_NOPAD.encode(c)).collect(),
            biometric: self.biometric.into(),
        };
        Ok((public, Some(attestation)))
    }
    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, latchkey_client::KeystoreError> {
        self.keys.sign(alias, message)
    }
    fn seal(&self, alias: &str, plaintext: &[u8]) -> Result<Vec<u8>, latchkey_client::KeystoreError> {
        self.keys.seal(alias, plaintext)
    }
    fn open(&self, alias: &str, sealed: &[u8]) -> Result<Vec<u8>, latchkey_client::KeystoreError> {
        self.keys.open(alias, sealed)
    }
    fn public_key(&self, alias: &str) -> Result<Vec<u8>, latchkey_client::KeystoreError> {
        self.keys.public_key(alias)
    }
    fn delete_key(&self, alias: &str) -> Result<(), latchkey_client::KeystoreError> {
        self.keys.delete_key(alias)
    }
    fn is_invalidated(&self, alias: &str) -> bool {
        self.keys.is_invalidated(alias)
    }
}
