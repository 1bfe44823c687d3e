-- Moderation: submissions by moderators and citizens' tips wait as `pending` numbers until a
-- second person decides; a correction is a pending number that supersedes a published one.
ALTER TABLE numbers ADD COLUMN submission_kind TEXT;   -- submission, tip, correction; null for authority publications
ALTER TABLE numbers ADD COLUMN submitted_by TEXT;      -- account id; null for tips (nothing kept of the tipper)
ALTER TABLE numbers ADD COLUMN supersedes TEXT;        -- for a correction: the number it replaces
ALTER TABLE numbers ADD COLUMN comment TEXT;           -- what the submitter or tipper said
ALTER TABLE numbers ADD COLUMN decided_by TEXT;        -- account id of the decision
ALTER TABLE numbers ADD COLUMN decided_at TIMESTAMP;
ALTER TABLE numbers ADD COLUMN decision_reason TEXT;
-- Duplicate checks (same phone, service and territory) on every publication and submission.
CREATE INDEX numbers_same_phone ON numbers(phone_e164, service_code, territory_kind, territory_code);
