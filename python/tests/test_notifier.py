"""Notifier against a real broker: confirmed sends and their failures,
flush, stats, close; bad arguments and key files."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Iterator

import pytest

import flagpost
from flagpost import Flags, Listener, Notifier


@pytest.fixture
def silent_port() -> Iterator[str]:
    """A UDP port that something holds but never answers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        yield "127.0.0.1:%d" % s.getsockname()[1]
    finally:
        s.close()


def free_port() -> str:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "127.0.0.1:%d" % port


def test_confirmed_forms_are_acked(broker: str) -> None:
    with Notifier(broker) as n:
        assert n.notify_status_update_confirmed() == "delivered"
        assert n.notify_status_update_confirmed("gsm1", timeout=5.0) == "delivered"
        assert n.notify_non_status_update_confirmed(5.0) == "delivered"
        assert n.notify_channel_update_confirmed("gsm1") == "delivered"
        assert n.notify_channel_shutdown_confirmed("gsm1", timeout=5.0) == "delivered"


def test_no_ack_from_a_silent_port(silent_port: str) -> None:
    with Notifier(silent_port) as n:
        with pytest.raises(flagpost.NoAck) as info:
            n.notify_status_update_confirmed(timeout=0.2)
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, flagpost.FlagpostError)
        assert n.stats()["retransmissions"] >= 1


def test_refused_where_no_broker_listens() -> None:
    with Notifier(free_port()) as n:
        with pytest.raises(flagpost.Refused) as info:
            n.notify_channel_update_confirmed("gsm1", timeout=2.0)
        assert isinstance(info.value, ConnectionRefusedError)


def test_flush_stats_and_close(broker: str) -> None:
    n = Notifier(broker)
    for _ in range(100):
        n.notify_status_update(batch=3)
    assert n.flush(5.0)
    stats = n.stats()
    assert stats["calls"] == 100
    assert 1 <= stats["datagrams"] <= 100
    assert n.broker == broker
    n.close()
    n.close()  # idempotent
    assert n.closed
    with pytest.raises(flagpost.ClosedError):
        n.notify_status_update()
    with pytest.raises(flagpost.ClosedError):
        n.stats()


@pytest.mark.parametrize("name", ["", "x" * 33, "bad\nname", "tab\there"])
def test_invalid_channels(broker: str, name: str) -> None:
    with Notifier(broker) as n:
        for call in (
            lambda: n.notify_status_update(name),
            lambda: n.notify_channel_update(name),
            lambda: n.notify_channel_shutdown(name),
            lambda: n.notify_channel_shutdown_confirmed(name),
        ):
            with pytest.raises(flagpost.InvalidChannel):
                call()
    with pytest.raises(flagpost.InvalidChannel):
        Listener(broker, channel=name)


def test_bad_arguments(broker: str) -> None:
    with Notifier(broker) as n:
        for bad in (-1.0, float("nan"), float("inf"), 1e300):
            with pytest.raises(flagpost.InvalidArgument):
                n.notify_status_update_confirmed(timeout=bad)
            with pytest.raises(flagpost.InvalidArgument):
                n.flush(bad)
        with pytest.raises(flagpost.InvalidArgument):
            n.notify_status_update(batch=0)
        with pytest.raises(flagpost.InvalidArgument):
            n.notify_non_status_update(batch=-5)
        with pytest.raises(TypeError):
            n.notify_channel_update(5)  # type: ignore[arg-type]
    with pytest.raises(flagpost.InvalidArgument):
        Notifier(broker, probe_delay=-1)
    for interest in (0, 16, -1):
        with pytest.raises(flagpost.InvalidArgument):
            Listener(broker, interest=interest)
    for backoff in ((0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)):
        with pytest.raises(flagpost.InvalidArgument):
            Listener(broker, backoff=backoff)
    with Listener(broker) as listener:
        with pytest.raises(ValueError):
            listener.wait(-0.5)
        with pytest.raises(flagpost.InvalidArgument):
            listener.wait(float("nan"))
    # none of these needs a DNS lookup to fail
    for where in ("no-port", "127.0.0.1:99999", "127.0.0.1:-1"):
        with pytest.raises(flagpost.ConnectError):
            Notifier(where)
        with pytest.raises(flagpost.ConnectError):
            Listener(where)


def test_key_file_auth(keyed_broker: str, key_file: Path) -> None:
    with Listener(keyed_broker, key_file=key_file) as listener, Notifier(
        keyed_broker, key_file=str(key_file)
    ) as n:
        assert listener.wait_listening(5.0)
        assert listener.wait(5.0) and listener.check_reconnect()
        listener.take()
        assert n.notify_channel_update_confirmed("gsm1", timeout=5.0) == "delivered"
        assert listener.wait(5.0)
        assert listener.take() == Flags.CHANNEL_UPDATE
    # without the key: the listener is refused, the notifier not believed
    with Listener(keyed_broker, backoff=(0.05, 0.2)) as stranger:
        assert not stranger.wait_listening(5.0)
        assert stranger.auth_error is not None
    with Notifier(keyed_broker) as unsigned:
        with pytest.raises(flagpost.NoAck):
            unsigned.notify_status_update_confirmed(timeout=0.3)


def test_bad_key_files(tmp_path: Path, broker: str) -> None:
    missing = tmp_path / "missing.key"
    not_a_key = tmp_path / "bad.key"
    not_a_key.write_text("not hex\n")
    not_a_key.chmod(0o600)
    for path in (missing, not_a_key):
        with pytest.raises(flagpost.KeyFileError):
            Notifier(broker, key_file=path)
        with pytest.raises(flagpost.KeyFileError):
            Listener(broker, key_file=path)
