-- Connected mailboxes (SMTP for sending, IMAP for reading), their tags, and how often the
-- scheduler decrypted each one's App Password (one audit row per mailbox per day; the
-- running count lives here, since audit rows are immutable).

CREATE TABLE mailboxes (
    id                   INTEGER PRIMARY KEY,
    email                TEXT NOT NULL UNIQUE,
    display_name         TEXT NOT NULL DEFAULT '',
    provider             TEXT NOT NULL DEFAULT 'custom',
    smtp_host            TEXT NOT NULL,
    smtp_port            INTEGER NOT NULL CHECK (smtp_port BETWEEN 1 AND 65535),
    smtp_security        TEXT NOT NULL CHECK (smtp_security IN ('ssl', 'starttls')),
    imap_host            TEXT NOT NULL,
    imap_port            INTEGER NOT NULL CHECK (imap_port BETWEEN 1 AND 65535),
    imap_security        TEXT NOT NULL CHECK (imap_security IN ('ssl', 'starttls')),
    username             TEXT NOT NULL,
    password_enc         BLOB NOT NULL,                 -- AES-256-GCM, bound to this row and column
    tls_ca_pem           TEXT,                          -- private CA bundle, or
    tls_pin_sha256       TEXT,                          -- a pinned certificate fingerprint
    reply_to             TEXT,
    signature            TEXT NOT NULL DEFAULT '',
    daily_limit          INTEGER NOT NULL DEFAULT 30 CHECK (daily_limit BETWEEN 1 AND 10000),
    min_gap_seconds      INTEGER NOT NULL DEFAULT 300 CHECK (min_gap_seconds >= 0),
    max_gap_seconds      INTEGER NOT NULL DEFAULT 900 CHECK (max_gap_seconds >= min_gap_seconds),
    ramp_start           INTEGER,                       -- slow ramp: N per day at first ...
    ramp_step            INTEGER,                       -- ... plus M per day, up to daily_limit
    ramp_started_on      TEXT,                          -- YYYY-MM-DD
    sending_enabled      INTEGER NOT NULL DEFAULT 1,
    save_sent_copy       INTEGER NOT NULL DEFAULT 0,    -- APPEND sent mail to Sent over IMAP
    sent_folder          TEXT,
    junk_folder          TEXT,
    status               TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'error')),
    status_reason        TEXT,
    last_error           TEXT,
    last_error_code      TEXT,
    last_error_at        TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_checked_at      TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE INDEX mailboxes_status ON mailboxes (status, id);

CREATE TABLE mailbox_tags (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    tag        TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, tag)
);
CREATE INDEX mailbox_tags_tag ON mailbox_tags (tag, mailbox_id);

CREATE TABLE credential_reads (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    day        TEXT NOT NULL,
    reads      INTEGER NOT NULL,
    last_at    TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, day)
);

-- Long-running work started by a person (bulk mailbox checks, imports): progress for the UI.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    total       INTEGER NOT NULL DEFAULT 0,
    done        INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    created_by  INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at  TEXT NOT NULL,
    finished_at TEXT,
    result      TEXT NOT NULL DEFAULT '{}'
);

-- "Recent activity" of one mailbox, user or key: the audit entries about it, newest first.
CREATE INDEX audit_log_target ON audit_log (target_type, target_id, id);
