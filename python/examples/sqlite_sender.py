"""Inserts messages into a SQLite database and wakes the workers: one
status update per committed batch of rows (``batch=`` says how many rows
it stands for), the way a gateway notifies after each transaction.

    python sqlite_sender.py --db messages.db --rows 1000 --batch 50
"""

from __future__ import annotations

import argparse
import sqlite3

import flagpost

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id        INTEGER PRIMARY KEY,
    body      TEXT NOT NULL,
    processed INTEGER NOT NULL DEFAULT 0
)
"""


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(SCHEMA)
    return db


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--broker", default=flagpost.DEFAULT_BROKER)
    ap.add_argument("--db", default="messages.db")
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--key-file")
    args = ap.parse_args()

    db = connect(args.db)
    with flagpost.Notifier(args.broker, key_file=args.key_file) as notifier:
        sent = 0
        while sent < args.rows:
            n = min(args.batch, args.rows - sent)
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO messages (body) VALUES (?)",
                [(f"message {sent + i}",) for i in range(n)],
            )
            db.execute("COMMIT")
            # after the commit: a woken worker must see the rows
            notifier.notify_status_update(batch=n)
            sent += n
        notifier.flush(5.0)
        print(f"inserted {sent} rows; notifier stats {notifier.stats()}", flush=True)


if __name__ == "__main__":
    main()
