-- Device sessions are sender-constrained (RFC 9449): the JWK thumbprint of the device's
-- possession key. A refresh of such a session needs a DPoP proof by that key.
ALTER TABLE sessions ADD COLUMN dpop_jkt TEXT;

-- DPoP proofs seen (SHA-256 of thumbprint and jti), kept while their iat is inside the window,
-- so a proof is accepted once.
CREATE TABLE dpop_proofs (
    id TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX dpop_proofs_expires_at ON dpop_proofs (expires_at);
