"""Fixtures: real `flagpost serve` brokers on loopback (the workspace's
binary: $FLAGPOST_BIN, else ${CARGO_TARGET_DIR:-target}/debug/flagpost),
each killed at teardown."""

from __future__ import annotations

import os
import selectors
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]


def flagpost_bin() -> str:
    explicit = os.environ.get("FLAGPOST_BIN")
    if explicit:
        return explicit
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    return str(target / "debug" / "flagpost")


def clean_env() -> "dict[str, str]":
    """The environment without FLAGPOST_* settings (a broker's config)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FLAGPOST_")}


class Broker:
    """A running `flagpost serve --bind 127.0.0.1:0`."""

    def __init__(self, extra: Optional[List[str]] = None, bind: str = "127.0.0.1:0") -> None:
        # stderr (the log) into a file: a pipe nobody reads could fill up
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [flagpost_bin(), "serve", "--bind", bind, *(extra or [])],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=clean_env(),
        )
        self.addr = self._read_addr(timeout=10.0)

    def _read_addr(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                self.stop()
                raise RuntimeError("the broker did not say where it listens in time")
            chunk = os.read(self.proc.stdout.fileno(), 1)
            if not chunk:
                self.stop()
                self.log.seek(0)
                err = self.log.read().decode(errors="replace")
                raise RuntimeError(f"the broker exited: {err}")
            line += chunk
        sel.close()
        text = line.decode().strip()
        assert text.startswith("listening on "), text
        return text.split()[-1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def broker() -> Iterator[str]:
    b = Broker()
    try:
        yield b.addr
    finally:
        b.stop()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "flagpost.key"
    subprocess.run(
        [flagpost_bin(), "keygen", str(path)], check=True, env=clean_env(), capture_output=True
    )
    return path


@pytest.fixture
def keyed_broker(key_file: Path) -> Iterator[str]:
    b = Broker(["--key-file", str(key_file)])
    try:
        yield b.addr
    finally:
        b.stop()
