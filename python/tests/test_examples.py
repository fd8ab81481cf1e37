"""The SQLite example: a worker woken by the sender's notifications
processes every row (its fallback poll is set far beyond the test's time
limit, so only wake-ups can get it done in time)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_sqlite_sender_and_worker(broker: str, tmp_path: Path) -> None:
    db = tmp_path / "messages.db"
    rows = 500
    worker = subprocess.Popen(
        [sys.executable, "sqlite_worker.py", "--broker", broker, "--db", str(db),
         "--poll", "600", "--expect", str(rows)],
        cwd=EXAMPLES, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "listening"
        sender = subprocess.run(
            [sys.executable, "sqlite_sender.py", "--broker", broker, "--db", str(db),
             "--rows", str(rows), "--batch", "25"],
            cwd=EXAMPLES, capture_output=True, text=True, timeout=60,
        )
        assert sender.returncode == 0, sender.stderr
        assert f"inserted {rows} rows" in sender.stdout
        out, _ = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0
    assert f"processed {rows} rows" in out
    assert "0 fallback polls" in out
    with sqlite3.connect(db) as conn:
        left = conn.execute("SELECT count(*) FROM messages WHERE processed = 0").fetchone()[0]
        total = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    assert (total, left) == (rows, 0)
