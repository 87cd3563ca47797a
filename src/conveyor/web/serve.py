"""``conveyor serve``: the server of :mod:`conveyor.web.server` under uvicorn, and a worker beside it.

With ``worker_slots``, a worker with that many slots runs in the same process (as ``conveyor worker``
would, with the app's durable subscribers), so that the runs the API starts and retries are driven without
a separate worker. Off by default: most deployments run their workers apart. SIGINT and SIGTERM stop the
server, then the worker, whose runs in flight get their grace period.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import uvicorn

from conveyor.engine.worker import Worker
from conveyor.runtime.app import Conveyor
from conveyor.web.limits import DEFAULT_MAX_BODY_BYTES
from conveyor.web.server import API_PREFIX, create_server
from conveyor.web.tokens import ApiTokens

LOGGER = logging.getLogger("conveyor.web")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
WORKER_GRACE_SECONDS = 10.0
"""How long the in-process worker's runs in flight may take to finish when the server stops."""


def serve(
    app: Conveyor,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    worker_slots: int = 0,
    tokens: ApiTokens | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> int:
    """Serve ``app`` on ``host``:``port`` until SIGINT or SIGTERM; 0 once stopped, 1 if it never started.

    ``tokens`` default to the environment's (``$CONVEYOR_ADMIN_TOKENS``, ``$CONVEYOR_READ_TOKENS``): with
    none, a ConfigurationError naming them, before anything listens.
    """
    tokens = ApiTokens.from_environment() if tokens is None else tokens
    server = uvicorn.Server(
        uvicorn.Config(
            create_server(app, tokens, max_body_bytes=max_body_bytes),
            host=host,
            port=port,
            log_config=None,  # conveyor's logging (conveyor --log-format) is the process's
            server_header=False,
        )
    )
    worker = (
        app.worker(concurrency=worker_slots, shutdown_grace_seconds=WORKER_GRACE_SECONDS)
        if worker_slots
        else None
    )
    thread = None
    if worker is not None:
        thread = threading.Thread(target=_work, args=(app, worker), name="conveyor-serve-worker", daemon=True)
        thread.start()
    shown = f"[{host}]" if ":" in host else host
    LOGGER.warning(
        "conveyor serve: the API at http://%s:%d%s, the health check at /healthz%s",
        shown,
        port,
        API_PREFIX,
        f"; a worker with {worker_slots} slot(s)" if worker else "",
    )
    try:
        with _stop_quietly():
            server.run()
    finally:
        if worker is not None and thread is not None:
            worker.stop()
            thread.join(WORKER_GRACE_SECONDS + 5)
    return 0 if server.started else 1


@contextlib.contextmanager
def _stop_quietly() -> Iterator[None]:
    """While uvicorn serves, SIGINT and SIGTERM stop it (its own handlers); once it stopped, uvicorn
    raises the signal again for the handlers it found: these, which let ``serve`` return 0."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _stopped) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _stopped(number: int, frame: FrameType | None) -> None:
    LOGGER.info("conveyor serve: stopped by %s", signal.Signals(number).name)


def _work(app: Conveyor, worker: Worker) -> None:
    try:
        with app.consuming():  # the app's durable subscribers and webhooks, as a worker's
            worker.run()
    except Exception:  # the server goes on answering; the log says why the runs stopped being driven
        LOGGER.exception("conveyor serve: the in-process worker stopped")
