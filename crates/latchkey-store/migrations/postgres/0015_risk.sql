-- Issue 13: risk-based decisions. What each account's sign-ins came from: networks (IPv4 /24,
-- IPv6 /48) with their GeoIP place when the operator supplies a database, and user agents
-- (hashed), for the "new network", "new country", "impossible travel" and "new device" signals.
CREATE TABLE sightings (
    user_id UUID NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    country TEXT,
    latitude_e6 BIGINT,
    longitude_e6 BIGINT,
    first_seen_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, kind, value)
);
CREATE INDEX sightings_recent ON sightings (user_id, last_seen_at);
-- Failure velocity, per account and per source (one address, every account), and an account's
-- recent recoveries and reports: partial indexes, so counting reads only the rows counted.
CREATE INDEX audit_events_failed_sign_ins_by_user ON audit_events (user_id, at)
    WHERE kind = 'sign_in' AND outcome = 'failure';
CREATE INDEX audit_events_failed_sign_ins_by_ip ON audit_events (ip, at)
    WHERE kind = 'sign_in' AND outcome = 'failure';
CREATE INDEX audit_events_security_by_user ON audit_events (user_id, at)
    WHERE kind IN ('recovery', 'this_wasnt_me');
-- The flow that started a session: "this wasn't me" in that sign-in's notice ends it.
ALTER TABLE sessions ADD COLUMN flow_id UUID;
CREATE INDEX sessions_flow ON sessions (flow_id);
-- Checklist SES-8: a refresh from another network or user agent than the session's makes its
-- next sensitive call ask for a step-up, which clears this.
ALTER TABLE sessions ADD COLUMN step_up_required_at BIGINT;
