-- The delivery worker's claim reads only the messages that may be due (issue 17; found by the
-- code-step benchmark): through `outbox_provider` (0022) it walked every message the provider
-- ever had, sent ones included, so each claim grew with the outbox's history. The claim's own
-- `status IN ('pending', 'sending')` term matches this predicate, as a partial index requires.
CREATE INDEX outbox_claimable ON outbox (provider, next_attempt_at) WHERE status IN ('pending', 'sending');
