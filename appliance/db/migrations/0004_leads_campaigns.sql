-- Leads, the suppression list, and campaigns with their sequences and enrolments.

CREATE TABLE leads (
    id           INTEGER PRIMARY KEY,
    email        TEXT NOT NULL UNIQUE,                  -- normalised: trimmed, lower case
    email_domain TEXT NOT NULL,                         -- the part after @, for company-wide rules
    first_name   TEXT NOT NULL DEFAULT '',
    last_name    TEXT NOT NULL DEFAULT '',
    company      TEXT NOT NULL DEFAULT '',
    title        TEXT NOT NULL DEFAULT '',
    phone        TEXT NOT NULL DEFAULT '',
    website      TEXT NOT NULL DEFAULT '',
    timezone     TEXT NOT NULL DEFAULT '',              -- IANA name, e.g. Europe/Berlin
    custom       TEXT NOT NULL DEFAULT '{}',            -- JSON object: any other CSV column by name
    status       TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'contacted', 'replied', 'interested',
                     'not_interested', 'meeting_booked', 'won', 'lost', 'unsubscribed', 'bounced')),
    consent      TEXT NOT NULL DEFAULT 'unknown' CHECK (consent IN ('express', 'implied_business',
                     'implied_relationship', 'unknown')),
    source       TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX leads_domain ON leads (email_domain);
CREATE INDEX leads_status ON leads (status, id);

-- WITHOUT ROWID: the (lead_id, tag) key is the row, one B-tree fewer to write on a 100k import.
CREATE TABLE lead_tags (
    lead_id INTEGER NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    tag     TEXT NOT NULL,
    PRIMARY KEY (lead_id, tag)
) WITHOUT ROWID;
CREATE INDEX lead_tags_tag ON lead_tags (tag, lead_id);

-- Addresses and whole domains never to be mailed again.
CREATE TABLE suppressions (
    id         INTEGER PRIMARY KEY,
    value      TEXT NOT NULL UNIQUE,                    -- a@b.com or b.com, lower case
    kind       TEXT NOT NULL CHECK (kind IN ('email', 'domain')),
    reason     TEXT NOT NULL CHECK (reason IN ('unsubscribed', 'bounced', 'complained', 'manual', 'erased')),
    source     TEXT NOT NULL DEFAULT '',
    created_by INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE campaigns (
    id                    INTEGER PRIMARY KEY,
    name                  TEXT NOT NULL,
    status                TEXT NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active', 'paused', 'completed')),
    schedule              TEXT NOT NULL DEFAULT '{"always": true}',   -- JSON, see API docs
    use_lead_timezone     INTEGER NOT NULL DEFAULT 0,
    daily_new_leads       INTEGER CHECK (daily_new_leads IS NULL OR daily_new_leads > 0),
    daily_limit           INTEGER CHECK (daily_limit IS NULL OR daily_limit > 0),
    stop_on_reply         INTEGER NOT NULL DEFAULT 1,
    stop_on_auto_reply    INTEGER NOT NULL DEFAULT 0,
    stop_company_on_reply INTEGER NOT NULL DEFAULT 0,
    html                  INTEGER NOT NULL DEFAULT 0,                 -- plain text unless set
    unsubscribe_footer    INTEGER NOT NULL DEFAULT 1,                 -- add the footer with the link
    skip_other_campaigns  INTEGER NOT NULL DEFAULT 0,                 -- enrol nobody active elsewhere
    mailbox_tag           TEXT,                                       -- pool by tag, or the chosen list
    created_by            INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    launched_at           TEXT
);

CREATE TABLE campaign_mailboxes (
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    mailbox_id  INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    PRIMARY KEY (campaign_id, mailbox_id)
);

CREATE TABLE campaign_steps (
    id            INTEGER PRIMARY KEY,
    campaign_id   INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,                     -- 0 = the first email
    delay_minutes INTEGER NOT NULL DEFAULT 0 CHECK (delay_minutes >= 0),
    UNIQUE (campaign_id, position)
);

CREATE TABLE step_variants (
    id      INTEGER PRIMARY KEY,
    step_id INTEGER NOT NULL REFERENCES campaign_steps (id) ON DELETE CASCADE,
    label   TEXT NOT NULL,                              -- A, B, C ...
    subject TEXT NOT NULL DEFAULT '',                   -- empty on a follow-up: reply in the thread
    body    TEXT NOT NULL,
    weight  INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 0),
    UNIQUE (step_id, label)
);

CREATE TABLE enrollments (
    id          INTEGER PRIMARY KEY,
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    lead_id     INTEGER NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'completed', 'stopped')),
    stop_reason TEXT,                                   -- replied, bounced, unsubscribed, manual ...
    next_step   INTEGER NOT NULL DEFAULT 0,
    next_due_at TEXT,                                   -- when the next step may go (NULL: not planned)
    mailbox_id  INTEGER REFERENCES mailboxes (id) ON DELETE SET NULL,   -- sticky sender after step 1
    enrolled_at TEXT NOT NULL,
    UNIQUE (campaign_id, lead_id)
);
-- The planner's question "what is due now in this campaign?" must not scan idle enrolments.
CREATE INDEX enrollments_due ON enrollments (campaign_id, next_due_at) WHERE status = 'active';
CREATE INDEX enrollments_lead ON enrollments (lead_id);
