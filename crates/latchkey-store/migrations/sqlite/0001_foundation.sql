-- Times are Unix microseconds (BIGINT) in both stores: one SQL text, exact ordering.
CREATE TABLE users (
    id BLOB PRIMARY KEY,
    username TEXT NOT NULL,
    username_canonical TEXT NOT NULL UNIQUE,
    email TEXT,
    email_verified BOOLEAN NOT NULL,
    phone TEXT,
    phone_verified BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    password_hash TEXT,
    must_change_password BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE flows (
    id BLOB PRIMARY KEY,
    kind TEXT NOT NULL,
    user_id BLOB,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    sends BIGINT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ip TEXT,
    user_agent TEXT
);
CREATE INDEX flows_expires_at ON flows (expires_at);

CREATE TABLE sessions (
    id BLOB PRIMARY KEY,
    user_id BLOB NOT NULL REFERENCES users (id),
    acr TEXT NOT NULL,
    amr TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_refresh_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoke_reason TEXT,
    ip TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE refresh_tokens (
    hash TEXT PRIMARY KEY,
    session_id BLOB NOT NULL REFERENCES sessions (id),
    created_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX refresh_tokens_session_id ON refresh_tokens (session_id);

CREATE TABLE failure_counters (
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    failures BIGINT NOT NULL,
    locked_until BIGINT,
    PRIMARY KEY (key, kind)
);

CREATE TABLE rate_counters (
    key TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (key, window_start)
);

CREATE TABLE outbox (
    id BLOB PRIMARY KEY,
    channel TEXT NOT NULL,
    provider TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_sealed TEXT,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

CREATE TABLE audit_events (
    id BLOB PRIMARY KEY,
    at BIGINT NOT NULL,
    user_id BLOB,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    ip TEXT,
    user_agent TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_events_user_id ON audit_events (user_id, at);
