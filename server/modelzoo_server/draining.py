"""Graceful shutdown: count requests in progress, and wait for them once SIGTERM arrives."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sized

# After the last request in flight: how long keep-alive clients get to send their next
# request (answered with `Connection: close`) and hang up before connections are closed.
LINGER_SECONDS = 1.0


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """True when every request finished within `timeout` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def wait_hung_up(
        self, connections: Callable[[], Sized], timeout: float, linger: float = LINGER_SECONDS
    ) -> bool:
        """Wait for the requests in flight, then up to `linger` seconds for the clients to
        close their connections; True when every request finished within `timeout`.

        Closing an idle keep-alive connection races the client's next request on it (a
        reset the client cannot tell from a crash); a client that got `Connection: close`
        reconnects instead, through the Service, to a pod that stays."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if not await self.wait_idle(timeout):
            return False
        until = min(deadline, loop.time() + linger)
        while len(connections()) and loop.time() < until:
            await asyncio.sleep(0.02)
        return await self.wait_idle(max(0.0, deadline - loop.time()))
