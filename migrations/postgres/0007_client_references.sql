-- A client is a person with a stable reference (C-48213), a note, and possibly more than one
-- address.

-- Every client reference ever issued. A reference is never issued twice: not after its client
-- is deleted, merged away or given another reference by staff.
CREATE TABLE client_references (
    reference  TEXT PRIMARY KEY CHECK (reference = upper(reference) AND length(reference) BETWEEN 2 AND 32),
    issued_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Short, unique, human-readable (C-48213); generated at registration, editable by staff.
ALTER TABLE clients ADD COLUMN reference TEXT CHECK (reference = upper(reference) AND reference <> '');
-- Free text for staff: editable here or with `intake client note`.
ALTER TABLE clients ADD COLUMN note TEXT;
UPDATE clients SET reference = 'C-' || (10000 + id);
INSERT INTO client_references (reference) SELECT reference FROM clients;
CREATE UNIQUE INDEX clients_reference_unique ON clients (reference);

CREATE FUNCTION clients_reference_never_reused() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.reference IS NULL THEN
        RAISE EXCEPTION 'a client keeps a reference';
    END IF;
    IF EXISTS (SELECT 1 FROM client_references WHERE reference = NEW.reference) THEN
        RAISE EXCEPTION 'client reference % was issued before: references are never reused', NEW.reference
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NEW;
END;
$$;
-- A client inserted in a viewer without a reference gets one: C-0 and the number of
-- references issued so far (intake's own are drawn at random and never start with 0).
-- Named to fire before the check below (PostgreSQL fires BEFORE triggers by name).
CREATE FUNCTION clients_reference_assigned() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.reference := 'C-0' || (SELECT count(*) + 1 FROM client_references);
    RETURN NEW;
END;
$$;
CREATE TRIGGER clients_reference_assigned
BEFORE INSERT ON clients
FOR EACH ROW WHEN (NEW.reference IS NULL)
EXECUTE FUNCTION clients_reference_assigned();

CREATE TRIGGER clients_reference_never_reused_on_insert
BEFORE INSERT ON clients
FOR EACH ROW WHEN (NEW.reference IS NOT NULL)
EXECUTE FUNCTION clients_reference_never_reused();
CREATE TRIGGER clients_reference_never_reused_on_update
BEFORE UPDATE OF reference ON clients
FOR EACH ROW WHEN (NEW.reference IS DISTINCT FROM OLD.reference)
EXECUTE FUNCTION clients_reference_never_reused();

CREATE FUNCTION clients_reference_issued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO client_references (reference) VALUES (NEW.reference);
    RETURN NULL;
END;
$$;
CREATE TRIGGER clients_reference_issued_on_insert
AFTER INSERT ON clients
FOR EACH ROW WHEN (NEW.reference IS NOT NULL)
EXECUTE FUNCTION clients_reference_issued();
CREATE TRIGGER clients_reference_issued_on_update
AFTER UPDATE OF reference ON clients
FOR EACH ROW WHEN (NEW.reference IS DISTINCT FROM OLD.reference)
EXECUTE FUNCTION clients_reference_issued();

-- More addresses of one client (work and home, say). Mail from any of them is theirs. An
-- address belongs to one client only, and is never also a client's main email.
CREATE TABLE client_addresses (
    address     TEXT PRIMARY KEY CHECK (address = lower(address) AND address LIKE '%_@_%'),
    client_id   BIGINT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX client_addresses_by_client ON client_addresses (client_id);

CREATE FUNCTION client_addresses_not_a_main_email() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM clients WHERE lower(email) = NEW.address) THEN
        RAISE EXCEPTION 'address % is already a client''s main email', NEW.address
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER client_addresses_not_a_main_email
BEFORE INSERT ON client_addresses
FOR EACH ROW EXECUTE FUNCTION client_addresses_not_a_main_email();

CREATE FUNCTION clients_email_not_an_additional_address() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM client_addresses WHERE address = lower(NEW.email)) THEN
        RAISE EXCEPTION 'email % is already an additional address of a client', NEW.email
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER clients_email_not_an_additional_address
BEFORE INSERT ON clients
FOR EACH ROW EXECUTE FUNCTION clients_email_not_an_additional_address();

DROP VIEW incident_overview CASCADE;
CREATE VIEW incident_overview AS
SELECT
    i.hash,
    i.folder,
    i.status,
    i.subject,
    c.email AS client_email,
    c.display_name AS client_name,
    c.reference AS client_reference,
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

CREATE VIEW spam_folder AS
SELECT * FROM incident_overview WHERE folder = 'spam';

CREATE VIEW held_folder AS
SELECT o.*, i.held_reason
FROM incident_overview o JOIN incidents i ON i.id = o.incident_id
WHERE o.folder = 'held';

DROP VIEW client_overview;
CREATE VIEW client_overview AS
SELECT
    c.reference,
    c.email,
    c.first_name,
    c.last_name,
    c.display_name,
    o.name AS organisation,
    c.approval,
    c.standing,
    (SELECT string_agg(a.address, ', ' ORDER BY a.address)
     FROM client_addresses a WHERE a.client_id = c.id) AS other_addresses,
    c.note,
    (SELECT count(*) FROM incidents i WHERE i.client_id = c.id) AS incident_count,
    (SELECT count(*) FROM incidents i WHERE i.client_id = c.id AND i.status IN ('open', 'waiting')) AS open_incident_count,
    (SELECT max(i.updated_at) FROM incidents i WHERE i.client_id = c.id) AS last_incident_at,
    c.created_at,
    c.id AS client_id
FROM clients c
JOIN organisations o ON o.id = c.organisation_id;
