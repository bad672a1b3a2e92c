-- Views for staff in a database viewer: the folders they work from, recent messages with their
-- incident, what intake did with each message, and outbound mail by state.

CREATE VIEW spam_folder AS
SELECT * FROM incident_overview WHERE folder = 'spam';

CREATE VIEW held_folder AS
SELECT o.*, i.held_reason
FROM incident_overview o JOIN incidents i ON i.id = o.incident_id
WHERE o.folder = 'held';

CREATE VIEW recent_messages AS
SELECT
    m.received_at,
    m.direction,
    i.hash AS incident_hash,
    m.from_address,
    m.from_name,
    m.to_addresses,
    m.subject,
    m.size_bytes,
    (SELECT count(*) FROM attachments a WHERE a.message_id = m.id) AS attachment_count,
    m.message_id_header,
    m.id AS message_id
FROM messages m
LEFT JOIN incidents i ON i.id = m.incident_id;

CREATE VIEW ingest_overview AS
SELECT
    l.logged_at,
    l.outcome,
    l.sender,
    l.subject,
    l.reason,
    l.mailbox,
    i.hash AS incident_hash,
    l.source,
    l.message_id,
    l.id AS log_id
FROM ingest_log l
LEFT JOIN incidents i ON i.id = l.incident_id;

CREATE VIEW outbound_overview AS
SELECT
    q.state,
    q.template,
    q.recipient,
    c.display_name AS client_name,
    i.hash AS incident_hash,
    q.subject,
    q.attempts,
    q.next_attempt_at,
    q.last_error,
    q.sent_at,
    q.created_at,
    q.message_id_header,
    q.id AS outbound_id
FROM outbound q
LEFT JOIN clients c ON c.id = q.client_id
LEFT JOIN incidents i ON i.id = q.incident_id;
