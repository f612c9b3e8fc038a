-- Issue 16: passkeys (WebAuthn credentials). Their own table, not `factors`: an account may
-- hold many, and a credential id is unique across every account (checklist WA-5).
CREATE TABLE passkeys (
    id BLOB PRIMARY KEY,
    user_id BLOB NOT NULL REFERENCES users (id),
    -- The credential id, Base64url without padding, as the authenticator made it.
    credential_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- The authenticator model (AAGUID), when it said; all zeros is stored as NULL.
    aaguid TEXT,
    -- webauthn-rs's credential record (public key, counter, flags), JSON.
    credential TEXT NOT NULL,
    sign_count BIGINT NOT NULL,
    backup_eligible BOOLEAN NOT NULL,
    backed_up BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX passkeys_user ON passkeys (user_id, created_at);
