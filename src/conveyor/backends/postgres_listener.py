"""``WorkListener``: a connection of its own that LISTENs for new work, and comes back when it dies."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

WORK_CHANNEL = "conveyor_work"
"""The channel a submitted or released run is announced on (``NOTIFY conveyor_work``)."""

Connect = Callable[[], psycopg.Connection[Any]]


class WorkListener:
    """Waits for notifications on :data:`WORK_CHANNEL` on one dedicated (not pooled) connection.

    The connection is opened on first use. When it dies (a server restart, ``pg_terminate_backend``), the
    next wait opens a new one and LISTENs again; notifications sent while no connection listened are lost,
    which costs a worker at most one wait's timeout.
    """

    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[Any] | None = None
        self._closed = False

    def listen(self) -> None:
        """Start listening now if no connection listens yet (best effort: a failure is left for wait)."""
        if self._lock.acquire(blocking=False):
            try:
                self._listening()
            finally:
                self._lock.release()

    def wait(self, timeout_seconds: float) -> bool:
        """Return True when a notification arrives within ``timeout_seconds``, else False. Never raises."""
        deadline = time.monotonic() + max(timeout_seconds, 0.0)
        if not self._lock.acquire(timeout=max(timeout_seconds, 0.0)):
            return False  # another thread is waiting on the connection
        try:
            while not self._closed:
                connection = self._listening()
                remaining = max(deadline - time.monotonic(), 0.0)
                if connection is None:
                    time.sleep(remaining)  # the server is unreachable: try again on the next wait
                    return False
                try:
                    for _notification in connection.notifies(timeout=remaining, stop_after=1):
                        return True
                    return False
                except psycopg.Error:
                    self._drop()  # the connection died: open a new one and LISTEN again
                    if time.monotonic() >= deadline:
                        return False
            return False
        finally:
            self._lock.release()

    def _listening(self) -> psycopg.Connection[Any] | None:
        if self._connection is None and not self._closed:
            try:
                connection = self._connect()
            except psycopg.Error:
                return None
            try:
                connection.execute(f"LISTEN {WORK_CHANNEL}")
            except psycopg.Error:
                connection.close()
                return None
            if self._closed:  # closed while this thread connected
                connection.close()
                return None
            self._connection = connection
        return self._connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def close(self) -> None:
        """Close the connection (also under a thread waiting on it); waits return False from now on."""
        self._closed = True
        connection = self._connection
        if connection is not None:
            connection.close()
