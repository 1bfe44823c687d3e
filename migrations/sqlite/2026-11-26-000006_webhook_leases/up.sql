-- Several instances run a delivery task per webhook; the one holding the lease delivers,
-- so each change reaches a subscriber once across the cluster (at least once if an
-- instance dies mid-delivery).
ALTER TABLE webhooks ADD COLUMN lease_owner TEXT;
ALTER TABLE webhooks ADD COLUMN lease_until TIMESTAMP;
