-- Issue 14: admins are people. An account with a role here signs in through Latchkey's own flows
-- and, at aal2, may use the admin API and the console: `admin` may do everything, `read_only`
-- may only look.
CREATE TABLE admins (
    user_id BLOB PRIMARY KEY REFERENCES users (id),
    role TEXT NOT NULL,
    granted_at BIGINT NOT NULL
);
