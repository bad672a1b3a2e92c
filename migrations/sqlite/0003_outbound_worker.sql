-- The outbound worker: a 'suppressed' state for mail that must not go out (loop rules, rate
-- limit, banned or spam client), our Message-ID and subject on each row, the stored copy of
-- what was sent, and approval mail queued by the database itself.
-- SQLite cannot alter a CHECK constraint: the table is rebuilt with the same ids.

CREATE TABLE outbound_new (
    id                   INTEGER PRIMARY KEY,
    template             TEXT NOT NULL CHECK (template IN ('registration', 'approval', 'acknowledgement')),
    recipient            TEXT NOT NULL,
    client_id            INTEGER REFERENCES clients (id) ON DELETE CASCADE,
    incident_id          INTEGER REFERENCES incidents (id) ON DELETE CASCADE,
    reply_to_message_id  INTEGER REFERENCES messages (id) ON DELETE SET NULL,
    -- queued → sending → sent; a failure → retry (until next_attempt_at) or dead; suppressed
    -- when a rule forbids sending (the reason is in last_error).
    state                TEXT NOT NULL DEFAULT 'queued'
                         CHECK (state IN ('queued', 'sending', 'sent', 'retry', 'dead', 'suppressed')),
    attempts             INTEGER NOT NULL DEFAULT 0,
    next_attempt_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- A worker's claim; once it has passed, another worker may take the row again.
    claimed_until        TEXT,
    last_error           TEXT,
    -- Fixed before the first attempt, so every retry carries the same Message-ID.
    message_id_header    TEXT,
    subject              TEXT,
    -- The copy of the sent mail, stored on the incident.
    message_id           INTEGER REFERENCES messages (id) ON DELETE SET NULL,
    created_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    sent_at              TEXT
);
INSERT INTO outbound_new (id, template, recipient, client_id, incident_id, reply_to_message_id,
    state, attempts, next_attempt_at, claimed_until, last_error, created_at, updated_at, sent_at)
SELECT id, template, recipient, client_id, incident_id, reply_to_message_id,
    state, attempts, next_attempt_at, claimed_until, last_error, created_at, updated_at, sent_at
FROM outbound;
DROP TABLE outbound;
ALTER TABLE outbound_new RENAME TO outbound;
CREATE INDEX outbound_due ON outbound (state, next_attempt_at);
CREATE INDEX outbound_by_recipient ON outbound (lower(recipient), sent_at);
CREATE INDEX outbound_by_client ON outbound (client_id, template);

-- A client going from pending to approved gets one approval mail, however it happened: the
-- CLI or a staff member editing the row in a database viewer. Never a second one.
CREATE TRIGGER clients_approval_queues_mail
AFTER UPDATE OF approval ON clients
WHEN OLD.approval = 'pending' AND NEW.approval = 'approved'
    AND NOT EXISTS (SELECT 1 FROM outbound WHERE client_id = NEW.id AND template = 'approval')
BEGIN
    INSERT INTO outbound (template, recipient, client_id)
    VALUES ('approval', NEW.email, NEW.id);
END;
