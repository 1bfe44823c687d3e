-- Who may act: organizations' territorial scopes, accounts, issued tokens, and the
-- answers kept for Idempotency-Key retries.
CREATE TABLE organization_scopes (
    organization_id TEXT NOT NULL REFERENCES organizations(id),
    scope TEXT NOT NULL,            -- SERVICE:KIND:CODE, e.g. 18:departement:33
    PRIMARY KEY (organization_id, scope)
);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT REFERENCES organizations(id),
    role TEXT NOT NULL,             -- admin, authority, moderator
    name TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- Every token issued; a token whose jti is not here, or is revoked, is refused.
CREATE TABLE tokens (
    jti TEXT PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    issued_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);
CREATE INDEX tokens_account ON tokens(account_id);

CREATE TABLE idempotency_keys (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    idempotency_key TEXT NOT NULL,
    request_digest TEXT NOT NULL,   -- method, path and body of the first request
    status INTEGER NOT NULL,
    location TEXT,
    etag TEXT,
    body TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (account_id, idempotency_key)
);

ALTER TABLE audit_events ADD COLUMN details TEXT;
