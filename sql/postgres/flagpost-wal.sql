-- Flagpost for PostgreSQL, the WAL source (flagpost serve --postgres-mode wal):
-- the publication the broker's replication slot reads the messages table
-- through, and the replica identity that puts the old status values of an
-- UPDATE in the WAL. No trigger, no NOTIFY: see DATABASE.md, "The WAL source".
-- Run after flagpost.sql (which makes the table); idempotent; one transaction.
-- Install: psql -v ON_ERROR_STOP=1 -f sql/postgres/flagpost-wal.sql
--
-- Needs wal_level = logical on the server (a restart), and the broker's role
-- needs REPLICATION (or superuser) and SELECT on messages. Whoever runs this
-- file owns the publication (the owner of messages, or a superuser).
-- The broker creates its slot (default flagpost) itself if it is missing.

BEGIN;
SET LOCAL client_min_messages = warning;

-- The broker reads only INSERT, UPDATE, DELETE and TRUNCATE of messages.
-- Publication names given to the broker (--postgres-publication) must be
-- lower-case ASCII letters, digits and _.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'flagpost') THEN
        CREATE PUBLICATION flagpost FOR TABLE messages
            WITH (publish = 'insert, update, delete, truncate');
    END IF;
END
$$;

-- Every UPDATE writes the whole old row to the WAL, so the broker can tell a
-- change of status_id, trigger_status_id or ack_status_id (status) from one
-- of other columns only (non-status) and from one that changed nothing
-- (nothing). It costs WAL volume on UPDATE and DELETE (the old row, roughly
-- doubling an update's record); INSERT is unaffected. Without it (the
-- default identity, the primary key) every UPDATE is notified as a status
-- change of its channel: a superset, nothing missed, some listeners woken
-- for nothing. To go back: ALTER TABLE messages REPLICA IDENTITY DEFAULT;
ALTER TABLE messages REPLICA IDENTITY FULL;

COMMIT;
