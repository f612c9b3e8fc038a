-- Issue 14: the operator's search by a prefix of the username, the email (any case) or the phone
-- number, as ranges compared byte by byte (COLLATE "C"), which these indexes serve.
CREATE INDEX users_username_bytes ON users ((username_canonical COLLATE "C"));
CREATE INDEX users_email_lower_bytes ON users ((lower(email) COLLATE "C"));
CREATE INDEX users_phone_bytes ON users ((phone COLLATE "C"));
