"""asyncio: wait_async and the raises() iterator, woken by the listener's
raise hook through the event loop (no thread per waiter), cancel-safe."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import List

import flagpost
from flagpost import Flags, Listener, Notifier, Raise


def test_wait_async_wakes_and_times_out(broker: str) -> None:
    async def main() -> None:
        with Listener(broker) as listener, Notifier(broker) as notifier:
            assert await listener.wait_async(5.0)
            assert listener.check_reconnect()
            listener.take()
            started = time.monotonic()
            assert not await listener.wait_async(0.2)
            assert time.monotonic() - started >= 0.2
            threads = threading.active_count()
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, notifier.notify_non_status_update)
            assert await listener.wait_async(5.0)
            assert threading.active_count() == threads, "no thread per waiter"
            assert listener.take() == Flags.NON_STATUS

    asyncio.run(main())


def test_many_waiters_share_the_loop(broker: str) -> None:
    async def main() -> None:
        with Listener(broker) as listener, Notifier(broker) as notifier:
            assert listener.wait_listening(5.0)
            await listener.wait_async(5.0)
            listener.take()
            waiters = [asyncio.ensure_future(listener.wait_async(5.0)) for _ in range(5)]
            await asyncio.sleep(0)  # let them arm
            notifier.notify_status_update()
            assert await asyncio.gather(*waiters) == [True] * 5

    asyncio.run(main())


def test_wait_async_is_cancel_safe(broker: str) -> None:
    async def main() -> None:
        with Listener(broker) as listener, Notifier(broker) as notifier:
            await listener.wait_async(5.0)
            listener.take()
            task = asyncio.ensure_future(listener.wait_async())
            await asyncio.sleep(0.01)
            task.cancel()
            try:
                await task
                raise AssertionError("not cancelled")
            except asyncio.CancelledError:
                pass
            # nothing registered is left behind, and waiting still works
            assert not listener._loop_waiters
            notifier.notify_channel_shutdown("gsm1")
            assert await listener.wait_async(5.0)
            assert listener.has_channel_shutdown()

    asyncio.run(main())


def test_raises_iterator(broker: str) -> None:
    async def main() -> List[Raise]:
        seen: List[Raise] = []
        with Listener(broker) as listener, Notifier(broker) as notifier:
            async for raise_ in listener.raises():
                seen.append(raise_)
                if raise_.reconnect:
                    notifier.notify_channel_update("gsm1")
                elif Flags.CHANNEL_UPDATE in raise_.flags:
                    notifier.notify_channel_shutdown("gsm1")
                elif Flags.CHANNEL_SHUTDOWN in raise_.flags:
                    listener.stop()
        return seen

    seen = asyncio.run(asyncio.wait_for(main(), 10.0))
    assert seen[0].reconnect
    assert [r.flags for r in seen[1:]] == [Flags.CHANNEL_UPDATE, Flags.CHANNEL_SHUTDOWN]


def test_stop_ends_an_async_wait(broker: str) -> None:
    async def main() -> bool:
        listener = Listener(broker)
        await listener.wait_async(5.0)
        listener.take()
        asyncio.get_running_loop().call_later(0.05, listener.stop)
        return await listener.wait_async(5.0)

    assert asyncio.run(main()) is False


def test_bad_timeout(broker: str) -> None:
    async def main() -> None:
        with Listener(broker) as listener:
            try:
                await listener.wait_async(-1)
                raise AssertionError("no error")
            except flagpost.InvalidArgument:
                pass

    asyncio.run(main())
