-- Organisations as staff know them: a description, a display order, a status, and optionally
-- a department that receives their new incidents whatever mailbox the mail came to.

ALTER TABLE organisations ADD COLUMN description TEXT;
ALTER TABLE organisations ADD COLUMN display_order INTEGER NOT NULL DEFAULT 0;
-- A disabled organisation keeps its clients and incidents, but its domains no longer place new
-- senders: they join the default organisation.
ALTER TABLE organisations ADD COLUMN status TEXT NOT NULL DEFAULT 'enabled'
    CHECK (status IN ('enabled', 'disabled'));
-- New incidents of this organisation's clients go to the mailbox of this department.
ALTER TABLE organisations ADD COLUMN route_department TEXT CHECK (route_department <> '');

CREATE FUNCTION organisations_default_stays_enabled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the default organisation cannot be disabled';
END;
$$;
CREATE TRIGGER organisations_default_stays_enabled
BEFORE UPDATE OF status ON organisations
FOR EACH ROW WHEN (NEW.is_default AND NEW.status <> 'enabled')
EXECUTE FUNCTION organisations_default_stays_enabled();

DROP VIEW organisation_overview;
CREATE VIEW organisation_overview AS
SELECT
    o.name,
    o.status,
    o.is_default,
    o.description,
    o.display_order,
    o.route_department,
    (SELECT string_agg(d.domain, ', ' ORDER BY d.domain)
     FROM organisation_domains d WHERE d.organisation_id = o.id) AS domains,
    (SELECT count(*) FROM clients c WHERE c.organisation_id = o.id) AS client_count,
    (SELECT count(*) FROM incidents i WHERE i.organisation_id = o.id) AS incident_count,
    o.created_at,
    o.id AS organisation_id
FROM organisations o;

DROP VIEW client_overview;
CREATE VIEW client_overview AS
SELECT
    c.reference,
    c.email,
    c.first_name,
    c.last_name,
    c.display_name,
    o.name AS organisation,
    o.status AS organisation_status,
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
