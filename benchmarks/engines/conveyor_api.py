"""conveyor's server at 1,000,000 finished runs on PostgreSQL: the REST API's runs list (first page, by
state, by correlation id, twenty pages deep), a run, its history, the analytics of the default day, and
the dashboard's runs list and run page.

The runs are :mod:`benchmarks.engines.conveyor_analytics`'s load (kept between measurements). The server
is ``conveyor.web.create_server`` run by uvicorn on a loopback port in this process, asked by one
``httpx`` client over a kept-alive connection, with an admin token: each timed request is a whole HTTP
exchange, the response read and checked. p50 and p95 over ``samples`` requests after three warm-up ones.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks.common import latency_result
from benchmarks.engines.conveyor_analytics import load

TOKEN = "bench-admin-token-0123456789"
RUN = "run-500000"
"""A run in the middle of the load (a checkout, refund or signup of the 15th day)."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _serving(url: str) -> Iterator[str]:
    """The server over the loaded database, on a thread; its base URL."""
    import uvicorn

    from conveyor import Conveyor
    from conveyor.backends.postgres import PostgresBackend
    from conveyor.web import ApiTokens, create_server

    port = _free_port()
    with PostgresBackend(url) as backend:
        app = Conveyor(backend)
        config = uvicorn.Config(
            create_server(app, ApiTokens(admin=[TOKEN])), host="127.0.0.1", port=port, log_level="warning"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="bench-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat()


def _path(route: str, client: Any, ended: float) -> str:
    """The path a route's requests ask for (finding what it needs first: a page token, a correlation id)."""
    day = f"since={_iso(ended - 86400)}&until={_iso(ended)}".replace("+", "%2B")
    if route == "runs":
        return "/api/runs?limit=50"
    if route == "runs-failed":
        return "/api/runs?state=failed&limit=50"
    if route == "runs-correlation":
        correlation = client.get(f"/api/runs/{RUN}").json()["correlation_id"]
        return f"/api/runs?correlation_id={correlation}"
    if route == "runs-page-20":
        path, page = "/api/runs?workflow=refund&limit=50", None
        for _ in range(20):
            found = client.get(path if page is None else f"{path}&page={page}").json()
            page = found["next_page"]
        return f"{path}&page={page}"
    if route == "run":
        return f"/api/runs/{RUN}"
    if route == "history":
        return f"/api/runs/{RUN}/history"
    if route == "performance":
        return f"/api/analytics/performance?{day}"
    if route == "bottlenecks":
        return f"/api/analytics/bottlenecks?{day}"
    if route == "dashboard-runs":
        return "/runs"
    if route == "dashboard-run":
        return f"/runs/{RUN}"
    raise ValueError(f"no route {route!r}")


def api(route: str, runs: int = 1_000_000, samples: int = 30) -> dict[str, Any]:
    """Time ``samples`` requests of ``route`` (see :func:`_path`) to the server over ``runs`` runs."""
    import httpx

    url, ended, load_seconds = load(runs)
    seconds = []
    with (
        _serving(url) as base,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client,
    ):
        path = _path(route, client, ended)
        for _ in range(3):
            client.get(path).raise_for_status()
        for _ in range(samples):
            began = time.perf_counter()
            response = client.get(path)
            body = response.content
            seconds.append(time.perf_counter() - began)
            response.raise_for_status()
    return latency_result(seconds, runs=runs, path=path, bytes=len(body), load_seconds=round(load_seconds, 1))


MEASUREMENTS = {"api": api}
