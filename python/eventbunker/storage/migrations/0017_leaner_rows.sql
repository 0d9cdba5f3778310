-- Leaner rows (issue 14). Measured with benches/bytes_per_event.py (1M
-- realistic events through the bulk import): 538 bytes per event, of which
-- the heap 386 and the three indexes 151 (events_project_event_time 84.8,
-- events_project_time 44.2, events_project_metric_time 22.2).
--
-- Indexes: each pays for itself (EXPLAIN of the query builder's plans):
-- events_project_event_time serves every raw query naming an event,
-- events_project_metric_time every metric query (index-only for its
-- percentiles), events_project_time the queries and deletes naming neither,
-- retention's per-project deletes and the web app's latest events. What does
-- not pay is their emptiness: while a chunk takes events, inserts land inside
-- each (project, event) run rather than at its end, and each page split there
-- leaves two half-full pages (84.8 bytes per entry where 44 are used). Once a
-- chunk's time range has ended, storage/compaction.py rebuilds its indexes full
-- (fillfactor 100, REINDEX CONCURRENTLY, one chunk at a time), recorded here
-- so each chunk is rebuilt once. Existing chunks are compacted the same way,
-- in the background, rather than in this migration.
CREATE TABLE IF NOT EXISTS chunk_compactions (
    chunk         text PRIMARY KEY,  -- schema-qualified chunk table name
    compacted_at  timestamptz NOT NULL DEFAULT now()
);

-- Values too large for a row (TOAST, from ~2 KB rows: big properties, long
-- URLs or user agents) are compressed with lz4 rather than pglz: as small or
-- smaller on JSON, several times faster to compress on ingest and to read
-- back. Only values written from now on; existing ones stay readable as they
-- are. The hypertable passes the setting to its chunks, present and future. A
-- PostgreSQL built without lz4 (Debian's are built with it) keeps pglz.
DO $$
BEGIN
    ALTER TABLE events
        ALTER COLUMN properties SET COMPRESSION lz4,
        ALTER COLUMN user_agent SET COMPRESSION lz4,
        ALTER COLUMN url SET COMPRESSION lz4,
        ALTER COLUMN referrer SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this PostgreSQL has no lz4: TOAST stays pglz';
END
$$;
