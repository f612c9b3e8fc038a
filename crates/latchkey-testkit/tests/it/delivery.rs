//! Delivery: a real SMTP conversation with a listener in the test, the SMS webhook with its HMAC
//! signature checked by a local receiver, and retries through the outbox when a provider fails.

use latchkey_core::model::OutboxStatus;
use latchkey_server::webhook::{SIGNATURE_HEADER, sign_webhook};
use latchkey_testkit::proto::{NextStep, SignUpRequest};
use latchkey_testkit::{Backend, TestServer, extract_code};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;
use time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const PW: &str = "correct horse battery";

/// A minimal SMTP server that accepts every message and keeps its DATA.
pub(crate) async fn smtp_sink() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 sink.test ESMTP\r\n").await.unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink.test\r\n",
                        "DATA" => {
                            w.write_all(b"354 end with .\r\n").await.unwrap();
                            let mut data = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                data.push_str(&l);
                                data.push('\n');
                            }
                            sink.lock().unwrap().push(data);
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, received)
}

/// Poll `f` every 25 ms until it gives a value (30 s at most: a bound for a stuck test, not a
/// measured time — the full suite on 2 shared cores once took over 10 s to deliver one message).
pub(crate) async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..1200 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    // What the servers said about it: this has timed out only in full-suite runs, never alone.
    let logs = latchkey_testkit::captured_logs();
    let said: Vec<&str> = logs.lines().filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\"")).collect();
    eprintln!("the servers' last warnings and errors:\n{}", said[said.len().saturating_sub(40)..].join("\n"));
    panic!("timed out waiting for {what}");
}

async fn email_codes_are_delivered_over_a_real_smtp_conversation(b: Backend) {
    let (url, received) = smtp_sink().await;
    let s = TestServer::start_with(b, |c| {
        c.smtp_url = Some(url);
        c.email_from = "Latchkey <auth@example.com>".into();
    })
    .await;
    let c = s.client();
    let a = c
        .sign_up(&SignUpRequest {
            username: "mail".into(),
            password: Some(PW.into()),
            email: Some("mail@example.com".into()),
            phone: None,
            locale: None,
        })
        .await
        .unwrap();
    assert!(s.outbox().await.is_empty(), "with SMTP configured nothing goes to the development outbox");
    let data = eventually("the email", async || received.lock().unwrap().first().cloned()).await;
    assert!(data.contains("From: Latchkey <auth@example.com>"), "{data}");
    assert!(data.contains("To: mail@example.com"), "{data}");
    assert!(data.contains("Subject: Latchkey"), "{data}");
    // The code is in the body, after the headers (the Message-ID may hold six digits in a row).
    let body = data.split_once("\n\n").map_or(data.as_str(), |(_, b)| b);
    let code = extract_code(body);
    assert_eq!(c.confirm_sign_up(&a.flow_id, &code).await.unwrap().next_step, NextStep::Done);
    let stored = eventually("the sent mark", async || {
        let m = s.auth.store().outbox_messages(Some("smtp")).await.unwrap();
        (m[0].status == OutboxStatus::Sent).then_some(m)
    })
    .await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].body_sealed, None, "a delivered body is not kept");
    // A stable Message-ID (the outbox message's id) lets a receiver drop a re-sent duplicate.
    assert!(data.contains(&format!("Message-ID: <{}@example.com>", stored[0].id)), "{data}");
}

#[derive(Default)]
struct Receiver {
    requests: Vec<(bool, serde_json::Value)>,
    failures_left: usize,
}

/// An SMS provider that checks the HMAC signature and fails the first `failures` requests.
async fn sms_receiver(secret: &'static str, failures: usize) -> (String, Arc<Mutex<Receiver>>) {
    use axum::http::{HeaderMap, StatusCode};
    let state = Arc::new(Mutex::new(Receiver { failures_left: failures, ..Default::default() }));
    let st = state.clone();
    let app = axum::Router::new().route(
        "/sms",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let st = st.clone();
            async move {
                let sig = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let t: i64 =
                    sig.split(',').next().and_then(|p| p.strip_prefix("t=")).and_then(|t| t.parse().ok()).unwrap_or(0);
                let valid = sig == sign_webhook(secret.as_bytes(), t, &body);
                let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                let mut st = st.lock().unwrap();
                st.requests.push((valid, json));
                if st.failures_left > 0 {
                    st.failures_left -= 1;
                    StatusCode::INTERNAL_SERVER_ERROR
                } else if valid {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

async fn sms_codes_go_to_the_signed_webhook_and_failures_are_retried_until_delivered(b: Backend) {
    let (url, receiver) = sms_receiver("webhook-secret", 2).await;
    let s = TestServer::start_with(b, |c| {
        c.sms_webhook_url = Some(url);
        c.sms_webhook_secret = Some("webhook-secret".into());
        c.policy.sign_up.require_email = false;
        c.outbox.backoff_base_secs = 5;
    })
    .await;
    let c = s.client();
    let a = c
        .sign_up(&SignUpRequest {
            username: "texter".into(),
            password: Some(PW.into()),
            email: None,
            phone: Some("+15550001111".into()),
            locale: None,
        })
        .await
        .unwrap();
    let count = || receiver.lock().unwrap().requests.len();
    eventually("the first attempt", async || (count() == 1).then_some(())).await;
    // Not retried before its backoff (5 s of the server's clock), then retried.
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(count(), 1);
    s.clock.advance(Duration::seconds(5));
    eventually("the second attempt", async || (count() == 2).then_some(())).await;
    s.clock.advance(Duration::seconds(10));
    eventually("the third attempt", async || (count() == 3).then_some(())).await;
    let requests = receiver.lock().unwrap().requests.clone();
    assert!(requests.iter().all(|(valid, _)| *valid), "every request carries a valid signature");
    assert_eq!(requests[2].1["to"], "+15550001111");
    let code = extract_code(requests[2].1["body"].as_str().unwrap());
    assert_eq!(c.confirm_sign_up(&a.flow_id, &code).await.unwrap().next_step, NextStep::Done);
    let m = eventually("the sent mark", async || {
        let m = s.auth.store().outbox_messages(Some("sms_webhook")).await.unwrap();
        (m[0].status == OutboxStatus::Sent).then_some(m)
    })
    .await;
    assert_eq!(m[0].attempts, 3);
}

async fn a_provider_that_never_answers_leaves_a_dead_message_with_the_reason(b: Backend) {
    let (url, receiver) = sms_receiver("webhook-secret", usize::MAX).await;
    let s = TestServer::start_with(b, |c| {
        c.sms_webhook_url = Some(url);
        c.sms_webhook_secret = Some("webhook-secret".into());
        c.policy.sign_up.require_email = false;
        c.outbox.max_attempts = 2;
        c.outbox.backoff_base_secs = 1;
    })
    .await;
    s.client()
        .sign_up(&SignUpRequest {
            username: "lost".into(),
            password: Some(PW.into()),
            email: None,
            phone: Some("+15550002222".into()),
            locale: None,
        })
        .await
        .unwrap();
    eventually("the first attempt", async || (receiver.lock().unwrap().requests.len() == 1).then_some(())).await;
    s.clock.advance(Duration::seconds(1));
    let m = eventually("the dead mark", async || {
        let m = s.auth.store().outbox_messages(Some("sms_webhook")).await.unwrap();
        (m[0].status == OutboxStatus::Dead).then_some(m)
    })
    .await;
    assert_eq!(m[0].attempts, 2);
    let err = m[0].last_error.clone().unwrap();
    assert!(err.contains("500"), "{err}");
    let body = receiver.lock().unwrap().requests[0].1["body"].as_str().unwrap().to_owned();
    assert!(!err.contains(&extract_code(&body)), "the error never holds the message");
}

type Seen = Arc<Mutex<Vec<(bool, Vec<(String, String)>)>>>;

/// A fake of Twilio's Messages API: checks the path, HTTP Basic and the form, then answers
/// with each of `answers` in turn (the last one for ever after).
async fn fake_twilio(answers: Vec<(u16, serde_json::Value)>) -> (String, Seen) {
    use axum::http::{HeaderMap, StatusCode};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let st = seen.clone();
    let answers = Arc::new(answers);
    let app = axum::Router::new().route(
        "/2010-04-01/Accounts/AC00000000000000000000000000000001/Messages.json",
        axum::routing::post(move |headers: HeaderMap, axum::Form(form): axum::Form<Vec<(String, String)>>| {
            let (st, answers) = (st.clone(), answers.clone());
            async move {
                use base64::Engine as _;
                let basic = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode("AC00000000000000000000000000000001:twilio-auth-token")
                );
                // The form extractor itself insists on `application/x-www-form-urlencoded`.
                let authed = headers.get("authorization").is_some_and(|v| v.as_bytes() == basic.as_bytes());
                let n = {
                    let mut st = st.lock().unwrap();
                    st.push((authed, form));
                    st.len()
                };
                let (status, json) = answers[(n - 1).min(answers.len() - 1)].clone();
                (StatusCode::from_u16(status).unwrap(), axum::Json(json))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn twilio_config(base_url: String) -> latchkey_server::twilio::TwilioConfig {
    latchkey_server::twilio::TwilioConfig {
        account_sid: "AC00000000000000000000000000000001".into(),
        auth_token: "twilio-auth-token".into(),
        api_key_sid: None,
        from: Some("+15005550006".into()),
        messaging_service_sid: None,
        base_url,
    }
}

async fn sms_goes_through_twilio_and_its_errors_are_retried_or_dead_as_they_mean(b: Backend) {
    // Twilio fails (503), throttles (429), then takes the message (201).
    let created = serde_json::json!({"sid": "SM00000000000000000000000000000001", "status": "queued"});
    let (url, seen) = fake_twilio(vec![
        (503, serde_json::json!({"code": 20500, "message": "Internal Server Error", "status": 503})),
        (429, serde_json::json!({"code": 20429, "message": "Too Many Requests", "status": 429})),
        (201, created),
    ])
    .await;
    let s = TestServer::start_with(b, |c| {
        c.twilio = Some(twilio_config(url));
        c.policy.sign_up.require_email = false;
        c.outbox.backoff_base_secs = 5;
    })
    .await;
    let c = s.client();
    let a = c
        .sign_up(&SignUpRequest {
            username: "twila".into(),
            password: Some(PW.into()),
            email: None,
            phone: Some("+15550003333".into()),
            locale: None,
        })
        .await
        .unwrap();
    let count = || seen.lock().unwrap().len();
    eventually("the first attempt", async || (count() == 1).then_some(())).await;
    s.clock.advance(Duration::seconds(5));
    eventually("the second attempt", async || (count() == 2).then_some(())).await;
    s.clock.advance(Duration::seconds(10));
    eventually("the third attempt", async || (count() == 3).then_some(())).await;
    let m = eventually("the sent mark", async || {
        let m = s.auth.store().outbox_messages(Some("twilio")).await.unwrap();
        (m[0].status == OutboxStatus::Sent).then_some(m)
    })
    .await;
    assert_eq!(m[0].attempts, 3);
    let requests = seen.lock().unwrap().clone();
    assert!(requests.iter().all(|(authed, _)| *authed), "HTTP Basic with the account SID and auth token, form-encoded");
    let form = &requests[2].1;
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!((field("To").as_deref(), field("From").as_deref()), (Some("+15550003333"), Some("+15005550006")));
    let code = extract_code(&field("Body").unwrap());
    assert_eq!(c.confirm_sign_up(&a.flow_id, &code).await.unwrap().next_step, NextStep::Done);

    // A number Twilio calls invalid (21211) is dead at once: no retry can help.
    let (url, seen) = fake_twilio(vec![(
        400,
        serde_json::json!({"code": 21211, "message": "The 'To' number +15550004444 is not a valid phone number.", "status": 400}),
    )])
    .await;
    let s = TestServer::start_with(b, |c| {
        c.twilio = Some(twilio_config(url));
        c.policy.sign_up.require_email = false;
        c.outbox.backoff_base_secs = 1;
    })
    .await;
    s.client()
        .sign_up(&SignUpRequest {
            username: "nonum".into(),
            password: Some(PW.into()),
            email: None,
            phone: Some("+15550004444".into()),
            locale: None,
        })
        .await
        .unwrap();
    let m = eventually("the dead mark", async || {
        let m = s.auth.store().outbox_messages(Some("twilio")).await.unwrap();
        (m[0].status == OutboxStatus::Dead).then_some(m)
    })
    .await;
    assert_eq!(m[0].attempts, 1, "not retried");
    let err = m[0].last_error.clone().unwrap();
    assert!(err.contains("21211"), "{err}");
    s.clock.advance(Duration::seconds(60));
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(seen.lock().unwrap().len(), 1);
}

both_stores!(
    email_codes_are_delivered_over_a_real_smtp_conversation,
    sms_codes_go_to_the_signed_webhook_and_failures_are_retried_until_delivered,
    a_provider_that_never_answers_leaves_a_dead_message_with_the_reason,
    sms_goes_through_twilio_and_its_errors_are_retried_or_dead_as_they_mean,
);
