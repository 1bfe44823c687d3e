DROP INDEX numbers_same_phone;
ALTER TABLE numbers DROP COLUMN decision_reason;
ALTER TABLE numbers DROP COLUMN decided_at;
ALTER TABLE numbers DROP COLUMN decided_by;
ALTER TABLE numbers DROP COLUMN comment;
ALTER TABLE numbers DROP COLUMN supersedes;
ALTER TABLE numbers DROP COLUMN submitted_by;
ALTER TABLE numbers DROP COLUMN submission_kind;
