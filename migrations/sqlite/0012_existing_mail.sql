-- Mail already in a folder the first time intake watches it (a mailbox a team used by hand
-- until now) is ingested without registration or acknowledgement mail when the mailbox says
-- existing_mail = "quiet" (the default): customers are not answered for mail that may be years
-- old. Set once, at the first SELECT of the folder, to the highest UID it then held (UIDNEXT
-- minus one), before anything is ingested, so a crash part-way through keeps the boundary.
-- 0: nothing in the folder is treated so (folders watched before this migration, a folder that
-- was empty, existing_mail = "acknowledge", or after a UIDVALIDITY change).
ALTER TABLE mailbox_folders ADD COLUMN quiet_through_uid INTEGER NOT NULL DEFAULT 0;
