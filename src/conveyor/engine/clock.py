"""Where the engine gets the time from, so that tests can move it by hand instead of sleeping."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Protocol


class Clock(Protocol):
    """The engine's source of time, in epoch seconds."""

    def now(self) -> float:
        """The current time."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block this thread for ``seconds``."""
        ...

    async def sleep_async(self, seconds: float) -> None:
        """Suspend the calling coroutine for ``seconds``."""
        ...

    def real_seconds(self, seconds: float) -> float:
        """How long to really wait for ``seconds`` of this clock's time to pass."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> float:
        """The current time."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """Block this thread for ``seconds``."""
        if seconds > 0:
            time.sleep(seconds)

    async def sleep_async(self, seconds: float) -> None:
        """Suspend the calling coroutine for ``seconds``."""
        await asyncio.sleep(max(seconds, 0.0))

    def real_seconds(self, seconds: float) -> float:
        """Real time passes at the real rate."""
        return max(seconds, 0.0)


class FakeClock:
    """A clock that moves only when told to, or when the engine sleeps on it. For tests.

    Every sleep is recorded in :attr:`sleeps`, so a test can assert a backoff schedule exactly.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        """The fake current time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """Record the sleep and move time forward at once."""
        self.sleeps.append(seconds)
        if seconds > 0:
            self.advance(seconds)

    async def sleep_async(self, seconds: float) -> None:
        """Record the sleep, move time forward, and let other tasks run."""
        self.sleep(seconds)
        await asyncio.sleep(0)

    def real_seconds(self, seconds: float) -> float:
        """Fake time passes only by hand: never wait for it for real."""
        return 0.0
