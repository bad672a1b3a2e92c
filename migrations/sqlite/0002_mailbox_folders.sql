-- One row per watched IMAP folder: where ingestion stands, who holds it, how it is doing.

CREATE TABLE mailbox_folders (
    mailbox           TEXT NOT NULL,
    folder            TEXT NOT NULL,
    -- Invariant: last_uid is committed in the same transaction as the message it names.
    uid_validity      INTEGER,
    last_uid          INTEGER NOT NULL DEFAULT 0,
    -- The instance ingesting this folder; another may take over once lease_expires_at passes.
    lease_holder      TEXT,
    lease_expires_at  TEXT,
    last_success_at   TEXT,
    last_error        TEXT,
    last_error_at     TEXT,
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (mailbox, folder)
);
