-- Leaner rows (issue 14). Measured with benches/bytes_per_event.py (1M
-- realistic events through the bulk import, GeoIP-enriched): 557.9 bytes per
-- event, of which the heap 406.2 and the three indexes 151.4
-- (events_project_event_time 84.8, events_project_time 44.5,
-- events_project_metric_time 22.2); with every chunk compacted 490.6 (the
-- indexes 84.2: 43.6, 29.0, 11.6).
--
-- Column order and types stay: alignment padding is ~3 bytes per row (a 5 %
-- sample: 391 bytes per row, of which 356 are column values and 32 the tuple
-- header with its null bitmap), not worth rewriting every chunk; the heap's
-- big values are what the event sent (user_agent 103 bytes on average, url
-- 50, properties 71), kept as sent.
--
-- Indexes: each pays for itself (EXPLAIN of the query builder's plans):
-- events_project_event_time serves every raw query naming an event,
-- events_project_metric_time every metric query (index-only for its
-- percentiles), events_project_time the queries and deletes naming neither,
-- retention's per-project deletes and the web app's latest events. What does
-- not pay is their emptiness: while a chunk takes events, inserts land inside
-- each (project, event) run rather than at its end, and each page split there
-- leaves two half-full pages (84.8 bytes per event where 44 are used). Once a
-- chunk's time range has ended, storage/compaction.py rebuilds its indexes full
-- (fillfactor 100, REINDEX CONCURRENTLY, one chunk at a time), recorded here
-- so each chunk is rebuilt once. Existing chunks are compacted the same way,
-- in the background, rather than in this migration.
CREATE TABLE IF NOT EXISTS chunk_compactions (
    chunk         text PRIMARY KEY,  -- schema-qualified chunk table name
    compacted_at  timestamptz NOT NULL DEFAULT now()
);

-- TOAST compression stays pglz: measured (5,000 rows into a table with the
-- column set one way or the other, on this PostgreSQL 15), lz4 stores more:
-- properties of ~5.7 KB (a 60-item cart) 2,843 bytes per row against
-- pglz's 1,645, text-heavy ones of ~3.3 KB (URLs, titles) 1,645 against 1,373.
-- lz4 is faster (COPY ~30 % and reads ~40 % less time, one noisy run), but
-- this is about bytes; and realistic rows stay under the ~2 KB at which
-- PostgreSQL compresses at all (TOAST was 0.3 bytes per event above).
