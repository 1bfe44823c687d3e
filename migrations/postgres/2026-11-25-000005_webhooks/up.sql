-- Webhooks: subscribers that receive every public change, signed, retried with backoff.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    delivered_seq BIGINT NOT NULL,   -- the last change delivered (or skipped at registration)
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY NOT NULL,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id),
    seq BIGINT NOT NULL,
    attempt INTEGER NOT NULL,
    status INTEGER,                  -- HTTP status; null when no answer
    error TEXT,
    at TIMESTAMP NOT NULL
);
CREATE INDEX webhook_deliveries_by_hook ON webhook_deliveries(webhook_id, id);
