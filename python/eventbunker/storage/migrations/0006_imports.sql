-- Bulk imports that can be resumed: how far each named import has committed.

-- Moved in the same transaction as each batch of an import's rows, so a
-- re-sent import skips exactly the lines already stored.
CREATE TABLE imports (
    project_id       bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    import_id        text NOT NULL,
    committed_lines  bigint NOT NULL DEFAULT 0,
    accepted         bigint NOT NULL DEFAULT 0,
    rejected         bigint NOT NULL DEFAULT 0,
    duplicates       bigint NOT NULL DEFAULT 0,
    -- The first rejected lines over every run, so a resumed import can
    -- still list them.
    errors           jsonb NOT NULL DEFAULT '[]',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, import_id)
);
