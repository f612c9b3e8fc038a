-- Push approvals (checklist PUSH-1…5): a sign-in elsewhere asks the account's enrolled devices.
-- One pending per account, enforced here so parallel sign-ins cannot stack prompts; a device's
-- answer is the conditional UPDATE … WHERE status = 'pending', so it takes effect once.
CREATE TABLE approvals (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id),
    flow_id UUID NOT NULL,
    kind TEXT NOT NULL,
    number TEXT NOT NULL,
    nonce TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_at BIGINT,
    device_id UUID,
    ip TEXT,
    user_agent TEXT
);
CREATE UNIQUE INDEX approvals_one_pending ON approvals (user_id) WHERE status = 'pending';
CREATE INDEX approvals_user_status ON approvals (user_id, status, decided_at);
CREATE INDEX approvals_expires_at ON approvals (expires_at);
