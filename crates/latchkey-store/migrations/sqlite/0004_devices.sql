-- Enrolled devices: two P-256 public keys (Base64url points) and the app PIN's Argon2id hash.
CREATE TABLE devices (
    id BLOB PRIMARY KEY,
    user_id BLOB NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    platform TEXT NOT NULL,
    possession_key TEXT NOT NULL,
    biometric_key TEXT NOT NULL,
    pin_hash TEXT NOT NULL,
    pin_failures BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX devices_user_id ON devices (user_id);

-- The device a session was signed in with: revoking the device ends its sessions.
ALTER TABLE sessions ADD COLUMN device_id BLOB;
CREATE INDEX sessions_device_id ON sessions (device_id);
