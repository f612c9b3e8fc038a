//! Transport (issue 11, item 11): TLS served directly, with a renewed certificate picked up
//! without a restart; and Latchkey behind nginx from Debian's packages, TLS at the proxy, with
//! DPoP's `htu` and the client's address passing through it.

use latchkey_testkit::latchkey_client::Client;
use latchkey_testkit::{Backend, TestServer, USER_AGENT};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const PW: &str = "correct horse battery";

/// A self-signed certificate for `localhost` and 127.0.0.1: (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("latchkey-tls-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A raw client that trusts only `root`.
fn trusting(root: &str) -> reqwest::Client {
    let roots = reqwest::Certificate::from_pem_bundle(root.as_bytes()).unwrap();
    reqwest::Client::builder().tls_certs_only(roots).build().unwrap()
}

async fn answers(http: &reqwest::Client, url: &str) -> bool {
    http.get(format!("{url}/health/live")).send().await.is_ok_and(|r| r.status().is_success())
}

async fn tls_is_served_directly_and_a_renewed_certificate_is_picked_up(b: Backend) {
    let dir = temp_dir();
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let (first, first_key) = self_signed();
    std::fs::write(&cert, &first).unwrap();
    std::fs::write(&key, &first_key).unwrap();
    let s = TestServer::start_with(b, |c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
        c.tls_reload_secs = 1;
    })
    .await;
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);
    // A device's whole life over TLS: its DPoP proofs name the https URL (htu).
    let c = Client::with_root_certificates(&s.url, USER_AGENT, first.as_bytes()).unwrap();
    let (device_id, ks, tokens) =
        s.passwordless_account_via(&c, "tls", "+15550007001", Some("tls@example.com"), "135792").await;
    let device = c.with_device_key(Arc::new(ks), &device_id).unwrap();
    let renewed = device.refresh(&tokens.refresh_token).await.unwrap();
    assert_eq!(device.me(&renewed.access_token).await.unwrap().username, "tls");
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new().get(format!("{}/health/live", s.url.replace("https://", "http://"))).send();
    assert!(plain.await.is_err(), "plain HTTP is not served on the TLS port");

    // The certificate is renewed on disk (key first, as an ACME client writes them): new
    // connections get the new one within the reload interval, without a restart.
    let (second, second_key) = self_signed();
    std::fs::write(&key, &second_key).unwrap();
    std::fs::write(&cert, &second).unwrap();
    let (old_trust, new_trust) = (trusting(&first), trusting(&second));
    let mut picked_up = false;
    for _ in 0..100 {
        if answers(&new_trust, &s.url).await {
            picked_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(picked_up, "the renewed certificate is served");
    assert!(!answers(&old_trust, &s.url).await, "the old certificate is no longer served");

    // A broken pair (a key that is not the certificate's) is refused and the one in use stays.
    std::fs::write(&key, &first_key).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(answers(&new_trust, &s.url).await, "a pair that does not load changes nothing");
}

/// `nginx` from Debian's package, if installed.
fn nginx() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().map(PathBuf::from).find(|p| p.exists())
}

struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nginx terminating TLS on `port` and proxying to `upstream`, as docs/operations.md shows.
/// Every test client is 127.0.0.1, so the client address nginx passes on is taken from a test
/// header here; in production it is `$remote_addr`.
fn start_nginx(bin: &Path, dir: &Path, port: u16, upstream: &str, cert: &Path, key: &Path) -> Nginx {
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let d = dir.display();
    let conf = format!(
        r#"{user}
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{
      proxy_pass {upstream};
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-For $http_x_test_client_address;
    }}
  }}
}}
"#,
        user = if root { "user root;" } else { "" },
        cert = cert.display(),
        key = key.display(),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = std::process::Command::new(bin)
        .args(["-p", &dir.display().to_string(), "-c", &path.display().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Nginx(child)
}

async fn behind_nginx_dpop_and_the_client_address_pass_through_the_proxy(b: Backend) {
    let Some(bin) = nginx() else {
        // CI installs nginx (.ci/run), so there the test can never be skipped.
        let required = std::env::var_os("LATCHKEY_TEST_REQUIRE_NGINX").is_some() || std::env::var_os("CI").is_some();
        assert!(!required, "nginx is not installed");
        eprintln!("SKIPPED: nginx is not installed (apt-get install nginx); CI runs this test");
        return;
    };
    let dir = temp_dir();
    let (cert_pem, key_pem) = self_signed();
    let (cert, key) = (dir.join("proxy.crt"), dir.join("proxy.key"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let public = format!("https://localhost:{port}");
    let s = TestServer::start_with(b, |c| {
        c.public_url = Some(public.clone());
        c.trust_forwarded_for = true;
    })
    .await;
    let _nginx = start_nginx(&bin, &dir, port, &s.url, &cert, &key);
    let raw = trusting(&cert_pem);
    let mut up = false;
    for _ in 0..100 {
        if answers(&raw, &public).await {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "nginx answers: {}", std::fs::read_to_string(dir.join("error.log")).unwrap_or_default());

    // The device signs DPoP proofs for the URL it calls, the proxy's https address, which is
    // `public_url`: refreshes and API calls through the proxy pass.
    let c = Client::with_root_certificates(&public, USER_AGENT, cert_pem.as_bytes()).unwrap();
    let (device_id, ks, tokens) =
        s.passwordless_account_via(&c, "proxied", "+15550007002", Some("proxied@example.com"), "246813").await;
    let device = c.with_device_key(Arc::new(ks), &device_id).unwrap();
    let renewed = device.refresh(&tokens.refresh_token).await.unwrap();
    assert_eq!(device.me(&renewed.access_token).await.unwrap().username, "proxied");
    let discovery: serde_json::Value =
        raw.get(format!("{public}/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["issuer"], public.as_str());

    // The client's address is the one the proxy names (trust_forwarded_for), on the session.
    s.create_user("behind", PW).await;
    let r = raw
        .post(format!("{public}/v1/sign-in"))
        .header("user-agent", USER_AGENT)
        .header("x-test-client-address", "198.51.100.7")
        .json(&serde_json::json!({"username": "behind", "password": PW}))
        .send()
        .await
        .unwrap();
    let answer: serde_json::Value = r.json().await.unwrap();
    let access = answer["tokens"]["access_token"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned();
    let sessions = c.sessions(&access).await.unwrap();
    assert!(sessions.sessions.iter().any(|x| x.ip.as_deref() == Some("198.51.100.7")), "{sessions:?}");
}

both_stores!(
    tls_is_served_directly_and_a_renewed_certificate_is_picked_up,
    behind_nginx_dpop_and_the_client_address_pass_through_the_proxy,
);
