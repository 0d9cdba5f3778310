-- Accounts, projects, keys, the events hypertable and billed write counters.

CREATE TABLE accounts (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The single-user case: projects created without an account land here.
INSERT INTO accounts (name) VALUES ('default');

CREATE TABLE projects (
    id          bigserial PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id                   bigserial PRIMARY KEY,
    project_id           bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    kind                 text NOT NULL CHECK (kind IN ('write', 'query', 'delete')),
    -- SHA-256 of the secret; the secret itself is never stored.
    key_hash             bytea NOT NULL UNIQUE,
    -- First characters of the secret, to recognise a key in lists.
    prefix               text NOT NULL,
    customer_identifier  text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    revoked_at           timestamptz,
    last_used_at         timestamptz
);
CREATE INDEX api_keys_project ON api_keys (project_id);

CREATE TABLE events (
    "timestamp"          timestamptz NOT NULL,
    received_at          timestamptz NOT NULL,
    sent_at              timestamptz,
    project_id           bigint NOT NULL,
    event_name           text NOT NULL,
    event_id             text,
    customer_identifier  text,
    metric_name          text,
    metric_value         double precision,
    ip                   text,
    user_agent           text,
    url                  text,
    referrer             text,
    geo_country          text,
    geo_region           text,
    geo_city             text,
    geo_latitude         double precision,
    geo_longitude        double precision,
    geo_timezone         text,
    ua_browser           text,
    ua_browser_version   text,
    ua_os                text,
    ua_os_version        text,
    ua_device_type       text,
    ua_device_brand      text,
    ua_device_model      text,
    is_bot               boolean NOT NULL DEFAULT false,
    utm_source           text,
    utm_medium           text,
    utm_campaign         text,
    utm_term             text,
    utm_content          text,
    referrer_host        text,
    url_host             text,
    url_path             text,
    properties           jsonb NOT NULL DEFAULT '{}'
);
SELECT create_hypertable('events', by_range('timestamp', INTERVAL '1 day'));
-- Every query is per project and time range; the hypertable already has a
-- ("timestamp" DESC) index, this one serves the per-project scans.
CREATE INDEX events_project_time ON events (project_id, "timestamp" DESC);

-- Billed writes per project and UTC day of receipt. Each flusher adds to its
-- own shard row so that concurrent group commits never wait on one row lock;
-- a day's count is the sum over its shards.
CREATE TABLE write_counters (
    project_id  bigint NOT NULL,
    day         date NOT NULL,
    shard       smallint NOT NULL,
    events      bigint NOT NULL,
    PRIMARY KEY (project_id, day, shard)
);
