-- Issue 15: event webhook endpoints made through the admin API (configured ones live in the
-- configuration). `events` is a JSON array of event names; the `whsec_` secret is sealed with
-- the data key, the id as associated data.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
