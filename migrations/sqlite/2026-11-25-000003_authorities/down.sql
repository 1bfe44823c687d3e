ALTER TABLE audit_events DROP COLUMN details;
DROP TABLE idempotency_keys;
DROP TABLE tokens;
DROP TABLE accounts;
DROP TABLE organization_scopes;
