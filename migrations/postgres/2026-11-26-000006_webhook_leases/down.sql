ALTER TABLE webhooks DROP COLUMN lease_until;
ALTER TABLE webhooks DROP COLUMN lease_owner;
