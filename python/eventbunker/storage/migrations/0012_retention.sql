-- Per-project retention (issue 14): events older than this many days are
-- deleted in the background (storage/retention.py); NULL keeps them forever.
ALTER TABLE projects ADD COLUMN retention_days integer
    CHECK (retention_days IS NULL OR retention_days > 0);
