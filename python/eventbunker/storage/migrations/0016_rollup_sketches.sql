-- Sketches in the rollups (issue 14), read only by queries that send
-- "approximate": true (query/planner.py):
--   distinct_ids   HyperLogLog (postgresql-hll, defaults: 2^11 registers of
--                  5 bits, exact "explicit" sets below ~160 values) of
--                  hll_hash_text(distinct_id): count_unique of distinct_id;
--   customers      the same of customer_identifier;
--   metric_digest  t-digest (compression 100) of metric_value: median and
--                  percentile.
-- NULL where the bucket holds no such value. Both extensions are Debian's
-- postgresql-<version>-hll and -tdigest (scripts/install-postgres.sh).
-- The existing rows are recomputed from the events, sketches included.
CREATE EXTENSION IF NOT EXISTS hll;
CREATE EXTENSION IF NOT EXISTS tdigest;
DO $$
DECLARE
    level text;
BEGIN
    FOREACH level IN ARRAY ARRAY['minute', 'hour', 'day', 'minute_all', 'hour_all', 'day_all']
    LOOP
        EXECUTE format(
            'ALTER TABLE %I ADD COLUMN distinct_ids hll, ADD COLUMN customers hll,'
            ' ADD COLUMN metric_digest tdigest',
            'rollups_' || level);
        -- Time ranges without an event name (count by country over 30 days,
        -- the tail of minutes before "now"): the unique key leads with
        -- event_name, so without this they read every row of the project
        -- (2 s at 20 M events, benches/query_latency.py).
        EXECUTE format('CREATE INDEX %I ON %I (project_id, bucket)',
            'rollups_' || level || '_time', 'rollups_' || level);
        EXECUTE format('TRUNCATE %I', 'rollups_' || level);
        EXECUTE format(
            'INSERT INTO %I SELECT time_bucket(%L, "timestamp"), project_id, event_name,'
            ' metric_name, %s,'
            ' count(*), count(metric_value), sum(metric_value), min(metric_value),'
            ' max(metric_value), hll_add_agg(hll_hash_text(distinct_id)),'
            ' hll_add_agg(hll_hash_text(customer_identifier)), tdigest(metric_value, 100)'
            ' FROM events GROUP BY 1, 2, 3, 4, 5, 6, 7, 8',
            'rollups_' || level, '1 ' || split_part(level, '_', 1),
            CASE WHEN level LIKE '%_all' THEN 'NULL::text, NULL::text, NULL::text, NULL::text'
            ELSE 'customer_identifier, geo_country, ua_device_type, utm_source' END);
    END LOOP;
END
$$;
