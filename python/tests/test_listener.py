"""Listener against a real broker: the reconnect raise, a wake on each kind,
the channel filter, timeouts, the GIL, signals and stop."""

from __future__ import annotations

import signal
import threading
import time
from typing import Callable, List

import pytest

import flagpost
from flagpost import Flags, Listener, ListenerState, Notifier


def listening(broker: str, **kw: object) -> Listener:
    """A listener that is listening, its connect raise taken."""
    listener = Listener(broker, **kw)  # type: ignore[arg-type]
    assert listener.wait_listening(5.0)
    assert listener.wait(5.0)
    assert listener.check_reconnect()
    listener.take()
    return listener


def test_connect_is_a_reconnect_raise(broker: str) -> None:
    with Listener(broker) as listener:
        assert listener.wait(5.0)
        assert listener.state.value == "listening"
        raise_ = listener.take_raise()
        assert raise_.reconnect
        # every flag of the interest but channel shutdown
        assert raise_.flags == Flags.STATUS | Flags.NON_STATUS | Flags.CHANNEL_UPDATE
        assert not listener.check_reconnect()
    assert listener.state is ListenerState.CLOSED


@pytest.mark.parametrize(
    "notify, check",
    [
        (lambda n: n.notify_status_update(), Listener.has_status_update),
        (lambda n: n.notify_status_update("gsm1"), Listener.has_status_update),
        (lambda n: n.notify_non_status_update(), Listener.has_non_status_update),
        (lambda n: n.notify_channel_update("gsm1"), Listener.has_channel_update),
        (lambda n: n.notify_channel_shutdown("gsm1"), Listener.has_channel_shutdown),
    ],
    ids=["status", "status-channel", "non-status", "channel-update", "channel-shutdown"],
)
def test_wakes_on_each_kind(
    broker: str, notify: Callable[[Notifier], None], check: Callable[[Listener], bool]
) -> None:
    with listening(broker) as listener, Notifier(broker) as notifier:
        assert not check(listener)
        notify(notifier)
        assert listener.wait(5.0)
        assert check(listener)
        assert not check(listener), "checks test and clear"
        assert not listener.check_reconnect(), "a notification is not a reconnect"


def test_channel_filter(broker: str) -> None:
    with listening(broker, channel="gsm1") as listener, Notifier(broker) as notifier:
        # acked in order: were "gsm2"'s update for us, its flags would come first
        assert notifier.notify_channel_update_confirmed("gsm2", timeout=5.0) == "delivered"
        assert notifier.notify_channel_shutdown_confirmed("gsm1", timeout=5.0) == "delivered"
        assert listener.wait(5.0)
        assert listener.take() == Flags.CHANNEL_SHUTDOWN


def test_interest_filter(broker: str) -> None:
    with Listener(broker, interest=Flags.CHANNEL_SHUTDOWN) as listener:
        assert listener.wait_listening(5.0)
        # a connect raises nothing of this interest (never channel shutdown)
        assert not listener.check_reconnect() and listener.take() == Flags(0)
        with Notifier(broker) as notifier:
            notifier.notify_status_update_confirmed(timeout=5.0)
            notifier.notify_channel_shutdown_confirmed("gsm1", timeout=5.0)
        assert listener.wait(5.0)
        assert listener.take() == Flags.CHANNEL_SHUTDOWN


def test_wait_times_out(broker: str) -> None:
    with listening(broker) as listener:
        started = time.monotonic()
        assert not listener.wait(0.3)
        elapsed = time.monotonic() - started
        assert 0.3 <= elapsed < 3.0
        assert not listener.wait(0)


def test_wait_releases_the_gil(broker: str) -> None:
    with listening(broker) as listener, Notifier(broker) as notifier:
        woke: List[bool] = []
        waiting = threading.Event()

        def waiter() -> None:
            waiting.set()
            woke.append(listener.wait(10.0))

        thread = threading.Thread(target=waiter)
        thread.start()
        assert waiting.wait(5.0)
        # this thread runs Python code for 300 ms while the other waits
        counted = 0
        until = time.monotonic() + 0.3
        while time.monotonic() < until:
            counted += 1
        assert thread.is_alive() and not woke, "the waiter returned on its own"
        assert counted > 1000
        notifier.notify_status_update()
        thread.join(5.0)
        assert woke == [True]


def test_stop_wakes_a_waiter(broker: str) -> None:
    listener = listening(broker)
    result: List[bool] = []
    thread = threading.Thread(target=lambda: result.append(listener.wait(None)))
    thread.start()
    listener.stop()
    listener.stop()  # idempotent
    thread.join(5.0)
    assert result == [False]
    assert listener.state is ListenerState.CLOSED
    assert not listener.wait(None)


def test_a_signal_interrupts_an_endless_wait(broker: str) -> None:
    class Interrupted(Exception):
        pass

    def on_alarm(signum: int, frame: object) -> None:
        raise Interrupted()

    with listening(broker) as listener:
        previous = signal.signal(signal.SIGALRM, on_alarm)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            started = time.monotonic()
            with pytest.raises(Interrupted):
                listener.wait(None)
            assert time.monotonic() - started < 3.0
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def test_reconnect_raise_when_the_broker_comes_back() -> None:
    from conftest import Broker

    first = Broker()
    listener = listening(first.addr, backoff=(0.05, 0.2))
    first.stop()
    with listener:
        # the broker is gone: the listener notices and backs off, retrying
        deadline = time.monotonic() + 10.0
        while listener.state is ListenerState.LISTENING and time.monotonic() < deadline:
            listener.wait(0.05)
        assert listener.state is not ListenerState.LISTENING
        second = Broker(bind=first.addr)
        try:
            assert listener.wait(10.0)
            raise_ = listener.take_raise()
            assert raise_.reconnect
            assert Flags.STATUS in raise_.flags
        finally:
            second.stop()
