-- Issue 14: the user's standard profile attributes (OpenID Connect Core §5.1 names), edited with
-- PATCH /v1/me. Email and phone are not here: they change only through verification.
ALTER TABLE users ADD COLUMN name TEXT;
ALTER TABLE users ADD COLUMN locale TEXT;
ALTER TABLE users ADD COLUMN zoneinfo TEXT;
ALTER TABLE users ADD COLUMN picture TEXT;
