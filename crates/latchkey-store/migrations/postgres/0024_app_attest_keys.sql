-- Issue 16: Apple App Attest keys. Registered once with an attestation (the key id is the
-- SHA-256 of the key); each later assertion must carry a counter above the stored one.
CREATE TABLE app_attest_keys (
    key_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    public_key BYTEA NOT NULL,
    counter BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
