-- Large columns are compressed with lz4 instead of pglz. pglz spent more CPU than anything
-- else in the ingest benchmark (BENCHMARKS.md): it tries hard on attachments that are already
-- compressed (PDF, images, archives) and on the base64 inside raw messages. lz4 gives up on
-- incompressible data at once and is several times faster where it does compress.
-- Values already stored keep their compression; new values use lz4.
-- A server built without lz4 keeps pglz: the migration still succeeds, with a notice.
DO $$
BEGIN
    ALTER TABLE messages ALTER COLUMN raw SET COMPRESSION lz4;
    ALTER TABLE messages ALTER COLUMN text_body SET COMPRESSION lz4;
    ALTER TABLE messages ALTER COLUMN html_body SET COMPRESSION lz4;
    ALTER TABLE attachments ALTER COLUMN content SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'this PostgreSQL has no lz4; large columns keep pglz compression';
END;
$$;
