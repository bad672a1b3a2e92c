-- intake schema, SQLite flavour. Read by staff in a database viewer: plain names, text states,
-- ISO-8601 UTC times ("2026-11-23T19:21:26.123Z"). The PostgreSQL migration mirrors it.

CREATE TABLE organisations (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL CHECK (trim(name) <> ''),
    is_default  INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE UNIQUE INDEX organisations_name_unique ON organisations (lower(name));
-- Invariant: at most one default organisation, and it cannot be deleted.
CREATE UNIQUE INDEX organisations_one_default ON organisations (is_default) WHERE is_default = 1;
CREATE TRIGGER organisations_keep_default
BEFORE DELETE ON organisations WHEN OLD.is_default = 1
BEGIN
    SELECT RAISE(ABORT, 'the default organisation cannot be deleted');
END;

-- A domain belongs to one organisation; an organisation may own several domains.
CREATE TABLE organisation_domains (
    domain           TEXT PRIMARY KEY CHECK (domain = lower(domain) AND domain <> ''),
    organisation_id  INTEGER NOT NULL REFERENCES organisations (id) ON DELETE CASCADE,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX organisation_domains_by_organisation ON organisation_domains (organisation_id);

-- Approval and standing are separate, so lifting a ban restores the earlier approval.
CREATE TABLE clients (
    id               INTEGER PRIMARY KEY,
    email            TEXT NOT NULL CHECK (email LIKE '%_@_%'),
    display_name     TEXT,
    organisation_id  INTEGER NOT NULL REFERENCES organisations (id),
    approval         TEXT NOT NULL DEFAULT 'approved' CHECK (approval IN ('pending', 'approved')),
    standing         TEXT NOT NULL DEFAULT 'normal' CHECK (standing IN ('normal', 'banned', 'spam')),
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE UNIQUE INDEX clients_email_unique ON clients (lower(email));
CREATE INDEX clients_by_organisation ON clients (organisation_id);

CREATE TABLE incidents (
    id               INTEGER PRIMARY KEY,
    hash             TEXT NOT NULL UNIQUE,
    client_id        INTEGER NOT NULL REFERENCES clients (id),
    organisation_id  INTEGER NOT NULL REFERENCES organisations (id),
    mailbox          TEXT,
    department       TEXT,
    folder           TEXT NOT NULL DEFAULT 'inbox' CHECK (folder IN ('inbox', 'spam', 'held')),
    -- Why an incident is in the held folder: 'pending_approval' until its client is approved.
    held_reason      TEXT,
    status           TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'waiting', 'resolved', 'closed')),
    subject          TEXT NOT NULL DEFAULT '',
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
-- Approving a client releases the incidents held for that approval, however the approval was
-- made: with the CLI or by editing the row in a database viewer.
CREATE TRIGGER clients_approval_releases_held
AFTER UPDATE OF approval ON clients
WHEN OLD.approval = 'pending' AND NEW.approval = 'approved'
BEGIN
    UPDATE incidents
    SET folder = 'inbox', held_reason = NULL,
        updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE client_id = NEW.id AND folder = 'held' AND held_reason = 'pending_approval';
END;

CREATE INDEX incidents_by_client ON incidents (client_id);
CREATE INDEX incidents_by_folder ON incidents (folder, updated_at);

-- Every message seen is kept here with its original bytes, on an incident or not.
CREATE TABLE messages (
    id                 INTEGER PRIMARY KEY,
    incident_id        INTEGER REFERENCES incidents (id) ON DELETE CASCADE,
    direction          TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    message_id_header  TEXT,
    in_reply_to        TEXT,
    references_header  TEXT,
    from_address       TEXT,
    from_name          TEXT,
    to_addresses       TEXT,
    cc_addresses       TEXT,
    subject            TEXT,
    text_body          TEXT,
    html_body          TEXT,
    sent_at            TEXT,
    received_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    size_bytes         INTEGER NOT NULL,
    raw_sha256         TEXT NOT NULL,
    raw_is_complete    INTEGER NOT NULL DEFAULT 1 CHECK (raw_is_complete IN (0, 1)),
    raw                BLOB NOT NULL,
    -- Invariant: one original per Message-ID (or content hash); later copies have NULL here.
    dedup_key          TEXT UNIQUE
);
CREATE INDEX messages_by_incident ON messages (incident_id);
CREATE INDEX messages_by_message_id_header ON messages (message_id_header);

CREATE TABLE attachments (
    id            INTEGER PRIMARY KEY,
    message_id    INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    filename      TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size_bytes    INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    content       BLOB NOT NULL
);
CREATE INDEX attachments_by_message ON attachments (message_id);

-- One row for every message seen, whatever became of it: the audit trail.
CREATE TABLE ingest_log (
    id                 INTEGER PRIMARY KEY,
    logged_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    source             TEXT NOT NULL,
    mailbox            TEXT,
    message_id_header  TEXT,
    sender             TEXT,
    subject            TEXT,
    outcome            TEXT NOT NULL CHECK (outcome IN ('created', 'appended', 'duplicate',
                           'dropped_banned', 'spam', 'auto_reply', 'bounce', 'rejected', 'error')),
    reason             TEXT,
    incident_id        INTEGER REFERENCES incidents (id) ON DELETE SET NULL,
    message_id         INTEGER REFERENCES messages (id) ON DELETE SET NULL
);
CREATE INDEX ingest_log_by_time ON ingest_log (logged_at);

-- The persistent queue of mail to send; the outbound worker moves rows through the states.
CREATE TABLE outbound (
    id                   INTEGER PRIMARY KEY,
    template             TEXT NOT NULL CHECK (template IN ('registration', 'approval', 'acknowledgement')),
    recipient            TEXT NOT NULL,
    client_id            INTEGER REFERENCES clients (id) ON DELETE CASCADE,
    incident_id          INTEGER REFERENCES incidents (id) ON DELETE CASCADE,
    reply_to_message_id  INTEGER REFERENCES messages (id) ON DELETE SET NULL,
    state                TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sending', 'sent', 'retry', 'dead')),
    attempts             INTEGER NOT NULL DEFAULT 0,
    next_attempt_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    claimed_until        TEXT,
    last_error           TEXT,
    created_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    sent_at              TEXT
);
CREATE INDEX outbound_due ON outbound (state, next_attempt_at);

CREATE VIEW incident_overview AS
SELECT
    i.hash,
    i.folder,
    i.status,
    i.subject,
    c.email AS client_email,
    c.display_name AS client_name,
    o.name AS organisation,
    i.mailbox,
    i.department,
    (SELECT count(*) FROM messages m WHERE m.incident_id = i.id) AS message_count,
    (SELECT max(m.received_at) FROM messages m WHERE m.incident_id = i.id) AS last_message_at,
    i.created_at,
    i.updated_at,
    i.id AS incident_id
FROM incidents i
JOIN clients c ON c.id = i.client_id
JOIN organisations o ON o.id = i.organisation_id;

CREATE VIEW client_overview AS
SELECT
    c.email,
    c.display_name,
    o.name AS organisation,
    c.approval,
    c.standing,
    (SELECT count(*) FROM incidents i WHERE i.client_id = c.id) AS incident_count,
    (SELECT count(*) FROM incidents i WHERE i.client_id = c.id AND i.status IN ('open', 'waiting')) AS open_incident_count,
    (SELECT max(i.updated_at) FROM incidents i WHERE i.client_id = c.id) AS last_incident_at,
    c.created_at,
    c.id AS client_id
FROM clients c
JOIN organisations o ON o.id = c.organisation_id;
