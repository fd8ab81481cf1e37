-- Ten messages per transaction in one statement (the batching the seed
-- recommends), each on one of four channels: up to four notifications.
INSERT INTO messages (channel, status_id, body)
SELECT 'gsm' || (1 + floor(random() * 4))::int, 2, 'pgbench' FROM generate_series(1, 10);
