-- The fingerprints of the key files this database was set up with (token-signing key, data key,
-- pepper). A replica or a restore without the right files refuses to start instead of making new
-- keys that would make every password, PIN and sealed secret fail.
CREATE TABLE key_fingerprints (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);
