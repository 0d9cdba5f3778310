-- Indexes for the query API (issue 5).
--
-- Nearly every analysis names one event (Keen's event collection) or one
-- metric. Without these, "count signups per day for 30 days" reads every
-- event of the project in the timeframe; with them it reads only the named
-- event's index entries (index-only once vacuumed).
--
-- Ingest cost, measured with COPY of 5k-row batches on 2 cores: about 10%
-- for the event index (every row), nothing measurable for the metric index,
-- which is partial (only events with a metric) and covers metric_value so
-- that per-metric aggregates never visit the table.
CREATE INDEX IF NOT EXISTS events_project_event_time
    ON events (project_id, event_name, "timestamp" DESC);

CREATE INDEX IF NOT EXISTS events_project_metric_time
    ON events (project_id, metric_name, "timestamp" DESC) INCLUDE (metric_value)
    WHERE metric_name IS NOT NULL;
