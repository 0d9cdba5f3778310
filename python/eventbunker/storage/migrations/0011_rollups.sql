-- Live rollups (issue 14): per (project, event name, metric name, bucket and
-- a few dimensions) the event count and the count, sum, min and max of
-- metric_value, at three levels (minute, hour, day, all UTC). They are
-- written by the transaction that stores the events (storage/rollups.py),
-- so a query answered from them sees exactly what the raw rows hold.
--
-- The dimensions are the columns dashboards group and filter on and that
-- stay few per minute: the key's customer, country, device type, UTM source.
-- NULLS NOT DISTINCT (PostgreSQL 15): an unknown country is one group.
-- Fill factor 80: upserts only change the counters, so they stay HOT updates.
-- The *_all tables hold the same with every dimension NULL (all customers,
-- countries, ...): dashboards without a dimension read far fewer rows
-- (measured at 1M events: 3,000 dimension combinations per hour).
DO $$
DECLARE
    level text;
BEGIN
    FOREACH level IN ARRAY ARRAY['minute', 'hour', 'day', 'minute_all', 'hour_all', 'day_all']
    LOOP
        EXECUTE format(
            'CREATE TABLE %I ('
            ' bucket timestamptz NOT NULL,'
            ' project_id bigint NOT NULL,'
            ' event_name text NOT NULL,'
            ' metric_name text,'
            ' customer_identifier text,'
            ' geo_country text,'
            ' ua_device_type text,'
            ' utm_source text,'
            ' events bigint NOT NULL,'
            ' metric_count bigint NOT NULL,'
            ' metric_sum double precision,'
            ' metric_min double precision,'
            ' metric_max double precision,'
            ' UNIQUE NULLS NOT DISTINCT (project_id, event_name, bucket, metric_name,'
            '   customer_identifier, geo_country, ua_device_type, utm_source)'
            ') WITH (fillfactor = 80)',
            'rollups_' || level);
        EXECUTE format(
            'CREATE INDEX %I ON %I (project_id, metric_name, bucket)'
            ' WHERE metric_name IS NOT NULL',
            'rollups_' || level || '_metric', 'rollups_' || level);
        -- The events stored before this migration.
        EXECUTE format(
            'INSERT INTO %I SELECT time_bucket(%L, "timestamp"), project_id, event_name,'
            ' metric_name, %s,'
            ' count(*), count(metric_value), sum(metric_value), min(metric_value),'
            ' max(metric_value) FROM events GROUP BY 1, 2, 3, 4, 5, 6, 7, 8',
            'rollups_' || level, '1 ' || split_part(level, '_', 1),
            CASE WHEN level LIKE '%_all' THEN 'NULL::text, NULL::text, NULL::text, NULL::text'
            ELSE 'customer_identifier, geo_country, ua_device_type, utm_source' END);
    END LOOP;
END
$$;
