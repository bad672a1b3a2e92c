-- Marking a client spam moves all their incidents to the spam folder; lifting it (standing back
-- to normal) moves each back to the folder it had. Triggers, so the CLI and an edit of
-- `clients.standing` in a database viewer act alike, in the same transaction, exactly once.
-- Banning moves nothing: existing incidents stay where they are.

-- The folder an incident had before its client was marked spam ('inbox' or 'held').
ALTER TABLE incidents ADD COLUMN folder_before_spam TEXT
    CHECK (folder_before_spam IN ('inbox', 'held'));

CREATE TRIGGER clients_spam_moves_incidents
AFTER UPDATE OF standing ON clients
WHEN NEW.standing = 'spam' AND OLD.standing <> 'spam'
BEGIN
    UPDATE incidents
    SET folder_before_spam = folder, folder = 'spam',
        updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE client_id = NEW.id AND folder <> 'spam';
END;

-- Back to normal (from spam, or from a ban that followed spam): each incident moved by the spam
-- mark returns to its earlier folder; one held for approval goes to the inbox if the client has
-- been approved meanwhile; one that arrived while the client was spam (no earlier folder) goes
-- to the inbox. Lifting a plain ban moves nothing.
CREATE TRIGGER clients_not_spam_restores_incidents
AFTER UPDATE OF standing ON clients
WHEN OLD.standing <> 'normal' AND NEW.standing = 'normal'
BEGIN
    UPDATE incidents
    SET folder = CASE
            WHEN folder_before_spam = 'held'
                 AND NOT (COALESCE(held_reason, '') = 'pending_approval' AND NEW.approval = 'approved')
            THEN 'held' ELSE 'inbox' END,
        held_reason = CASE
            WHEN folder_before_spam = 'held'
                 AND NOT (COALESCE(held_reason, '') = 'pending_approval' AND NEW.approval = 'approved')
            THEN held_reason END,
        folder_before_spam = NULL,
        updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE client_id = NEW.id AND folder = 'spam'
      AND (OLD.standing = 'spam' OR folder_before_spam IS NOT NULL);
END;

-- A ban remembers the standing it replaced, so lifting it (`intake client unban`) restores
-- it: a client marked spam and then banned is spam again when unbanned.
ALTER TABLE clients ADD COLUMN standing_before_ban TEXT
    CHECK (standing_before_ban IN ('normal', 'spam'));

CREATE TRIGGER clients_ban_remembers_standing
AFTER UPDATE OF standing ON clients
WHEN NEW.standing = 'banned' AND OLD.standing <> 'banned'
BEGIN
    UPDATE clients SET standing_before_ban = OLD.standing WHERE id = NEW.id;
END;

CREATE TRIGGER clients_unban_forgets_standing
AFTER UPDATE OF standing ON clients
WHEN OLD.standing = 'banned' AND NEW.standing <> 'banned'
BEGIN
    UPDATE clients SET standing_before_ban = NULL WHERE id = NEW.id;
END;
