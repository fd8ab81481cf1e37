-- Flagpost for PostgreSQL: the messages table shape and the statement-level
-- triggers that notify the broker (LISTEN flagpost) at commit.
-- Idempotent: safe to run again on a database that has it.

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

-- (the notification triggers follow)
