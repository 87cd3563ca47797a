"""Calling step functions off the driving thread: async ones on conveyor's event loop, sync ones on threads.

One event loop, on a daemon thread started on first use, runs every async step and every concurrent part of
a run (fork branches): starting a loop per run would cost more than the steps. Sync steps that must run
alongside others go to a pool of daemon threads; a sync step with a timeout gets a thread of its own, so
that one abandoned at its timeout never holds a pool thread or blocks the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from conveyor.definition.task import CallableShape, StepContext
from conveyor.engine.context import reset_context, set_context

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    """The event loop conveyor runs concurrent work on, started on first use on a daemon thread."""
    global _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="conveyor-event-loop", daemon=True).start()
            _loop = loop
        return _loop


def run_coroutine(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` on conveyor's event loop and wait for it, from any thread but that loop's own."""
    loop = _background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        raise RuntimeError("a run cannot be driven from inside one of its own async steps")
    asyncio.run_coroutine_threadsafe(coroutine, loop).result()


class PoolCall:
    """One call handed to the step threads: run by a pool thread, or taken back by the thread that offered it.

    When it has run, ``on_done`` is called with it (on the pool thread); ``value`` or ``error`` then holds
    what the call returned or raised.
    """

    __slots__ = ("call", "error", "on_done", "state", "value")

    def __init__(self, call: Callable[[], Any], on_done: Callable[[PoolCall], None]) -> None:
        self.call = call
        self.on_done = on_done
        self.state = _WAITING
        self.value: Any = None
        self.error: BaseException | None = None


_WAITING, _RUNNING, _TAKEN_BACK = 0, 1, 2


def _let_go(*_: object) -> None:
    """What a taken-back call is left holding instead of the call itself."""


class _DaemonPool:
    """Daemon threads for sync steps running alongside others; grows while all its threads are busy.

    A call no thread has started yet can be taken back (:meth:`take_back`) by the thread that offered it,
    which then runs it itself: a thread woken for it finds it gone and waits again.
    """

    def __init__(self, most: int = 64) -> None:
        self._most = most
        self._calls: queue.SimpleQueue[PoolCall] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._waiting = 0

    def offer(self, call: Callable[[], Any], on_done: Callable[[PoolCall], None]) -> PoolCall:
        """Queue ``call`` for a pool thread; ``on_done`` gets it once it has run there."""
        offered = PoolCall(call, on_done)
        with self._lock:
            self._waiting += 1
            if self._idle < self._waiting and self._threads < self._most:
                self._threads += 1
                self._idle += 1
                threading.Thread(target=self._work, name="conveyor-step", daemon=True).start()
        self._calls.put(offered)
        return offered

    def take_back(self, offered: PoolCall) -> bool:
        """Withdraw ``offered`` if no pool thread has started it; True if the caller must now run it."""
        with self._lock:
            if offered.state != _WAITING:
                return False
            offered.state = _TAKEN_BACK
            self._waiting -= 1
        # The queue keeps the call until a pool thread wakes for it (which may be a while when the thread
        # that offered it holds the GIL): let go of what it references now, so that the run it belongs
        # to does not outlive its drive and burden the garbage collector.
        offered.call = offered.on_done = _let_go
        return True

    def submit(self, call: Callable[[], Any]) -> Future[Any]:
        """Run ``call`` on a pool thread; returns its future."""
        future: Future[Any] = Future()

        def settle(done: PoolCall) -> None:
            if done.error is not None:
                future.set_exception(done.error)
            else:
                future.set_result(done.value)

        self.offer(call, settle)
        return future

    def _work(self) -> None:
        while True:
            offered = self._calls.get()
            with self._lock:
                if offered.state != _WAITING:
                    continue  # taken back by the thread that offered it
                offered.state = _RUNNING
                self._waiting -= 1
                self._idle -= 1
            try:
                offered.value = offered.call()
            except BaseException as exc:
                offered.error = exc
            try:
                offered.on_done(offered)
            finally:
                with self._lock:
                    self._idle += 1


_pool = _DaemonPool()


def offer_to_pool(call: Callable[[], Any], on_done: Callable[[PoolCall], None]) -> PoolCall:
    """Queue ``call`` for one of conveyor's daemon step threads; ``on_done`` gets it once it ran there."""
    return _pool.offer(call, on_done)


def take_back_from_pool(offered: PoolCall) -> bool:
    """Withdraw a call no pool thread has started; True if it was withdrawn (the caller runs it)."""
    return _pool.take_back(offered)


class DeadlinePassed(Exception):
    """The call ran past its timeout (the engine's deadline, never a TimeoutError the function raised)."""


async def call_step(
    shape: CallableShape,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    context: StepContext,
    timeout_seconds: float | None,
) -> Any:
    """Call a step function (or undo) with ``context`` current, within ``timeout_seconds``.

    Raises :class:`DeadlinePassed` when the timeout passes; whatever the function raises, a
    ``TimeoutError`` of its own included, comes out as it is.
    """
    if shape.context_parameter is not None:
        kwargs = {**kwargs, shape.context_parameter: context}
    if shape.is_async:
        token = set_context(context)
        try:
            coroutine = shape.fn(*args, **kwargs)
        finally:
            reset_context(token)

        async def with_context() -> Any:
            set_context(context)  # this task runs in its own copy of the context
            return await coroutine

        if timeout_seconds is None:
            return await with_context()
        return await _within(with_context(), timeout_seconds)

    def in_context() -> Any:
        token = set_context(context)
        try:
            return shape.fn(*args, **kwargs)
        finally:
            reset_context(token)

    if timeout_seconds is None:
        return await asyncio.wrap_future(_pool.submit(in_context))
    return await _within(_in_own_thread(in_context), timeout_seconds)


async def _within(call: Awaitable[Any], timeout_seconds: float) -> Any:
    """Await ``call`` for at most ``timeout_seconds``; only this deadline raises DeadlinePassed."""
    deadline = asyncio.timeout(timeout_seconds)
    try:
        async with deadline:
            value = await call
    except Exception:
        if deadline.expired():  # whatever it raised once cancelled at the deadline
            raise DeadlinePassed from None
        raise
    if deadline.expired():  # it ignored its cancellation and returned anyway, late
        raise DeadlinePassed
    return value


def _in_own_thread(call: Callable[[], Any]) -> asyncio.Future[Any]:
    """Run ``call`` on a daemon thread of its own: one overrunning its timeout never blocks exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def target() -> None:
        try:
            value = call()
        except BaseException as exc:
            _call_soon(loop, settle, None, exc)
            return
        _call_soon(loop, settle, value, None)

    threading.Thread(target=target, name="conveyor-timed-step", daemon=True).start()
    return future


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: the run gave up on this call (timed out)
        loop.call_soon_threadsafe(callback, *args)
