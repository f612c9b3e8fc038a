-- Issue 14: deleting an account. A deleted account's username is retired for a quarantine (kept
-- as a keyed digest, not the name), and the notices that tell the owner are erased once
-- delivered: the recipient and the body go.
CREATE TABLE retired_usernames (
    digest TEXT PRIMARY KEY,
    until BIGINT NOT NULL
);
ALTER TABLE outbox ADD COLUMN erase_on_delivery BOOLEAN NOT NULL DEFAULT FALSE;
