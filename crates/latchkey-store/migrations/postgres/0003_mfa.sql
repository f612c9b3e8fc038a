-- Second factors beyond TOTP: the preferred method, recovery codes, abandoned-flow reporting.
ALTER TABLE users ADD COLUMN preferred_mfa TEXT;

-- Recovery codes are 120-bit random strings, kept only as a MAC under the pepper.
CREATE TABLE recovery_codes (
    user_id UUID NOT NULL REFERENCES users (id),
    mac TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, mac)
);

-- Set once an expired flow was counted (abandoned or not), so each replica counts each flow once.
ALTER TABLE flows ADD COLUMN reported BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX flows_unreported_expiry ON flows (expires_at) WHERE reported = FALSE;
