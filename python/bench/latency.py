"""Notify→wake latency of Python notifier+listener pairs (blocking and
asyncio) beside a Rust pair, through one real broker in one run
(python/bench/run.sh builds and runs it).

Each pair has a channel of its own and the same shape: the notifier on the
measuring thread stamps the time and notifies; the listener, on a thread of
its own, stamps the time it woke, takes the flags and hands the stamp back.
The "python" pair is the ``flagpost`` package blocked in ``Listener.wait``
(its thread needs the GIL back before it can stamp); "asyncio" awaits
``Listener.wait_async`` in an event loop on that thread (woken through the
raise hook's socket); "rust" is flagpost-std's ``Notifier`` and
``Listener`` in the native module, measured without Python. Rounds rotate
between the pairs (and which goes first), so all see the same machine
state. Prints p50/p90/p99 per pair and the ratios to Rust.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import select
import statistics
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Protocol

import flagpost
from flagpost import _native


class Pair(Protocol):
    def drain(self) -> None: ...
    def round(self, timeout: float) -> Optional[int]: ...
    def close(self) -> None: ...


class PythonPair:
    """The blocking form: a thread blocked in ``Listener.wait``."""

    def __init__(self, broker: str, channel: str) -> None:
        self.channel = channel
        self.notifier = flagpost.Notifier(broker)
        self.listener = flagpost.Listener(broker, channel=channel)
        if not self.listener.wait_listening(5.0):
            raise SystemExit("the Python listener did not connect")
        self.woke_at = 0
        # the hand-back: a pipe, so that the measuring thread, once it has
        # notified, blocks (releasing the GIL) in one C call, as the Rust
        # pair's thread blocks in its channel's recv
        self.rx, self.tx = os.pipe()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        listener = self.listener
        while True:
            if listener.wait(None):
                self._woke(time.perf_counter_ns())
            elif listener.state is flagpost.ListenerState.CLOSED:
                return

    def _woke(self, at: int) -> None:
        self.listener.take()
        self.woke_at = at
        os.write(self.tx, b"w")

    def drain(self) -> None:
        while select.select([self.rx], [], [], 0.05)[0]:
            os.read(self.rx, 64)

    def round(self, timeout: float) -> Optional[int]:
        start = time.perf_counter_ns()
        self.notifier.notify_status_update(self.channel)
        if not select.select([self.rx], [], [], timeout)[0]:
            return None
        os.read(self.rx, 1)
        return self.woke_at - start

    def close(self) -> None:
        self.listener.stop()
        self.thread.join(5.0)
        self.notifier.close()
        os.close(self.rx)
        os.close(self.tx)


class AsyncioPair(PythonPair):
    """The asyncio form: an event loop (on a thread of its own) awaiting
    ``Listener.wait_async``, woken through the raise hook's socket."""

    def _listen(self) -> None:
        asyncio.run(self._listen_async())

    async def _listen_async(self) -> None:
        listener = self.listener
        while await listener.wait_async():
            self._woke(time.perf_counter_ns())


def pct(xs: List[int], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100.0 * len(s)))] / 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--broker", help="an existing broker (default: start one)")
    ap.add_argument("--flagpost", default="target/release/flagpost", help="broker binary")
    ap.add_argument("--rounds", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--gap-us", type=int, default=200, help="pause between rounds")
    args = ap.parse_args()
    if not hasattr(_native, "_RustLatency"):
        raise SystemExit("the native module was built without the `bench` feature: use python/bench/run.sh")
    if _native.DEBUG_BUILD:
        print("warning: the native module is a debug build; use python/bench/run.sh", file=sys.stderr)

    proc = None
    broker = args.broker
    if broker is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGPOST_")}
        proc = subprocess.Popen(
            [args.flagpost, "serve", "--bind", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise SystemExit(f"the broker did not start: {line!r}")
        broker = line.split()[-1]
    try:
        # a channel each: no listener is woken by another pair's rounds
        pairs: Dict[str, Pair] = {
            "rust": _native._RustLatency(broker, "bench-rust"),
            "python": PythonPair(broker, "bench-python"),
            "asyncio": AsyncioPair(broker, "bench-asyncio"),
        }
        for pair in pairs.values():
            pair.drain()
        times: Dict[str, List[int]] = {name: [] for name in pairs}
        lost = {name: 0 for name in pairs}
        gap = args.gap_us / 1e6
        names = list(pairs)
        for i in range(args.warmup + args.rounds):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                time.sleep(gap)
                ns = pairs[name].round(1.0)
                if ns is None:
                    lost[name] += 1
                elif i >= args.warmup:
                    times[name].append(ns)
        for pair in pairs.values():
            pair.close()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()

    print(f"notify→wake latency, {args.rounds} interleaved rounds each "
          f"(after {args.warmup} warm-up), broker {broker}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
          f"Python {platform.python_version()}")
    print(f"{'pair':8} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8} {'mean µs':>8} {'lost':>5}")
    for name in names:
        xs = times[name]
        print(f"{name:8} {pct(xs, 50):8.1f} {pct(xs, 90):8.1f} {pct(xs, 99):8.1f} "
              f"{statistics.mean(xs) / 1000:8.1f} {lost[name]:5}")
    for name in ("python", "asyncio"):
        ratios = ", ".join(
            f"p{p} {pct(times[name], p) / pct(times['rust'], p):.2f}" for p in (50, 90, 99)
        )
        print(f"ratio {name}/rust: {ratios}")


if __name__ == "__main__":
    main()
