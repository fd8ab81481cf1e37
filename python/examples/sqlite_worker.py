"""Processes new messages from the SQLite database when woken: the vendor's
check loop (wait; on a reconnect or a status update, process what is new),
with a fallback poll every ``--poll`` seconds in case a wake-up is missed
(the broker down, a notification lost), as the vendor's services poll.

    python sqlite_worker.py --db messages.db [--expect 1000]
"""

from __future__ import annotations

import argparse
import sqlite3
import time

import flagpost
from sqlite_sender import connect


def process_new(db: sqlite3.Connection) -> int:
    """Marks every unprocessed message processed; returns how many."""
    db.execute("BEGIN IMMEDIATE")
    rows = db.execute("SELECT id, body FROM messages WHERE processed = 0").fetchall()
    db.executemany("UPDATE messages SET processed = 1 WHERE id = ?", [(r[0],) for r in rows])
    db.execute("COMMIT")
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--broker", default=flagpost.DEFAULT_BROKER)
    ap.add_argument("--db", default="messages.db")
    ap.add_argument("--poll", type=float, default=5.0, help="fallback poll interval, s")
    ap.add_argument("--expect", type=int, help="exit once this many rows are processed")
    ap.add_argument("--key-file")
    args = ap.parse_args()

    db = connect(args.db)
    done = wakes = polls = 0
    with flagpost.Listener(args.broker, interest=flagpost.Flags.STATUS, key_file=args.key_file) as listener:
        if listener.wait_listening(5.0):
            print("listening", flush=True)
        next_poll = time.monotonic() + args.poll
        while args.expect is None or done < args.expect:
            woke = listener.wait(max(0.0, next_poll - time.monotonic()))
            # a reconnect means wake-ups may have been missed: re-check too
            if woke and (listener.check_reconnect() | listener.has_status_update()):
                wakes += 1
            elif not woke:
                polls += 1
            else:
                continue
            done += process_new(db)
            next_poll = time.monotonic() + args.poll
    print(f"processed {done} rows ({wakes} wake-ups, {polls} fallback polls)", flush=True)


if __name__ == "__main__":
    main()
