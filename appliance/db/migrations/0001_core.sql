-- Core tables of the appliance itself.

-- Key/value settings of the appliance (typed by the service that owns each name).
CREATE TABLE settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- One-time links that let the first owner account be created. Only a SHA-256 of the
-- token is stored, so a copy of the database does not hand out a working link.
CREATE TABLE setup_tokens (
    id         INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
