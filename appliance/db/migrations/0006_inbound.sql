-- Reading mail back over IMAP: per-folder sync state, every inbound message seen (the unified
-- inbox), replies written from the app, and lead labels set from the inbox.

-- Incremental sync: per mailbox folder, the UIDVALIDITY and the highest UID already read.
-- A changed UIDVALIDITY means the UIDs were renumbered: read the folder again from the start;
-- inbox_messages.dedup_key keeps that from producing any effect twice.
CREATE TABLE sync_folders (
    mailbox_id  INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    folder      TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('inbox', 'junk')),
    uidvalidity INTEGER,
    last_uid    INTEGER NOT NULL DEFAULT 0,
    synced_at   TEXT,
    last_error  TEXT,
    PRIMARY KEY (mailbox_id, folder)
);

-- The conversation with leads: mail that came in (direction 'in', classified), and replies a
-- person wrote from the app (direction 'out'). Our sequence steps stay in `messages`.
CREATE TABLE inbox_messages (
    id                INTEGER PRIMARY KEY,
    direction         TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    dedup_key         TEXT NOT NULL UNIQUE,         -- in: hash of mailbox + Message-ID (or headers); out: own id
    mailbox_id        INTEGER REFERENCES mailboxes (id) ON DELETE SET NULL,
    folder            TEXT,
    uid               INTEGER,
    kind              TEXT NOT NULL CHECK (kind IN ('reply', 'bounce', 'auto_reply', 'complaint',
                                                     'unsubscribe', 'other', 'sent')),
    header_message_id TEXT,                         -- the Message-ID header of this mail
    in_reply_to       TEXT,                         -- out: the inbound Message-ID answered
    lead_id           INTEGER REFERENCES leads (id) ON DELETE SET NULL,
    campaign_id       INTEGER REFERENCES campaigns (id) ON DELETE SET NULL,
    message_id        INTEGER REFERENCES messages (id) ON DELETE SET NULL,   -- our step it answers
    from_address      TEXT,
    from_name         TEXT NOT NULL DEFAULT '',
    to_address        TEXT,
    subject           TEXT NOT NULL DEFAULT '',
    snippet           TEXT NOT NULL DEFAULT '',
    body_text         TEXT NOT NULL DEFAULT '',
    body_html         TEXT,                         -- as received; sanitised when shown, never stored sanitised
    truncated         INTEGER NOT NULL DEFAULT 0,   -- oversized: headers and the first part only
    details           TEXT NOT NULL DEFAULT '{}',   -- the classification (status, hard, reason, evidence ...)
    unread            INTEGER NOT NULL DEFAULT 1,
    sent_by           INTEGER REFERENCES users (id) ON DELETE SET NULL,      -- out: who wrote it
    received_at       TEXT NOT NULL,                -- in: Date header (or arrival); out: sent time
    created_at        TEXT NOT NULL
);
CREATE INDEX inbox_messages_list ON inbox_messages (kind, id);
CREATE INDEX inbox_messages_lead ON inbox_messages (lead_id, received_at);
CREATE INDEX inbox_messages_unread ON inbox_messages (id) WHERE unread = 1 AND direction = 'in';
CREATE INDEX inbox_messages_mailbox ON inbox_messages (mailbox_id, id);
CREATE INDEX inbox_messages_campaign ON inbox_messages (campaign_id, id);

-- Soft bounces are counted per lead; past a threshold the address is suppressed.
ALTER TABLE leads ADD COLUMN soft_bounces INTEGER NOT NULL DEFAULT 0;

-- One label per lead, set from the inbox: built-in names (interested, not_interested,
-- meeting_booked, out_of_office, wrong_person) or a custom label from inbox_labels.
ALTER TABLE leads ADD COLUMN label TEXT;
CREATE INDEX leads_label ON leads (label) WHERE label IS NOT NULL;

CREATE TABLE inbox_labels (
    name       TEXT PRIMARY KEY,                    -- lower case, [a-z0-9_ -], 1-40 characters
    color      TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
