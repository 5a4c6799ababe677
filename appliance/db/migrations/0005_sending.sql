-- The sending engine: one row per outbound message, from planned to sent (or failed), and
-- what happened afterwards (events). Message-IDs are generated before the SMTP transaction.

CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    campaign_id   INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    enrollment_id INTEGER NOT NULL REFERENCES enrollments (id) ON DELETE CASCADE,
    lead_id       INTEGER NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    mailbox_id    INTEGER REFERENCES mailboxes (id) ON DELETE SET NULL,
    step          INTEGER NOT NULL,
    variant       TEXT,
    status        TEXT NOT NULL CHECK (status IN ('planned', 'sending', 'sent', 'failed', 'uncertain', 'cancelled')),
    message_id    TEXT NOT NULL UNIQUE,                  -- <...@sender-domain>, fixed before sending
    to_email      TEXT NOT NULL,
    to_domain     TEXT NOT NULL,
    subject       TEXT,                                  -- as sent (follow-ups thread under step 1's)
    planned_at    TEXT NOT NULL,                         -- not before this
    claimed_at    TEXT,
    sent_at       TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    smtp_code     INTEGER,
    last_error    TEXT,
    created_at    TEXT NOT NULL,
    UNIQUE (enrollment_id, step)                         -- one message per lead and step, ever
);
CREATE INDEX messages_planned ON messages (mailbox_id, planned_at) WHERE status = 'planned';
CREATE INDEX messages_sending ON messages (status) WHERE status IN ('sending', 'uncertain');
CREATE INDEX messages_mailbox_sent ON messages (mailbox_id, sent_at);
CREATE INDEX messages_campaign ON messages (campaign_id, step, variant, status);   -- stats per step/variant
CREATE INDEX messages_queue ON messages (planned_at, id) WHERE status = 'planned';  -- the queue, in order
CREATE INDEX messages_domain_sent ON messages (to_domain, sent_at);
CREATE INDEX messages_lead ON messages (lead_id, id);

-- Pacing state per mailbox: the earliest time its next message may go (last send + a random gap).
CREATE TABLE mailbox_pacing (
    mailbox_id      INTEGER PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
    next_allowed_at TEXT NOT NULL,
    last_sent_at    TEXT
);

-- What happened: sent, replied, bounced, auto_replied, unsubscribed, complained ...
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    campaign_id INTEGER REFERENCES campaigns (id) ON DELETE SET NULL,
    lead_id     INTEGER REFERENCES leads (id) ON DELETE SET NULL,
    message_id  INTEGER REFERENCES messages (id) ON DELETE SET NULL,
    step        INTEGER,
    variant     TEXT,
    data        TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL
);
CREATE INDEX events_campaign ON events (campaign_id, kind);
CREATE INDEX events_lead ON events (lead_id, id);
