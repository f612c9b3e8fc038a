-- Indexes for the statements that read whole tables (issue 17, item 5; the `plans` test):
-- the periodic purge, which on SQLite held the write lock while it scanned every rate-limit
-- window, failure counter and retired username; removing an endpoint's undelivered events and
-- reading one provider's messages; the newest audit events.
CREATE INDEX rate_counters_window_start ON rate_counters (window_start);
CREATE INDEX failure_counters_expires_at ON failure_counters (expires_at);
CREATE INDEX retired_usernames_until ON retired_usernames (until);
CREATE INDEX outbox_provider ON outbox (provider, created_at);
CREATE INDEX audit_events_at ON audit_events (at, id);
