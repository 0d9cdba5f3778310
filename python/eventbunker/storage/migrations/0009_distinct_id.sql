-- The person an event is about: an SDK's user or anonymous id (Segment's
-- userId/anonymousId, PostHog's and Mixpanel's distinct_id, Amplitude's
-- user_id/device_id), or distinct_id on our own /v1/events. Nullable and
-- without a default, so adding it rewrites no chunk; no index of its own:
-- count_unique over it scans the (project_id, "timestamp") range like any
-- other column, and one more index would cost every insert.
ALTER TABLE events ADD COLUMN IF NOT EXISTS distinct_id text;
