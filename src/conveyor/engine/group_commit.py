"""Group commit: the checkpoints of many runs finishing steps at once are written in one transaction.

A worker drives many runs on many threads. Each driver hands its checkpoint to the :class:`GroupCommitter`
and waits; a writer thread takes every checkpoint waiting at that moment and writes them with one
``record_checkpoints`` call (one transaction, one flush to disk). While it writes, new checkpoints gather
for the next batch (where the backend commits many transactions at once, another writer takes them). A
driver continues only once its checkpoint is committed, so a step's result is still
durable before anything that depends on it starts.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Protocol

from conveyor.backends.rows import lease_lost
from conveyor.core.records import Checkpoint
from conveyor.errors import BackendError

MAX_BATCH = 256


class BatchWriter(Protocol):
    """What the committer needs of a backend: a way to write many checkpoints in one transaction."""

    def record_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> set[str]:
        """Write ``checkpoints`` in one transaction; return the ids whose write was refused (fenced out)."""
        ...


class _Pending:
    """A checkpoint waiting for its batch. ``written`` is held until the batch is done (a plain lock, much
    cheaper to make, release and wait on than an Event): the writer releases it, the driver acquires it."""

    __slots__ = ("checkpoint", "error", "written")

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self.written = threading.Lock()
        self.written.acquire()
        self.error: BaseException | None = None


class GroupCommitter:
    """Writes checkpoints handed to it by many threads in shared transactions; :meth:`close` it at the end.

    ``writers`` threads write batches side by side, each taking whatever is waiting when it is free: one
    suits a database that commits one transaction at a time (SQLite), a few suit one that commits many at
    once (PostgreSQL), where a single writer would leave the server idle while it prepares its next batch.
    """

    def __init__(self, backend: BatchWriter, *, max_batch: int = MAX_BATCH, writers: int = 1) -> None:
        self._backend = backend
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._counts_lock = threading.Lock()
        self.batches = 0
        self.checkpoints = 0
        self._writers = [
            threading.Thread(target=self._write_batches, name=f"conveyor-group-commit-{n}", daemon=True)
            for n in range(max(1, writers))
        ]
        for writer in self._writers:
            writer.start()

    def record_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` with whatever else is waiting, and return once it is committed.

        Raises :class:`~conveyor.errors.LeaseLostError` if the run was taken over, and
        :class:`~conveyor.errors.BackendError` if the transaction failed.
        """
        pending = _Pending(checkpoint)
        self._queue.put(pending)
        pending.written.acquire()
        if pending.error is not None:
            raise pending.error

    def close(self) -> None:
        """Write what is waiting, then stop the writer threads."""
        for _ in self._writers:
            self._queue.put(None)
        for writer in self._writers:
            writer.join(timeout=10)

    def _write_batches(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    following = self._queue.get_nowait()
                except queue.Empty:
                    break
                if following is None:
                    stop = True
                    break
                batch.append(following)
            self._write(batch)
            if stop:
                return

    def _write(self, batch: list[_Pending]) -> None:
        try:
            refused = self._backend.record_checkpoints([pending.checkpoint for pending in batch])
        except BackendError as exc:
            for pending in batch:
                pending.error = exc
                pending.written.release()
            return
        except BaseException as exc:  # never leave a driver waiting for ever
            for pending in batch:
                pending.error = BackendError(f"writing checkpoints failed: {exc!r}")
                pending.error.__cause__ = exc
                pending.written.release()
            return
        with self._counts_lock:
            self.batches += 1
            self.checkpoints += len(batch)
        for pending in batch:
            if pending.checkpoint.workflow_id in refused:
                pending.error = lease_lost(pending.checkpoint.workflow_id)
            pending.written.release()
