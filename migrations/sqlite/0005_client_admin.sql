-- Staff manage clients and organisations with `intake client` and `intake org`: first and last
-- names (the CSV shape of import and export), a record of every change made that way, and an
-- overview of organisations with their domains.

ALTER TABLE clients ADD COLUMN first_name TEXT;
ALTER TABLE clients ADD COLUMN last_name TEXT;

-- One row per change made with the CLI: who ran it, what, on whom.
CREATE TABLE admin_log (
    id         INTEGER PRIMARY KEY,
    logged_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- The operating-system user who ran the command.
    actor      TEXT NOT NULL,
    -- 'client add', 'client merge', 'client delete', 'org delete', ...
    action     TEXT NOT NULL,
    -- The client's email or the organisation's name.
    subject    TEXT NOT NULL,
    detail     TEXT
);
CREATE INDEX admin_log_by_time ON admin_log (logged_at);

DROP VIEW client_overview;
CREATE VIEW client_overview AS
SELECT
    c.email,
    c.first_name,
    c.last_name,
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

CREATE VIEW organisation_overview AS
SELECT
    o.name,
    o.is_default,
    (SELECT group_concat(domain, ', ')
     FROM (SELECT d.domain FROM organisation_domains d WHERE d.organisation_id = o.id ORDER BY d.domain)) AS domains,
    (SELECT count(*) FROM clients c WHERE c.organisation_id = o.id) AS client_count,
    (SELECT count(*) FROM incidents i WHERE i.organisation_id = o.id) AS incident_count,
    o.created_at,
    o.id AS organisation_id
FROM organisations o;
