-- One message per transaction, on one of four channels.
\set c random(1, 4)
INSERT INTO messages (channel, status_id, body) VALUES ('gsm' || :c, 2, 'pgbench');
