-- Exactly-once from the write-ahead spool, and idempotency keys.

-- How far each worker's spool has been copied into `events`, updated in the
-- same transaction as the COPY: replay resumes exactly there.
CREATE TABLE spool_checkpoints (
    spool_id    text PRIMARY KEY,
    segment     bigint NOT NULL,
    "offset"    bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every stored event_id, kept at least 24 h (the server prunes rows older
-- than its idempotency window): a retry with the same id is stored once.
CREATE TABLE event_ids (
    project_id   bigint NOT NULL,
    event_id     text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, event_id)
);
CREATE INDEX event_ids_received_at ON event_ids (received_at);
