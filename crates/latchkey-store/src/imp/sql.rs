//! The statements of the reads and writes on request paths, one text for both ways SQLite runs
//! them: through sqlx (`writes.rs`, `mod.rs`; PostgreSQL too) and on its own connections
//! directly (`direct.rs`, `readers.rs`). Parameters are `$N`; `direct.rs` binds them by their
//! number.

pub(super) const FLOW_ATTEMPT: &str =
    "UPDATE flows SET attempts = attempts + 1 WHERE id = $1 AND attempts < $2 RETURNING attempts";
pub(super) const FAILURE_ROW: &str =
    "INSERT INTO failure_counters (key, kind, failures) VALUES ($1, $2, 0) ON CONFLICT (key, kind) DO NOTHING";
pub(super) const FAILURE_COUNT: &str = "UPDATE failure_counters SET failures = failures + 1 WHERE key = $1 AND kind = $2 AND failures < $3 AND (locked_until IS NULL OR locked_until <= $4) RETURNING failures";
pub(super) const FAILURE_DELAY: &str =
    "UPDATE failure_counters SET locked_until = $3, expires_at = $4 WHERE key = $1 AND kind = $2";
pub(super) const FAILURE_READ: &str =
    "SELECT failures, locked_until FROM failure_counters WHERE key = $1 AND kind = $2";
pub(super) const INSERT_FLOW: &str = "INSERT INTO flows (id, kind, user_id, state, attempts, sends, version, created_at, expires_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
pub(super) const UPDATE_FLOW: &str =
    "UPDATE flows SET state = $2, version = $3, expires_at = $4, attempts = $6 WHERE id = $1 AND version = $5";
pub(super) const BIND_FLOW: &str = "UPDATE flows SET ip = $2, user_agent = $3 WHERE id = $1";
pub(super) const INSERT_SESSION: &str = concat!(
    "INSERT INTO sessions (",
    session_cols!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
);
pub(super) const SIGHTINGS_TWO: &str = concat!(
    "INSERT INTO sightings (user_id, kind, value, country, latitude_e6, longitude_e6, first_seen_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8), ($9, $10, $11, $12, $13, $14, $15, $16) ",
    sightings_upsert!()
);
pub(super) const SIGHTINGS_ONE: &str = concat!(
    "INSERT INTO sightings (user_id, kind, value, country, latitude_e6, longitude_e6, first_seen_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ",
    sightings_upsert!()
);
pub(super) const INSERT_REFRESH_TOKEN: &str =
    "INSERT INTO refresh_tokens (hash, session_id, created_at) VALUES ($1, $2, $3)";
pub(super) const CLEAR_FAILURES: &str =
    "UPDATE failure_counters SET failures = 0, locked_until = NULL WHERE key = $1 AND kind = $2";
pub(super) const DEVICE_USED: &str = "UPDATE devices SET last_used_at = $2, pin_failures = CASE WHEN $3 THEN 0 ELSE pin_failures END WHERE id = $1 AND revoked_at IS NULL";
pub(super) const TOUCH_FACTOR: &str = "UPDATE factors SET last_used_at = $2 WHERE id = $1";
pub(super) const CONSUME_TOTP_STEP: &str =
    "UPDATE factors SET last_step = $2, last_used_at = $3 WHERE id = $1 AND (last_step IS NULL OR last_step < $2)";
pub(super) const USE_ONCE: &str = "INSERT INTO used_once (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING";
pub(super) const ENQUEUE: &str =
    concat!("INSERT INTO outbox (", outbox_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)");
pub(super) const AUDIT: &str = "INSERT INTO audit_events (id, at, user_id, kind, outcome, ip, user_agent, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
pub(super) const SPEND_REFRESH: &str =
    "UPDATE refresh_tokens SET used_at = $2 WHERE hash = $1 AND used_at IS NULL RETURNING session_id";
pub(super) const REFRESH_KNOWN: &str =
    "SELECT r.session_id, s.dpop_jkt FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.hash = $1";
pub(super) const REVOKE_REUSED: &str =
    "UPDATE sessions SET revoked_at = $2, revoke_reason = 'refresh_reuse' WHERE id = $1 AND revoked_at IS NULL";
pub(super) const SESSION_BY_ID: &str = concat!("SELECT ", session_cols!(), " FROM sessions WHERE id = $1");
pub(super) const UNSPEND_REFRESH: &str = "UPDATE refresh_tokens SET used_at = NULL WHERE hash = $1";
pub(super) const TOUCH_SESSION: &str = "UPDATE sessions SET last_refresh_at = $2 WHERE id = $1";

// Reads.
pub(super) const USER_BY_USERNAME: &str = concat!("SELECT ", user_cols!(), " FROM users WHERE username_canonical = $1");
pub(super) const USER_BY_ID: &str = concat!("SELECT ", user_cols!(), " FROM users WHERE id = $1");
pub(super) const FLOW_BY_ID: &str = "SELECT * FROM flows WHERE id = $1";
pub(super) const FACTORS_OF_USER: &str = "SELECT * FROM factors WHERE user_id = $1 ORDER BY created_at, id";
pub(super) const APP_ATTEST_KEY: &str = "SELECT * FROM app_attest_keys WHERE key_id = $1";
pub(super) const PASSKEYS_OF_USER: &str = "SELECT * FROM passkeys WHERE user_id = $1 ORDER BY created_at, id";
pub(super) const PASSKEY_BY_CREDENTIAL: &str = "SELECT * FROM passkeys WHERE credential_id = $1";
pub(super) const DEVICE_BY_ID: &str = "SELECT * FROM devices WHERE id = $1";
pub(super) const DEVICES_OF_USER: &str =
    "SELECT * FROM devices WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at, id";
pub(super) const REMEMBERED_BY_ID: &str = "SELECT * FROM remembered_clients WHERE id = $1";
pub(super) const REMEMBERED_OF_USER: &str = "SELECT * FROM remembered_clients WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at, id";
pub(super) const APPROVAL_BY_ID: &str = "SELECT * FROM approvals WHERE id = $1";
pub(super) const PENDING_APPROVALS: &str =
    "SELECT * FROM approvals WHERE user_id = $1 AND status = 'pending' AND expires_at > $2 ORDER BY created_at";
pub(super) const REFRESH_TOKEN: &str = "SELECT session_id, used_at FROM refresh_tokens WHERE hash = $1";
