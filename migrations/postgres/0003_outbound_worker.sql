-- The outbound worker: a 'suppressed' state for mail that must not go out (loop rules, rate
-- limit, banned or spam client), our Message-ID and subject on each row, the stored copy of
-- what was sent, and approval mail queued by the database itself.

ALTER TABLE outbound DROP CONSTRAINT outbound_state_check;
-- queued → sending → sent; a failure → retry (until next_attempt_at) or dead; suppressed when a
-- rule forbids sending (the reason is in last_error).
ALTER TABLE outbound ADD CONSTRAINT outbound_state_check
    CHECK (state IN ('queued', 'sending', 'sent', 'retry', 'dead', 'suppressed'));
-- Fixed before the first attempt, so every retry carries the same Message-ID.
ALTER TABLE outbound ADD COLUMN message_id_header TEXT;
ALTER TABLE outbound ADD COLUMN subject TEXT;
-- The copy of the sent mail, stored on the incident.
ALTER TABLE outbound ADD COLUMN message_id BIGINT REFERENCES messages (id) ON DELETE SET NULL;
CREATE INDEX outbound_by_recipient ON outbound (lower(recipient), sent_at);
CREATE INDEX outbound_by_client ON outbound (client_id, template);

-- A client going from pending to approved gets one approval mail, however it happened: the
-- CLI or a staff member editing the row in a database viewer. Never a second one.
CREATE FUNCTION clients_approval_queues_mail() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM outbound WHERE client_id = NEW.id AND template = 'approval') THEN
        INSERT INTO outbound (template, recipient, client_id)
        VALUES ('approval', NEW.email, NEW.id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER clients_approval_queues_mail
AFTER UPDATE OF approval ON clients
FOR EACH ROW WHEN (OLD.approval = 'pending' AND NEW.approval = 'approved')
EXECUTE FUNCTION clients_approval_queues_mail();
