//! Event webhooks (issue 15, item 1): endpoints managed through the admin API and the
//! configuration, events derived from what the audit log records and queued in the same
//! transaction, signed as Standard Webhooks asks, delivered through the outbox with retries and a
//! lane per endpoint. Signatures are checked here by a verifier written from the specification
//! (the server signs with the `standardwebhooks` crate), and by the `standardwebhooks` Python
//! package in the interoperability test.

use crate::delivery::eventually;
use base64::Engine as _;
use latchkey_core::model::OutboxStatus;
use latchkey_server::config::WebhookConfig;
use latchkey_testkit::{ADMIN_TOKEN, Backend, TestServer};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;
use time::Duration;

const PW: &str = "correct horse battery";

/// What a receiver does with a request.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answer 204 once the first `n` requests were answered 500.
    FailFirst(usize),
    /// Never answer.
    Hang,
}

#[derive(Default)]
struct Received {
    /// Every request: whether its signature verified, its `webhook-id`, the JSON body.
    requests: Vec<(bool, String, serde_json::Value)>,
    /// Requests answered 2xx.
    delivered: usize,
}

/// Standard Webhooks verification, from the specification: the key is the base64 after
/// `whsec_`; the signature header holds space-separated `v1,<base64 HMAC-SHA-256 of
/// "<id>.<timestamp>.<body>">`; the timestamp is within five minutes.
pub(crate) fn verify(secret: &str, headers: &axum::http::HeaderMap, body: &[u8]) -> bool {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let (id, ts, sigs) = (h("webhook-id"), h("webhook-timestamp"), h("webhook-signature"));
    let Ok(t) = ts.parse::<i64>() else { return false };
    if (time::OffsetDateTime::now_utc().unix_timestamp() - t).abs() > 300 || id.is_empty() {
        return false;
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some(key) = secret.strip_prefix("whsec_").and_then(|k| b64.decode(k).ok()) else { return false };
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(body);
    sigs.split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| b64.decode(s).ok())
        .any(|sig| aws_lc_rs::hmac::verify(&key, &signed, &sig).is_ok())
}

/// A receiver at `http://127.0.0.1:<port>/hook`, checking signatures under `secret` (set once
/// the endpoint exists).
async fn receiver(behaviour: Behaviour) -> (String, Arc<Mutex<Received>>, Arc<Mutex<String>>) {
    use axum::http::{HeaderMap, StatusCode};
    let state = Arc::new(Mutex::new(Received::default()));
    let secret = Arc::new(Mutex::new(String::new()));
    let (st, sec) = (state.clone(), secret.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (st, sec) = (st.clone(), sec.clone());
            async move {
                let valid = verify(&sec.lock().unwrap(), &headers, &body);
                let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                let n = {
                    let mut st = st.lock().unwrap();
                    st.requests.push((valid, id, json));
                    st.requests.len()
                };
                match behaviour {
                    Behaviour::Hang => {
                        tokio::time::sleep(StdDuration::from_secs(3600)).await;
                        StatusCode::NO_CONTENT
                    }
                    Behaviour::FailFirst(k) if n <= k => StatusCode::INTERNAL_SERVER_ERROR,
                    Behaviour::FailFirst(_) if !valid => StatusCode::UNAUTHORIZED,
                    Behaviour::FailFirst(_) => {
                        st.lock().unwrap().delivered += 1;
                        StatusCode::NO_CONTENT
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state, secret)
}

fn types(r: &Arc<Mutex<Received>>) -> Vec<String> {
    let mut t: Vec<String> =
        r.lock().unwrap().requests.iter().map(|(_, _, v)| v["type"].as_str().unwrap_or("?").to_owned()).collect();
    t.sort();
    t
}

async fn events_reach_a_subscribed_endpoint_signed_as_standard_webhooks_asks(b: Backend) {
    let (url, received, secret) = receiver(Behaviour::FailFirst(0)).await;
    let s = TestServer::start(b).await;
    let raw = s.raw();
    // Refused: an unknown event, plain HTTP to another host, no events, no credentials.
    for (bad, status) in [
        (serde_json::json!({"url": url, "events": ["user.made"]}), 400),
        (serde_json::json!({"url": "http://hooks.example.com/x", "events": ["user.created"]}), 400),
        (serde_json::json!({"url": url, "events": []}), 400),
    ] {
        let r = raw.request("POST", "/admin/v1/webhooks", Some(ADMIN_TOKEN), Some(bad.clone())).await;
        assert_eq!(r.status, status, "{bad}: {}", r.body);
    }
    let r = raw.request("POST", "/admin/v1/webhooks", None, Some(serde_json::json!({"url": url}))).await;
    assert_eq!(r.status, 401);
    let events = ["user.created", "user.confirmed", "sign_in.succeeded", "sign_in.failed", "password.changed"];
    let r = raw
        .request(
            "POST",
            "/admin/v1/webhooks",
            Some(ADMIN_TOKEN),
            Some(serde_json::json!({"url": url, "events": events})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let made = r.json();
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ep_"), "{id}");
    assert_eq!(made["source"], "api");
    let key = made["secret"].as_str().unwrap().to_owned();
    assert!(key.starts_with("whsec_") && key.len() > 40, "{key}");
    *secret.lock().unwrap() = key.clone();
    // Listed and shown without the secret.
    let listed = raw.request("GET", "/admin/v1/webhooks", Some(ADMIN_TOKEN), None).await;
    assert_eq!(listed.json()["webhooks"][0]["id"], id.as_str());
    let shown = raw.request("GET", &format!("/admin/v1/webhooks/{id}"), Some(ADMIN_TOKEN), None).await;
    assert_eq!((shown.status, shown.json()["url"].as_str()), (200, Some(url.as_str())));
    assert!(!listed.body.contains(&key) && !shown.body.contains(&key), "the secret is shown once");

    // Sign up (created, confirmed), a wrong password (failed), a sign-in (succeeded).
    s.create_user("wendy", PW).await;
    assert!(s.client().sign_in("wendy", "not the password").await.is_err());
    let t = s.sign_in("wendy", PW).await;
    let me = s.client().me(&t.access_token).await.unwrap();
    eventually("four events", async || (received.lock().unwrap().requests.len() >= 4).then_some(())).await;
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(types(&received), ["sign_in.failed", "sign_in.succeeded", "user.confirmed", "user.created"]);
    let code = s.code_for("wendy@example.com").await;
    let requests = received.lock().unwrap().requests.clone();
    for (valid, webhook_id, v) in &requests {
        assert!(valid, "the signature verifies: {v}");
        let data = &v["data"];
        assert_eq!((data["user_id"].as_str(), data["username"].as_str()), (Some(me.id.as_str()), Some("wendy")), "{v}");
        assert_eq!(data["ip"], "127.0.0.1");
        assert!(v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
        let text = v.to_string();
        assert!(!text.contains(PW) && !text.contains("not the password") && !text.contains(&code), "{text}");
        assert!(!text.contains(&t.access_token) && !text.contains(&t.refresh_token));
        // The webhook-id is the outbox message's: the same on every attempt.
        let stored = s.auth.store().outbox_messages(Some(&format!("event:{id}"))).await.unwrap();
        assert!(stored.iter().any(|m| m.id.to_string() == *webhook_id && m.subject == v["type"]));
    }
    // The admin API finds the account by the id an event carries.
    let by_id = raw.request("GET", &format!("/admin/v1/users/{}", me.id), Some(ADMIN_TOKEN), None).await;
    assert_eq!((by_id.status, by_id.json()["username"].as_str()), (200, Some("wendy")));
    let failed = requests.iter().find(|(_, _, v)| v["type"] == "sign_in.failed").unwrap();
    assert_eq!(failed.2["data"]["outcome"], "failure");
    // A tampered body does not verify.
    let (_, _, v) = &requests[0];
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("webhook-id", requests[0].1.parse().unwrap());
    headers.insert("webhook-timestamp", time::OffsetDateTime::now_utc().unix_timestamp().to_string().parse().unwrap());
    headers.insert("webhook-signature", "v1,AAAA".parse().unwrap());
    assert!(!verify(&key, &headers, v.to_string().as_bytes()), "the verifier can fail");
    // Unsubscribed events are not sent (a refresh, a sign-out): nothing new arrives.
    s.client().refresh(&t.refresh_token).await.unwrap();
    // Removed: 204, then 404, and nothing more is queued for it.
    let r = raw.request("DELETE", &format!("/admin/v1/webhooks/{id}"), Some(ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = raw.request("GET", &format!("/admin/v1/webhooks/{id}"), Some(ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 404);
    s.sign_in("wendy", PW).await;
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert_eq!(received.lock().unwrap().requests.len(), 4);
    let left = s.auth.store().outbox_messages(Some(&format!("event:{id}"))).await.unwrap();
    assert!(left.iter().all(|m| m.status == OutboxStatus::Sent), "only the delivered records stay");
    // The audit log names who subscribed and removed it.
    let audit = raw.request("GET", "/admin/v1/audit?kind=admin_webhook", Some(ADMIN_TOKEN), None).await.json();
    let outcomes: Vec<&str> =
        audit["events"].as_array().unwrap().iter().filter_map(|e| e["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["deleted", "created"]);
}

fn configured(id: &str, url: &str, secret: &str, events: &[&str]) -> WebhookConfig {
    WebhookConfig {
        id: id.into(),
        url: url.into(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        secret: secret.into(),
    }
}

const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECRET_B: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

async fn one_hung_receiver_delays_no_one_and_failures_are_retried(b: Backend) {
    let (hung_url, hung, hung_secret) = receiver(Behaviour::Hang).await;
    let (flaky_url, flaky, flaky_secret) = receiver(Behaviour::FailFirst(2)).await;
    *hung_secret.lock().unwrap() = SECRET_A.into();
    *flaky_secret.lock().unwrap() = SECRET_B.into();
    let s = TestServer::start_with(b, |c| {
        c.webhooks = vec![
            configured("hung", &hung_url, SECRET_A, &["user.created"]),
            configured("flaky", &flaky_url, SECRET_B, &["user.created", "user.deleted"]),
        ];
        c.outbox.send_timeout_secs = 60;
        c.outbox.backoff_base_secs = 5;
    })
    .await;
    // Configured endpoints are listed, and cannot be removed through the API.
    let listed = s.raw().request("GET", "/admin/v1/webhooks", Some(ADMIN_TOKEN), None).await.json();
    let ids: Vec<&str> = listed["webhooks"].as_array().unwrap().iter().filter_map(|w| w["id"].as_str()).collect();
    assert_eq!(ids, ["hung", "flaky"]);
    assert_eq!(listed["webhooks"][0]["source"], "config");
    let r = s.raw().request("DELETE", "/admin/v1/webhooks/hung", Some(ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 400, "{}", r.body);

    for name in ["ann", "ben", "cat"] {
        s.create_user(name, PW).await;
    }
    // The hung receiver has all three requests open; the flaky one failed its first two.
    eventually("the hung receiver holding three", async || (hung.lock().unwrap().requests.len() == 3).then_some(()))
        .await;
    eventually("the flaky receiver's first tries", async || (flaky.lock().unwrap().requests.len() == 3).then_some(()))
        .await;
    assert_eq!(flaky.lock().unwrap().delivered, 1);
    // After the backoff the two failures are sent again and delivered, while the hung
    // receiver still holds its three: it delayed no one.
    s.clock.advance(Duration::seconds(5));
    eventually("the retries delivered", async || (flaky.lock().unwrap().delivered == 3).then_some(())).await;
    assert_eq!(hung.lock().unwrap().delivered, 0);
    let pending = s.auth.store().outbox_messages(Some("event:hung")).await.unwrap();
    assert_eq!(pending.len(), 3);
    assert!(pending.iter().all(|m| m.status == OutboxStatus::Sending && m.attempts == 1), "{pending:?}");
    // The receiver answered; the sent marks follow (a CI run read one before it was written).
    let flaky_msgs = eventually("the flaky endpoint's sent marks", async || {
        let msgs = s.auth.store().outbox_messages(Some("event:flaky")).await.unwrap();
        msgs.iter().all(|m| m.status == OutboxStatus::Sent).then_some(msgs)
    })
    .await;
    assert_eq!(flaky_msgs.iter().map(|m| m.attempts).sum::<u32>(), 5, "two were sent twice");
    let got = flaky.lock().unwrap().requests.clone();
    assert!(got.iter().all(|(valid, _, _)| *valid));
    // A retry carries the same webhook-id (so the receiver can drop a duplicate).
    let mut ids: Vec<&str> = got.iter().map(|(_, id, _)| id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    // user.deleted goes to the one endpoint that asked for it.
    let r = s.raw().request("DELETE", "/admin/v1/users/ann", Some(ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    eventually("user.deleted", async || {
        flaky.lock().unwrap().requests.iter().any(|(_, _, v)| v["type"] == "user.deleted").then_some(())
    })
    .await;
    assert_eq!(hung.lock().unwrap().requests.len(), 3);
}

/// The Python receiver, killed when dropped.
struct PythonReceiver {
    child: std::process::Child,
    url: String,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Drop for PythonReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `python3` with `standardwebhooks` and `jsonschema`, or why not.
fn python_receiver(secret: &str) -> Result<PythonReceiver, String> {
    use std::io::BufRead;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = dir.join("tests/standardwebhooks_receiver.py");
    let schema = dir.join("../../docs/webhook-events.schema.json");
    let mut child = std::process::Command::new("python3")
        .arg(&script)
        .arg(secret)
        .arg(&schema)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("python3: {e}"))?;
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut port = String::new();
    out.read_line(&mut port).map_err(|e| e.to_string())?;
    let Ok(port) = port.trim().parse::<u16>() else {
        let mut err = String::new();
        use std::io::Read;
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        let _ = child.kill();
        return Err(format!("the receiver did not start (pip install standardwebhooks jsonschema): {err}"));
    };
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            sink.lock().unwrap().push(serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line)));
        }
    });
    Ok(PythonReceiver { child, url: format!("http://127.0.0.1:{port}/events"), lines })
}

async fn the_standardwebhooks_python_library_verifies_every_event_and_the_schema_holds(b: Backend) {
    // The endpoint's secret is made by the server; the receiver needs it first, so this test
    // configures one (the API's secrets are checked by the tests above).
    let receiver = match python_receiver(SECRET_B) {
        Ok(r) => r,
        Err(why) => {
            // CI installs both packages (.ci/run), so there the test can never be skipped.
            let required =
                std::env::var_os("LATCHKEY_TEST_REQUIRE_PYTHON").is_some() || std::env::var_os("CI").is_some();
            assert!(!required, "{why}");
            eprintln!("SKIPPED: {why}; CI runs this test");
            return;
        }
    };
    let url = receiver.url.clone();
    let s = TestServer::start_with(b, |c| {
        c.webhooks = vec![configured("python", &url, SECRET_B, &latchkey_core::events::EVENT_TYPES)];
        c.policy.sign_up.require_email = false;
    })
    .await;
    s.create_user("pia", PW).await;
    assert!(s.client().sign_in("pia", "wrong password").await.is_err());
    assert!(s.client().sign_in("nobody-here", "wrong password").await.is_err());
    let t = s.sign_in("pia", PW).await;
    let r = s
        .raw()
        .request(
            "PUT",
            "/v1/me/password",
            Some(&t.access_token),
            Some(serde_json::json!({"current_password": PW, "new_password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (device_id, _, _) = s.passwordless_account("pat", "+15550007777", None, "246813").await;
    let r =
        s.raw().request("DELETE", &format!("/admin/v1/users/pat/devices/{device_id}"), Some(ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = s.raw().request("DELETE", "/admin/v1/users/pia", Some(ADMIN_TOKEN), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let expected = [
        "device.enrolled",
        "device.revoked",
        "password.changed",
        "sign_in.failed",
        "sign_in.succeeded",
        "user.confirmed",
        "user.created",
        "user.deleted",
    ];
    let lines = eventually("every event at the Python receiver", async || {
        let lines = receiver.lines.lock().unwrap().clone();
        let seen: std::collections::BTreeSet<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
        expected.iter().all(|e| seen.contains(e)).then_some(lines.clone())
    })
    .await;
    for l in &lines {
        assert_eq!(l["verified"], true, "standardwebhooks verifies it: {l}");
        assert_eq!(l["schema_errors"], serde_json::json!([]), "docs/webhook-events.schema.json holds: {l}");
    }
    let failed = lines.iter().filter(|l| l["type"] == "sign_in.failed").count();
    assert_eq!(failed, 2, "{lines:?}");
}

both_stores!(
    events_reach_a_subscribed_endpoint_signed_as_standard_webhooks_asks,
    one_hung_receiver_delays_no_one_and_failures_are_retried,
    the_standardwebhooks_python_library_verifies_every_event_and_the_schema_holds,
);
