-- Outbound webhooks: the endpoints, the events each one wants, the outbox of events, one
-- delivery per event and endpoint, and every attempt of it. Events and their deliveries are
-- written in the transaction of the change they report, so a restart loses none of them.

CREATE TABLE webhooks (
    id                         INTEGER PRIMARY KEY,
    url                        TEXT NOT NULL,
    description                TEXT NOT NULL DEFAULT '',
    secret_enc                 BLOB NOT NULL,               -- AES-256-GCM, bound to this row and column
    previous_secret_enc        BLOB,                        -- after a rotation the old secret still signs ...
    previous_secret_expires_at TEXT,                        -- ... until this time (the grace period)
    enabled                    INTEGER NOT NULL DEFAULT 1,
    disabled_reason            TEXT,
    consecutive_failures       INTEGER NOT NULL DEFAULT 0,  -- failed attempts since the last success
    failing_since              TEXT,                        -- the first of those failures
    last_success_at            TEXT,
    last_failure_at            TEXT,
    created_by                 INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at                 TEXT NOT NULL,
    updated_at                 TEXT NOT NULL
);

-- Which event types a webhook receives ('*' = all, including types added later).
CREATE TABLE webhook_subscriptions (
    webhook_id INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    PRIMARY KEY (webhook_id, event_type)
) WITHOUT ROWID;
CREATE INDEX webhook_subscriptions_type ON webhook_subscriptions (event_type, webhook_id);

-- The outbox. `body` is the exact JSON sent: every attempt signs and sends the same bytes.
CREATE TABLE webhook_events (
    id         TEXT PRIMARY KEY,                            -- evt_<24 hex>, also X-MailFlow-Event-Id
    type       TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- One row per event and webhook. A pending delivery with next_attempt_at NULL is parked:
-- its webhook is disabled, and it resumes when the webhook is enabled again.
CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY,
    webhook_id       INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id         TEXT NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    last_attempt_at  TEXT,
    last_status_code INTEGER,
    last_error       TEXT,
    duration_ms      INTEGER,                               -- of the last attempt
    created_at       TEXT NOT NULL,
    finished_at      TEXT,
    UNIQUE (event_id, webhook_id)
);
-- The scheduler's tick: the earliest due pending deliveries, straight from this index.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at) WHERE status != 'pending';

-- The delivery log: one row per HTTP attempt (the response body is kept only as a short excerpt).
CREATE TABLE webhook_attempts (
    id               INTEGER PRIMARY KEY,
    delivery_id      INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt          INTEGER NOT NULL,
    at               TEXT NOT NULL,
    status_code      INTEGER,
    duration_ms      INTEGER NOT NULL,
    error            TEXT,
    response_excerpt TEXT NOT NULL DEFAULT ''
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempt);
