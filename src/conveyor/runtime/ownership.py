"""Who drives a run started in process: one caller at a time, in this process and across processes.

Two callers may ask for the same ``workflow_id`` at once (two threads, two requests, two processes after a
retry). Exactly one drives it; the others wait for its outcome (or, if they ask not to wait, are told it
is already running). Within a process, callers meet in a table of the runs being driven there, kept per
backend object. Across processes they meet in the backend: the caller that drives a run holds it under a
lease (a :class:`~conveyor.engine.lease.Lease`, shared with its driver and renewed by the runtime's
:class:`~conveyor.engine.lease.Heartbeat`), and a run is taken over only when that lease has ended or its
owner is provably dead (a process of this machine that no longer exists), never while its owner lives.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import socket
import threading
import weakref
from dataclasses import dataclass, field

from conveyor.backends.base import Backend


def _pid_namespace() -> int:
    """This process's PID namespace (0 where it cannot be known): PIDs compare only within one."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


class ProcessIdentity:
    """How this process names itself as the owner of runs; renewed in a forked child (another process)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        """Take a new name (called in a forked child)."""
        self.machine = f"{socket.gethostname()}#{_pid_namespace()}"
        self.pid = os.getpid()
        self.name = f"{self.machine}:{self.pid}:{secrets.token_hex(4)}"

    def new_owner(self) -> str:
        """A name for one runtime of this process: the process's name and a counter."""
        return f"{self.name}/{next(self._counter)}"


PROCESS = ProcessIdentity()

_OWNER = re.compile(r"^(?P<machine>[^:]+#(?P<namespace>\d+)):(?P<pid>\d+):")


def owner_is_dead(owner: str | None) -> bool:
    """Whether ``owner`` names a process of this machine (and PID namespace) that no longer exists.

    Only a definite answer counts: an owner of another machine, of an unknown form, or whose process
    exists (even if its PID was reused) is taken to be alive, and its lease must end before its runs are
    taken over.
    """
    if owner is None:
        return False
    match = _OWNER.match(owner)
    if match is None or match["namespace"] == "0" or match["machine"] != PROCESS.machine:
        return False
    pid = int(match["pid"])
    if pid == PROCESS.pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed process not yet reaped by its parent still answers: look at its state
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False


@dataclass
class _Table:
    drives: set[str] = field(default_factory=set)
    """The runs being driven in this process."""
    waiters: int = 0
    """How many callers wait for one of them to be let go (woken, all, whenever one is)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Guards the table; taken directly (a C-level lock) on the hot path, through ``changed`` by waiters."""
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)


_TABLES: weakref.WeakKeyDictionary[Backend, _Table] = weakref.WeakKeyDictionary()
_TABLES_LOCK = threading.Lock()


def local_table(backend: Backend) -> _Table:
    """The table of runs driven in this process over ``backend`` (one per backend object)."""
    with _TABLES_LOCK:
        table = _TABLES.get(backend)
        if table is None:
            table = _TABLES[backend] = _Table()
        return table


class LocalRuns:
    """Runs driven in this process over one backend: at most one driver per ``workflow_id``."""

    def __init__(self, backend: Backend) -> None:
        self._table = local_table(backend)

    def try_take(self, workflow_id: str) -> bool:
        """Become the one driver of ``workflow_id`` in this process; False if another already is."""
        table = self._table
        with table.lock:
            if workflow_id in table.drives:
                return False
            table.drives.add(workflow_id)
            return True

    def let_go(self, workflow_id: str) -> None:
        """Stop being its driver, waking whoever waits."""
        table = self._table
        with table.lock:
            table.drives.discard(workflow_id)
            if table.waiters:
                table.changed.notify_all()

    def wait_until_free(self, workflow_id: str, timeout_seconds: float | None = None) -> bool:
        """Wait until no caller of this process drives ``workflow_id``; False if the timeout passed."""
        table = self._table
        with table.changed:
            table.waiters += 1
            try:
                return table.changed.wait_for(lambda: workflow_id not in table.drives, timeout_seconds)
            finally:
                table.waiters -= 1
