-- Issue 13: remembered clients ("remember this device", checklist SES-9). A client's public key
-- that lets a password sign-in skip the second factor until it expires or is forgotten; every
-- session of the user ending (sign-out everywhere, reset, recovery, disable) forgets them too.
CREATE TABLE remembered_clients (
    id BLOB PRIMARY KEY,
    user_id BLOB NOT NULL REFERENCES users (id),
    public_key BLOB NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT,
    revoke_reason TEXT
);
CREATE INDEX remembered_clients_user ON remembered_clients (user_id, created_at);
