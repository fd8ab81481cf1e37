-- Flagpost for PostgreSQL: the messages table shape and the statement-level
-- triggers that notify the broker (LISTEN flagpost) at commit.
-- Idempotent: safe to run again on a database that has it.
-- Install: psql -v ON_ERROR_STOP=1 -f sql/postgres/flagpost.sql (see README.md).
-- One transaction: a failed install leaves nothing half done (a table without
-- its triggers would lose every wake-up silently). Run it outside a
-- transaction of your own.

BEGIN;
-- no "does not exist, skipping" notices from a first install
SET LOCAL client_min_messages = warning;

CREATE TABLE IF NOT EXISTS messages (
    message_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- the channel (a gateway, a modem) the message belongs to; NULL: none
    channel           text,
    -- 1 received (incoming), 2 queued (outgoing, to send), 3 sent, 4 failed
    status_id         smallint NOT NULL,
    -- 0 pending (triggers not yet run), 1 processed
    trigger_status_id smallint NOT NULL DEFAULT 0,
    -- 0 none, 1 requested, 2 acknowledged
    ack_status_id     smallint NOT NULL DEFAULT 0,
    body              text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------
-- Payloads. The broker's bridge takes, on the NOTIFY channel below:
--   status | status:<channel> | non-status | non-status:<channel>
--   | channel-update:<channel> | channel-shutdown:<channel>
-- each optionally followed by ;batch=<n> (n >= 1: how many changes it stands for).

-- The NOTIFY channel the bridge LISTENs on: the setting flagpost.channel
-- (ALTER DATABASE ... SET flagpost.channel = 'x', or SET in a session),
-- default flagpost.
CREATE OR REPLACE FUNCTION flagpost_listen_channel() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT coalesce(nullif(current_setting('flagpost.channel', true), ''), 'flagpost') $$;

-- Whether a channel name can be targeted in a payload: 1 to 32 bytes of
-- printable ASCII (0x20-0x7E) without ';', not starting or ending with a
-- space. The broker's payload parser takes a little more (any ChannelId:
-- 1..32 bytes of UTF-8 without control characters, no ';', no whitespace at
-- either end); this subset reads the same in every server encoding and
-- whatever the locale, and every name it passes, the parser takes.
CREATE OR REPLACE FUNCTION flagpost_channel_fits(channel text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(octet_length(channel) BETWEEN 1 AND 32
                      AND channel ~ '^[\x21-\x3a\x3c-\x7e]([\x20-\x3a\x3c-\x7e]*[\x21-\x3a\x3c-\x7e])?$',
                      false) $$;

-- kind targeted at channel when the name fits, else the untargeted kind: a
-- superset (it reaches the listeners of every channel), so nothing is lost.
CREATE OR REPLACE FUNCTION flagpost_target(kind text, channel text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN flagpost_channel_fits(channel) THEN kind || ':' || channel ELSE kind END $$;

-- For applications and other tables: one notification, sent at commit.
--   SELECT flagpost_notify('status', 'gsm1', 500);    -- status:gsm1;batch=500
--   SELECT flagpost_notify('channel-update', 'gsm1');  -- channel-update:gsm1;batch=1
-- status and non-status with a NULL or unfit channel go untargeted;
-- channel-update and channel-shutdown need a channel that fits (an error
-- otherwise: untargeted, they would mean nothing), as does an unknown kind
-- or a batch below 1.
CREATE OR REPLACE FUNCTION flagpost_notify(kind text, channel text DEFAULT NULL, batch integer DEFAULT 1)
RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    IF kind IS NULL OR kind NOT IN ('status', 'non-status', 'channel-update', 'channel-shutdown') THEN
        RAISE EXCEPTION 'flagpost_notify: unknown kind %', quote_nullable(kind)
            USING HINT = 'status, non-status, channel-update or channel-shutdown';
    END IF;
    IF batch IS NULL OR batch < 1 THEN
        RAISE EXCEPTION 'flagpost_notify: batch must be at least 1, not %', quote_nullable(batch);
    END IF;
    IF kind IN ('channel-update', 'channel-shutdown') AND NOT flagpost_channel_fits(channel) THEN
        RAISE EXCEPTION 'flagpost_notify: % needs a channel that fits, not %', kind, quote_nullable(channel)
            USING HINT = '1 to 32 bytes of printable ASCII without ";", not starting or ending with a space';
    END IF;
    PERFORM pg_notify(flagpost_listen_channel(), flagpost_target(kind, channel) || ';batch=' || batch);
END
$$;

-- ---------------------------------------------------------------------------
-- The triggers on messages. Statement-level with transition tables: one
-- statement sends one notification per channel it touched, whatever its
-- number of rows. Batch counts above 2^31-1 are sent as 2^31-1. Their
-- functions, like flagpost_notify, keep the search_path of the install (SET
-- search_path FROM CURRENT): an application that writes schema.messages
-- under another search_path still finds them.

-- INSERT: status:<channel>;batch=<rows> per channel, status;batch=<rows>
-- for the rows whose channel is NULL or does not fit.
CREATE OR REPLACE FUNCTION flagpost_messages_inserted() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM pg_notify(flagpost_listen_channel(), t.target || ';batch=' || least(t.n, 2147483647))
    FROM (SELECT flagpost_target('status', r.channel) AS target, count(*) AS n
          FROM flagpost_new AS r
          GROUP BY 1
          ORDER BY 1) AS t;
    RETURN NULL;
END
$$;

-- UPDATE: rows whose status_id, trigger_status_id or ack_status_id changed
-- send status per (new) channel, as INSERT; rows where only other columns
-- changed send one non-status;batch=<rows>. Rows the statement left exactly
-- as they were send nothing. A row whose message_id changed (SET message_id
-- = DEFAULT) cannot be paired with its old self and counts as a status
-- change.
CREATE OR REPLACE FUNCTION flagpost_messages_updated() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM pg_notify(flagpost_listen_channel(), t.target || ';batch=' || least(t.n, 2147483647))
    FROM (WITH changes AS (
              SELECT n.channel,
                     o.message_id IS NULL
                     OR (o.status_id, o.trigger_status_id, o.ack_status_id)
                        IS DISTINCT FROM (n.status_id, n.trigger_status_id, n.ack_status_id) AS status,
                     o::text IS DISTINCT FROM n::text AS changed
              FROM flagpost_new AS n
              LEFT JOIN flagpost_old AS o ON o.message_id = n.message_id)
          SELECT flagpost_target('status', c.channel) AS target, count(*) AS n
          FROM changes AS c
          WHERE c.status
          GROUP BY 1
          UNION ALL
          SELECT 'non-status', count(*)
          FROM changes AS c
          WHERE c.changed AND NOT c.status
          HAVING count(*) > 0
          ORDER BY 1) AS t;
    RETURN NULL;
END
$$;

-- DELETE: one non-status;batch=<rows> (views refresh; nothing to process).
CREATE OR REPLACE FUNCTION flagpost_messages_deleted() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM pg_notify(flagpost_listen_channel(), 'non-status;batch=' || least(count(*), 2147483647))
    FROM flagpost_old
    HAVING count(*) > 0;
    RETURN NULL;
END
$$;

-- TRUNCATE: one non-status (the number of rows is not known).
CREATE OR REPLACE FUNCTION flagpost_messages_truncated() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM pg_notify(flagpost_listen_channel(), 'non-status');
    RETURN NULL;
END
$$;

-- BEFORE UPDATE, per row: updated_at = now() when the row changed and the
-- statement did not set updated_at itself. Sends nothing: the statement
-- trigger above does, once. (No SET search_path: it calls nothing of ours,
-- and a SET would cost every row.)
CREATE OR REPLACE FUNCTION flagpost_messages_touch() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at AND NEW::text IS DISTINCT FROM OLD::text THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS flagpost_insert ON messages;
CREATE TRIGGER flagpost_insert
    AFTER INSERT ON messages
    REFERENCING NEW TABLE AS flagpost_new
    FOR EACH STATEMENT EXECUTE FUNCTION flagpost_messages_inserted();

DROP TRIGGER IF EXISTS flagpost_update ON messages;
CREATE TRIGGER flagpost_update
    AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS flagpost_old NEW TABLE AS flagpost_new
    FOR EACH STATEMENT EXECUTE FUNCTION flagpost_messages_updated();

DROP TRIGGER IF EXISTS flagpost_delete ON messages;
CREATE TRIGGER flagpost_delete
    AFTER DELETE ON messages
    REFERENCING OLD TABLE AS flagpost_old
    FOR EACH STATEMENT EXECUTE FUNCTION flagpost_messages_deleted();

DROP TRIGGER IF EXISTS flagpost_truncate ON messages;
CREATE TRIGGER flagpost_truncate
    AFTER TRUNCATE ON messages
    FOR EACH STATEMENT EXECUTE FUNCTION flagpost_messages_truncated();

DROP TRIGGER IF EXISTS flagpost_touch ON messages;
CREATE TRIGGER flagpost_touch
    BEFORE UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION flagpost_messages_touch();

COMMIT;
