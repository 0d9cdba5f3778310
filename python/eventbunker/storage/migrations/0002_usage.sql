-- Usage figures beside the billed counts: time from receipt to commit, and
-- refused requests by reason.

-- Per flush, in the same transaction as the events: the receipt-to-commit
-- latency of every event, summed (for the mean) and maxed.
ALTER TABLE write_counters
    ADD COLUMN latency_ms_sum double precision NOT NULL DEFAULT 0,
    ADD COLUMN latency_ms_max double precision NOT NULL DEFAULT 0;

-- Refused ingest requests of a known project, by UTC day and reason
-- (requests without a valid key belong to no project and are only in /metrics).
CREATE TABLE rejected_counters (
    project_id  bigint NOT NULL,
    day         date NOT NULL,
    reason      text NOT NULL,
    shard       smallint NOT NULL,
    requests    bigint NOT NULL,
    PRIMARY KEY (project_id, day, reason, shard)
);
