"""Flagpost for Python: wake-ups from a Flagpost broker, in the vendor's
vocabulary.

A :class:`Notifier` sends wake-ups (UDP, microseconds, never blocks unless a
``*_confirmed`` form is used); a :class:`Listener` keeps a TCP connection to
the broker (reconnecting by itself) and raises flags that ``has_*`` checks
test and clear. ``Listener.wait`` blocks without the GIL;
``await Listener.wait_async()`` and ``async for r in Listener.raises()``
serve asyncio without a thread per waiter.
"""

from __future__ import annotations

import asyncio
import enum
from typing import AsyncIterator, NamedTuple, Optional, Tuple, TypedDict, Union

from os import PathLike

from . import _native
from ._errors import (
    AuthError,
    ClosedError,
    ConnectError,
    FlagpostError,
    InvalidArgument,
    InvalidChannel,
    KeyFileError,
    NoAck,
    Refused,
)

__all__ = [
    "DEFAULT_BROKER",
    "AuthError",
    "ClosedError",
    "ConnectError",
    "Flags",
    "FlagpostError",
    "InvalidArgument",
    "InvalidChannel",
    "KeyFileError",
    "Listener",
    "ListenerState",
    "NoAck",
    "Notifier",
    "NotifierStats",
    "Raise",
    "Refused",
]

DEFAULT_BROKER: str = _native.DEFAULT_BROKER


class Flags(enum.IntFlag):
    """A listener's flags (and its ``interest``)."""

    STATUS = 1
    NON_STATUS = 2
    CHANNEL_UPDATE = 4
    CHANNEL_SHUTDOWN = 8
    ALL = 15


class ListenerState(str, enum.Enum):
    """Where a listener is."""

    CONNECTING = "connecting"
    LISTENING = "listening"
    BACKING_OFF = "backing_off"
    CLOSED = "closed"


class Raise(NamedTuple):
    """Flags taken at once; ``reconnect``: they (also) come from a
    (re)connect, not from a notification."""

    flags: Flags
    reconnect: bool


class NotifierStats(TypedDict):
    """A notifier's counters."""

    calls: int
    datagrams: int
    inline: int
    bursts: int
    cpu_moves: int
    probes: int
    retransmissions: int
    send_errors: int


class Notifier(_native.Notifier):
    """Sends wake-ups to the broker at ``broker`` (``host:port``).

    ``key_file``: the broker's key (``flagpost keygen``); every datagram is
    signed with it. Use as a context manager, or call :meth:`close`.
    """

    def stats(self) -> NotifierStats:  # type: ignore[override]
        """The notifier's counters."""
        s = super().stats()
        return NotifierStats(
            calls=s["calls"],
            datagrams=s["datagrams"],
            inline=s["inline"],
            bursts=s["bursts"],
            cpu_moves=s["cpu_moves"],
            probes=s["probes"],
            retransmissions=s["retransmissions"],
            send_errors=s["send_errors"],
        )

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.broker
        return f"<flagpost.Notifier {state}>"


class Listener(_native.Listener):
    """Listens to the broker at ``broker`` for ``interest`` flags of one
    ``channel`` (None: all channels). Starts at once; connects (and
    reconnects) in the background, and every (re)connect raises the flags
    of its interest (except channel shutdown) so that the caller re-checks:
    :meth:`check_reconnect` tells such a raise apart.

    ``backoff``: (initial, max) seconds between reconnect attempts.
    Use as a context manager, or call :meth:`stop`.
    """

    def __init__(
        self,
        broker: str = DEFAULT_BROKER,
        *,
        channel: Optional[str] = None,
        interest: Union[Flags, int] = Flags.ALL,
        key_file: Optional[Union[str, "PathLike[str]"]] = None,
        backoff: Optional[Tuple[float, float]] = None,
        keepalive: Optional[float] = None,
    ) -> None:
        # the native __new__ took the arguments; state for asyncio waiters
        self._loop_waiters: set[asyncio.Future[None]] = set()
        self._reader_loop: Optional[asyncio.AbstractEventLoop] = None

    @property
    def state(self) -> ListenerState:
        """Connecting, listening, backing off or closed."""
        return ListenerState(self._state)

    def take(self) -> Flags:
        """Takes (test-and-clear) every raised flag at once."""
        return Flags(self._take_bits())

    def take_raise(self) -> Raise:
        """Takes every raised flag and the reconnect mark at once."""
        bits, reconnect = self._take_raise()
        return Raise(Flags(bits), reconnect)

    def close(self) -> None:
        """Same as :meth:`stop`."""
        self.stop()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<flagpost.Listener {self._state}>"

    # asyncio: the native raise hook writes a byte to a socket whose read
    # end is registered with the loop while at least one waiter is armed.

    def _on_readable(self) -> None:
        self._drain_wake()
        for fut in list(self._loop_waiters):
            if not fut.done():
                fut.set_result(None)

    def _add_waiter(self, loop: asyncio.AbstractEventLoop, fut: "asyncio.Future[None]") -> None:
        if not self._loop_waiters:
            loop.add_reader(self._wake_fd(), self._on_readable)
            self._reader_loop = loop
        elif self._reader_loop is not loop:
            raise FlagpostError("a listener's asyncio waiters must share one event loop")
        self._loop_waiters.add(fut)

    def _remove_waiter(self, fut: "asyncio.Future[None]") -> None:
        self._loop_waiters.discard(fut)
        if not self._loop_waiters and self._reader_loop is not None:
            self._reader_loop.remove_reader(self._wake_fd())
            self._reader_loop = None

    async def wait_async(self, timeout: Optional[float] = None) -> bool:
        """Awaits a raised flag (True), or ``timeout`` seconds or the
        listener's stop (False); clears nothing. No thread waits and nothing
        polls: the listener's raise wakes the event loop. Cancel-safe."""
        if timeout is not None and not timeout >= 0:
            raise InvalidArgument(f"timeout must be >= 0 seconds, not {timeout}")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        self._arm()
        try:
            while True:
                # armed first, then checked: a raise after this check writes
                # a byte that wakes the loop below
                if self.pending():
                    return True
                if self._state == "closed":
                    return False
                fut: asyncio.Future[None] = loop.create_future()
                timer = None
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        return False
                    timer = loop.call_later(left, _set_done, fut)
                try:
                    self._add_waiter(loop, fut)
                    await fut
                finally:
                    if timer is not None:
                        timer.cancel()
                    self._remove_waiter(fut)
        finally:
            self._disarm()

    async def raises(self) -> AsyncIterator[Raise]:
        """Yields each raise (flags taken, with the reconnect mark) as it
        comes, until the listener stops."""
        while True:
            if not await self.wait_async():
                if self._state == "closed":
                    return
                continue
            r = self.take_raise()
            if r.flags:
                yield r


def _set_done(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)
