-- Accounts as owners: admin keys that manage an account's projects, key
-- labels, and the web app's server-side sessions.

-- An account admin key (`eba_...`): like the project keys, only its SHA-256
-- is stored. It reaches the admin API and the web app for its own account.
CREATE TABLE admin_keys (
    id            bigserial PRIMARY KEY,
    account_id    bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key_hash      bytea NOT NULL UNIQUE,
    prefix        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX admin_keys_account ON admin_keys (account_id);

-- A free label for project keys ("website", "backend"...).
ALTER TABLE api_keys ADD COLUMN name text;

-- Projects are listed per account.
CREATE INDEX projects_account ON projects (account_id);

-- Web sessions: the cookie holds a random token, the table its SHA-256.
-- Each session has its own CSRF token, required by every form it posts.
-- Revoking the admin key that opened a session ends the session.
CREATE TABLE web_sessions (
    token_hash    bytea PRIMARY KEY,
    admin_key_id  bigint NOT NULL REFERENCES admin_keys (id) ON DELETE CASCADE,
    csrf_token    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
