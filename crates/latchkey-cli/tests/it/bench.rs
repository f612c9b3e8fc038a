//! `latchkey bench …` keeps working: each load generator, one worker for one second against a
//! real server on SQLite, prints its JSON line with operations done and no errors. (What they
//! measure is in docs/benchmarks.md; no test asserts a time.)

use super::{BIN, serve_with, temp_dir};
use std::process::Command;

#[test]
fn every_load_generator_runs_against_a_real_server() {
    let dir = temp_dir();
    let server = serve_with(
        &dir,
        &[
            ("LATCHKEY_ARGON2__M_KIB", "8"),
            ("LATCHKEY_ARGON2__T", "1"),
            ("LATCHKEY_POLICY__LIMITS__SENDS_PER_IP", "1000"),
        ],
    );
    for args in [
        &["sign-in"][..],
        &["device-sign-in", "--unlock", "pin"],
        &["refresh", "--binding", "bearer"],
        &["refresh", "--binding", "dpop"],
        &["me", "--binding", "dpop"],
    ] {
        bench_line(&server.url, &dir, args);
    }

    // The TOTP step as bench/sign-in.sh runs it beside a storm: prepared on this cheap-Argon2
    // server and saved, then measured against the same database served with the real Argon2.
    let steps = dir.join("steps");
    let steps = steps.to_str().unwrap();
    let out = Command::new(BIN)
        .args(["bench", "totp", "--flows", "5000", "--prepare-to", steps, "--url", &server.url, "--concurrency", "1"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "preparing measures nothing: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(std::fs::read_to_string(steps).unwrap().lines().count(), 5000);
    drop(server);
    let server = serve_with(&dir, &[]);
    bench_line(&server.url, &dir, &["totp", "--prepared", steps]);
}

/// Run `latchkey bench <args>` for one second at one worker and check its JSON line.
fn bench_line(url: &str, dir: &std::path::Path, args: &[&str]) {
    let out = Command::new(BIN)
        .arg("bench")
        .args(args)
        .args(["--url", url, "--concurrency", "1", "--seconds", "1"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["errors"], 0, "{args:?}: {line}");
    assert!(line["operations"].as_u64().is_some_and(|n| n > 0), "{args:?}: {line}");
    assert!(line["p99_9_ms"].as_f64().is_some(), "{args:?}: {line}");
}
