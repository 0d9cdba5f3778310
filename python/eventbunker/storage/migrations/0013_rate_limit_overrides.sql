-- Per-project rate limits (issue 15): a project's write keys and customers get
-- these instead of the server's --rate-limit-* settings; NULL: the server's.
ALTER TABLE projects
    ADD COLUMN rate_limit_events_per_second double precision
        CHECK (rate_limit_events_per_second IS NULL OR rate_limit_events_per_second > 0),
    ADD COLUMN rate_limit_burst integer
        CHECK (rate_limit_burst IS NULL OR rate_limit_burst >= 1);
