-- Dimensions lose their minute level (issue 14): rollups_minute, by customer,
-- country, device type and UTM source per minute, held 0.75 rows per event at
-- 20 M events over 90 days (15 M rows, 4.6 GB of the 7.6 GB of rollups), so
-- nearly every stored event was one more insert into it, and sustained
-- batches were stored 0.73x as fast with rollups as without (0.98x without
-- this table; benches/sustained_batches.py --rollups-cost). A query by a
-- dimension now reads the hour and day levels, and the raw events after the
-- last whole hour (storage/rollups.py, query/planner.py); minute-level
-- dashboards without a dimension keep rollups_minute_all.
DROP TABLE IF EXISTS rollups_minute;
