"""Where step calls run: on the driving thread, on a pool thread, or on an event loop.

A :class:`StepExecutor` runs :class:`~conveyor.engine.calls.StepCall` objects, steps and undos alike, by one
of three strategies:

- **here** (:meth:`~StepExecutor.run_here`): a sync call without a timeout runs on the thread that asks,
  with no hand-off at all. A chain of such steps never leaves the driving thread.
- **a pool thread** (:meth:`~StepExecutor.start`): a sync call without a timeout that must run alongside
  others goes to a pool of daemon threads that grows while all its threads are busy. Until a pool thread
  starts it, the thread that offered it may take it back (:meth:`~StepExecutor.take_back`) and run it here.
- **the event loop** (:meth:`~StepExecutor.start`): an async call, or any call with a timeout, runs on one
  event loop on a daemon thread of its own (a loop per run would cost more than the steps). A sync call
  with a timeout runs on a daemon thread of its own, awaited there up to its deadline, so that one
  abandoned at its timeout never holds a pool thread or keeps the process from exiting.

The executor owns its loop's thread and its pool, both started on first use; :meth:`~StepExecutor.close`
stops them. A call started with a ``context`` (a :class:`contextvars.Context`: tracing gives one holding
the attempt's span) runs in it wherever it runs; without one, as it always has.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from conveyor.engine.calls import StepCall

OnDone = Callable[[StepCall], None]
"""Called with a started call once it has ended (on the thread it ran on)."""


class CallRunner(Protocol):
    """What a driver runs its calls through: a :class:`StepExecutor`, or one that wraps it (tracing's)."""

    def run_here(self, call: StepCall) -> None:
        """Run a sync call without a timeout on this thread."""

    def start(self, call: StepCall, on_done: OnDone, context: contextvars.Context | None = None) -> None:
        """Start ``call`` off this thread (in ``context`` if given); ``on_done(call)`` follows its end."""

    def take_back(self, call: StepCall) -> bool:
        """Withdraw a started call no thread has begun; True if withdrawn (the caller now runs it)."""

    def abandon(self, call: StepCall) -> None:
        """Give up on a started call."""


class StepExecutor:
    """Runs step calls here, on a pool of daemon threads, or on an event loop; owns those threads.

    ``max_threads`` bounds the pool. One executor serves any number of runs and drivers at once.
    """

    def __init__(self, *, max_threads: int = 64) -> None:
        self._max_threads = max_threads
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._threads: _DaemonPool | None = None

    run_here = staticmethod(StepCall.run_here)
    """``run_here(call)``: run a sync call without a timeout on this thread (see ``StepCall.runs_here``)."""

    def start(self, call: StepCall, on_done: OnDone, context: contextvars.Context | None = None) -> None:
        """Start ``call`` off this thread; ``on_done(call)`` follows once it has ended, wherever it ran.

        A call that may run anywhere goes to the pool; an async one, or one with a timeout, to the loop.
        With ``context``, the call runs in it (on the loop, in a copy of it).
        """
        if call.runs_here:
            call.ticket = self._pool().offer(call, on_done, context)
        else:
            loop = self._event_loop()
            coroutine = _on_loop(call, on_done, context is not None)
            if context is None:
                call.ticket = asyncio.run_coroutine_threadsafe(coroutine, loop)
            else:  # the loop's task copies the context current where it is scheduled
                call.ticket = context.run(asyncio.run_coroutine_threadsafe, coroutine, loop)

    def take_back(self, call: StepCall) -> bool:
        """Withdraw a started call no pool thread has begun; True if withdrawn (the caller now runs it)."""
        ticket = call.ticket
        if not isinstance(ticket, PoolCall) or self._threads is None:
            return False
        return self._threads.take_back(ticket)

    def abandon(self, call: StepCall) -> None:
        """Give up on a started call: taken back if not begun, cancelled if on the loop."""
        ticket = call.ticket
        if isinstance(ticket, PoolCall):
            self.take_back(call)
        elif isinstance(ticket, Future):
            ticket.cancel()

    def close(self) -> None:
        """Cancel what still runs on the loop, stop its thread and let the pool's threads go.

        Call it once no run is being driven on this executor; it cannot be used to start calls after.
        """
        with self._lock:
            self._closed = True
            loop, thread, threads = self._loop, self._loop_thread, self._threads
            self._loop = self._loop_thread = self._threads = None
        if threads is not None:
            threads.close()
        if loop is not None and thread is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()

    def __enter__(self) -> StepExecutor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _pool(self) -> _DaemonPool:
        threads = self._threads
        if threads is None or self._pid != os.getpid():
            with self._lock:
                self._check_open()
                if self._threads is None or self._pid != os.getpid():
                    self._forget_after_fork()
                    self._threads = _DaemonPool(self._max_threads)
                threads = self._threads
        return threads

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or self._pid != os.getpid():
            with self._lock:
                self._check_open()
                if self._loop is None or self._pid != os.getpid():
                    self._forget_after_fork()
                    loop = asyncio.new_event_loop()
                    thread = threading.Thread(
                        target=loop.run_forever, name="conveyor-event-loop", daemon=True
                    )
                    thread.start()
                    self._loop, self._loop_thread = loop, thread
                loop = self._loop
        if self._loop_thread is threading.current_thread():
            raise RuntimeError("a run cannot be driven from inside one of its own async steps")
        return loop

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this StepExecutor is closed")

    def _forget_after_fork(self) -> None:
        """In a forked child the parent's threads are gone: start afresh (called holding the lock)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._loop = self._loop_thread = self._threads = None


_shared: StepExecutor | None = None
_shared_lock = threading.Lock()


def shared_executor() -> StepExecutor:
    """The executor of drivers given none: one per process, created on first use, never closed."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = StepExecutor()
    return _shared


# -- the event loop ---------------------------------------------------------------------------------------


async def _on_loop(call: StepCall, on_done: OnDone, own_context: bool = False) -> None:
    """Run ``call`` within the step's timeout; only that deadline makes it a StepTimeoutError.

    With ``own_context`` (the call was started with a context), a sync call's own thread runs in a copy of
    this task's context, which is a copy of that one.
    """
    clock = call.clock
    deadline = asyncio.timeout(call.timeout_seconds)
    call.started = clock.now()
    try:
        async with deadline:
            if call.is_async:
                value = await call.invoke_async()
            else:
                context = contextvars.copy_context() if own_context else None
                value = await _in_own_thread(call.invoke, context)
        if deadline.expired():  # it ignored its cancellation and returned anyway, late
            call.deadline_passed()
        else:
            call.value = value
    except Exception as exc:
        if deadline.expired():  # whatever it raised once cancelled at the deadline
            call.deadline_passed()
        else:
            call.error = exc
    except BaseException as exc:  # cancelled (abandoned, or the executor closed): the driver re-raises
        call.error = exc
    call.finished = clock.now()
    on_done(call)


def _in_own_thread(call: Callable[[], Any], context: contextvars.Context | None) -> asyncio.Future[Any]:
    """Run ``call`` on a daemon thread of its own (in ``context`` if given): one overrunning its timeout
    never blocks exit."""
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
            value = call() if context is None else context.run(call)
        except BaseException as exc:
            _call_soon(loop, settle, None, exc)
            return
        _call_soon(loop, settle, value, None)

    threading.Thread(target=target, name="conveyor-timed-step", daemon=True).start()
    return future


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: the run gave up on this call (timed out)
        loop.call_soon_threadsafe(callback, *args)


async def _cancel_all() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- the pool ---------------------------------------------------------------------------------------------


class PoolCall:
    """A call handed to the pool: run by a pool thread, or taken back by the thread that offered it."""

    __slots__ = ("call", "context", "on_done", "state")

    def __init__(self, call: StepCall, on_done: OnDone, context: contextvars.Context | None = None) -> None:
        self.call: StepCall | None = call
        self.on_done: OnDone | None = on_done
        self.context = context
        """What the call runs in, if it was started with a context."""
        self.state = _WAITING


_WAITING, _RUNNING, _TAKEN_BACK = 0, 1, 2


class _DaemonPool:
    """Daemon threads for sync calls running alongside others; grows while all its threads are busy.

    A call no thread has started yet can be taken back (:meth:`take_back`) by the thread that offered it,
    which then runs it itself: a thread woken for it finds it gone and waits again.
    """

    def __init__(self, most: int) -> None:
        self._most = most
        self._calls: queue.SimpleQueue[PoolCall | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._waiting = 0

    def offer(self, call: StepCall, on_done: OnDone, context: contextvars.Context | None = None) -> PoolCall:
        """Queue ``call`` for a pool thread (to run in ``context`` if given); ``on_done`` gets it once it has
        run there."""
        offered = PoolCall(call, on_done, context)
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
        # The queue keeps the ticket until a pool thread wakes for it (which may be a while when the thread
        # that offered it holds the GIL): let go of the call now, so that the run it belongs to does not
        # outlive its drive and burden the garbage collector.
        offered.call = offered.on_done = offered.context = None
        return True

    def close(self) -> None:
        """Let every thread go once it is idle (a thread inside a call finishes it first)."""
        with self._lock:
            threads, self._most = self._threads, 0
        for _ in range(threads):
            self._calls.put(None)

    def _work(self) -> None:
        while True:
            offered = self._calls.get()
            if offered is None:
                return
            with self._lock:
                if offered.state != _WAITING:
                    continue  # taken back by the thread that offered it
                offered.state = _RUNNING
                self._waiting -= 1
                self._idle -= 1
            call, on_done, context = offered.call, offered.on_done, offered.context
            assert call is not None
            assert on_done is not None
            call.started = call.clock.now()
            try:
                if context is None:
                    call.run_here()
                else:
                    context.run(call.run_here)
            except BaseException as exc:  # not an Exception (run_here keeps those): the driver re-raises
                call.error = exc
            try:
                on_done(call)
            finally:
                with self._lock:
                    self._idle += 1
