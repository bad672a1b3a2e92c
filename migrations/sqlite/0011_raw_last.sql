-- messages.raw becomes the last column. A large message's bytes are inserted as a zeroblob and
-- written in place (src/store/blobs.rs); SQLite leaves a zeroblob unmaterialised only when it
-- ends the row, and dedup_key came after raw. The default is never used: every insert gives
-- raw, and an existing row keeps its bytes (copied before the old column goes).
-- Upgrading rewrites the messages table once, in one transaction: on a large database it takes
-- a while at the first start and needs free disk space about the size of that table; if it
-- fails (disk full) nothing changes and the start stops with the reason.
ALTER TABLE messages RENAME COLUMN raw TO raw_before_0011;
ALTER TABLE messages ADD COLUMN raw BLOB NOT NULL DEFAULT x'';
UPDATE messages SET raw = raw_before_0011;
ALTER TABLE messages DROP COLUMN raw_before_0011;
