-- The audit trail: one append-only event per change, saying who (organization, and the
-- account once accounts exist), when, what and why. Never updated, never deleted.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY NOT NULL,
    at TIMESTAMP NOT NULL,
    organization_id TEXT REFERENCES organizations(id),
    account_id TEXT,
    action TEXT NOT NULL,
    entity_kind TEXT NOT NULL,      -- number, outage, organization
    entity_id TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX audit_events_entity ON audit_events(entity_kind, entity_id, at);
