-- Event ids claimed at acceptance (after the spool's fsync, before the 202),
-- shared by every worker and node: a retry that reaches another worker before
-- the first request is drained is still answered `duplicates: 1`. The drainer's
-- event_ids stay what makes an id stored once; this only makes answers exact.
CREATE TABLE event_id_claims (
    project_id  bigint NOT NULL,
    event_id    text NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, event_id)
);
CREATE INDEX event_id_claims_claimed_at ON event_id_claims USING brin (claimed_at);

-- A named import started by a customer-scoped key belongs to that customer:
-- its progress is visible to that customer's keys only (and unscoped
-- imports to unscoped keys only).
ALTER TABLE imports ADD COLUMN customer_identifier text;
