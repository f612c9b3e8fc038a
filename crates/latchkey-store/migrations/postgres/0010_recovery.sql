-- A phone or email change is a new authenticator (DESIGN.md): when each last changed, in Unix
-- microseconds, so SMS and email are not trusted for sign-in or recovery for a cooling-off time.
ALTER TABLE users ADD COLUMN phone_changed_at BIGINT;
ALTER TABLE users ADD COLUMN email_changed_at BIGINT;
-- A waiting recovery is a flow; the owner's cancel finds the account's recovery flows.
CREATE INDEX flows_user_kind ON flows (user_id, kind);
-- Single-use values of every kind (a DPoP proof's jti, a notice's "this wasn't me" token), kept
-- until they could no longer be accepted anyway.
ALTER TABLE dpop_proofs RENAME TO used_once;
