-- Second factors. Secret material is sealed with the data key (AES-256-GCM with a key id).
CREATE TABLE factors (
    id BLOB PRIMARY KEY,
    user_id BLOB NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    secret_sealed TEXT,
    last_step BIGINT,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX factors_user_id ON factors (user_id);
