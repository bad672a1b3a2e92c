-- Department access: with `[clients] department_access = "restricted"`, a client may open
-- incidents only in departments granted to them or to their organisation. Other new mail waits
-- in the held folder (held_reason 'department_access'); a grant releases it, however the grant
-- is made (`intake client grant`, `intake org grant`, or a row added here in a viewer).
CREATE TABLE department_grants (
    id               INTEGER PRIMARY KEY,
    department       TEXT NOT NULL CHECK (trim(department) <> ''),
    client_id        INTEGER REFERENCES clients (id) ON DELETE CASCADE,
    organisation_id  INTEGER REFERENCES organisations (id) ON DELETE CASCADE,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- A grant is to a client or to an organisation, never both.
    CHECK ((client_id IS NULL) <> (organisation_id IS NULL))
);
CREATE UNIQUE INDEX department_grants_unique
    ON department_grants (lower(department), coalesce(client_id, 0), coalesce(organisation_id, 0));

-- The grant releases what waited for it: to the inbox, or to waiting for approval when the
-- client is still pending.
CREATE TRIGGER department_grants_release_held
AFTER INSERT ON department_grants
BEGIN
    UPDATE incidents
    SET folder = CASE WHEN (SELECT approval FROM clients c WHERE c.id = incidents.client_id) = 'pending'
                      THEN 'held' ELSE 'inbox' END,
        held_reason = CASE WHEN (SELECT approval FROM clients c WHERE c.id = incidents.client_id) = 'pending'
                           THEN 'pending_approval' END,
        updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE folder = 'held' AND held_reason = 'department_access'
      AND lower(department) = lower(NEW.department)
      AND (client_id = NEW.client_id
           OR client_id IN (SELECT id FROM clients WHERE organisation_id = NEW.organisation_id));
END;

CREATE VIEW department_access AS
SELECT
    g.department,
    c.reference AS client_reference,
    c.email AS client_email,
    coalesce(o.name, co.name) AS organisation,
    CASE WHEN g.client_id IS NULL THEN 'organisation' ELSE 'client' END AS granted_to,
    g.created_at,
    g.id AS grant_id
FROM department_grants g
LEFT JOIN clients c ON c.id = g.client_id
LEFT JOIN organisations co ON co.id = c.organisation_id
LEFT JOIN organisations o ON o.id = g.organisation_id;
