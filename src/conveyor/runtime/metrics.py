"""Prometheus metrics of one runtime, counted from the events its process writes, and a scrape endpoint.

Counters and histograms are fed by an in-process listener on the backend (see
:mod:`conveyor.backends.history`), so each process counts the runs and steps it drove; what the whole
backend holds (runs ready to claim, waiting on a timer or a signal, held by a worker) is read from the
database at each scrape. The metrics live in a registry of the runtime's own, never the process-wide
default, so two runtimes in one process (or two tests) never mix their counts.
"""

from __future__ import annotations

import logging
import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from conveyor.core.history import EventKind
from conveyor.errors import InvalidArgumentError
from conveyor.web.tokens import TokenTable

if TYPE_CHECKING:
    from conveyor.backends.base import Backend

log = logging.getLogger("conveyor.metrics")

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_FINISHED = {
    EventKind.RUN_COMPLETED.value: "completed",
    EventKind.RUN_FAILED.value: "failed",
    EventKind.RUN_COMPENSATED.value: "compensated",
    EventKind.RUN_COMPENSATION_FAILED.value: "compensation_failed",
    EventKind.RUN_CANCELLED.value: "cancelled",
    EventKind.RUN_DEAD_LETTERED.value: "dead_lettered",
}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Family:
    """One counter or histogram kept as plain numbers per label values, turned into Prometheus samples at
    scrape time: counting an event costs a dict update, where a client-library child costs a lock each."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...], *, histogram: bool) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.histogram = histogram
        self.values: dict[tuple[str, ...], list[float]] = {}
        """label values -> [count] for a counter; [count in each bucket..., count, sum] for a histogram."""

    def add(self, labels: tuple[str, ...], value: float | None = None) -> None:
        """Count one (observe ``value``, for a histogram); the caller holds the metrics' lock."""
        kept = self.values.get(labels)
        if not self.histogram:
            if kept is None:
                self.values[labels] = [1.0]
            else:
                kept[0] += 1
            return
        if value is None:
            return
        if kept is None:
            kept = self.values[labels] = [0.0] * (len(_DURATION_BUCKETS) + 3)  # + the +Inf bucket
        kept[bisect_left(_DURATION_BUCKETS, value)] += 1
        kept[-2] += 1
        kept[-1] += value

    def family(self) -> CounterMetricFamily | HistogramMetricFamily:
        """The samples a scrape reads (cumulative buckets for a histogram)."""
        if not self.histogram:
            counter = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
            for labels, (count,) in sorted(self.values.items()):
                counter.add_metric(labels, count)
            return counter
        histogram = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, kept in sorted(self.values.items()):
            running = 0.0
            buckets = []
            for bound, count in zip((*_DURATION_BUCKETS, math.inf), kept, strict=False):
                running += count
                buckets.append(("+Inf" if bound == math.inf else repr(float(bound)), running))
            histogram.add_metric(labels, buckets, kept[-1])
        return histogram


class Metrics:
    """The runtime's Prometheus metrics (``app.metrics``): ``count`` is its backend listener."""

    def __init__(self, backend: Callable[[], Backend]) -> None:
        self._lock = threading.Lock()
        self.runs_started = _Family("conveyor_runs_started", "Runs recorded.", ("workflow",), histogram=False)
        self.runs_finished = _Family(
            "conveyor_runs_finished",
            "Runs that ended, by how: completed, failed, compensated, compensation_failed, cancelled, "
            "dead_lettered.",
            ("workflow", "state"),
            histogram=False,
        )
        self.run_duration = _Family(
            "conveyor_run_duration_seconds",
            "From a run's start to its end.",
            ("workflow", "state"),
            histogram=True,
        )
        self.step_attempts = _Family(
            "conveyor_step_attempts",
            "Attempts at steps, by outcome: completed, failed, timed_out.",
            ("workflow", "step", "outcome"),
            histogram=False,
        )
        self.step_retries = _Family(
            "conveyor_step_retries",
            "Retries scheduled after a failed attempt.",
            ("workflow", "step"),
            histogram=False,
        )
        self.step_duration = _Family(
            "conveyor_step_duration_seconds",
            "How long one attempt at a step took, by outcome.",
            ("workflow", "step", "outcome"),
            histogram=True,
        )
        self.undos = _Family(
            "conveyor_undos",
            "Attempts at undoing a step, by outcome.",
            ("workflow", "step", "outcome"),
            histogram=False,
        )
        self.lease_takeovers = _Family(
            "conveyor_lease_takeovers",
            "Runs taken from a process whose lease ran out (it died or stalled).",
            ("workflow",),
            histogram=False,
        )
        self.dead_letters = _Family(
            "conveyor_dead_letters",
            "Runs set aside after too many take-overs in a row.",
            ("workflow",),
            histogram=False,
        )
        self._families = (
            self.runs_started,
            self.runs_finished,
            self.run_duration,
            self.step_attempts,
            self.step_retries,
            self.step_duration,
            self.undos,
            self.lease_takeovers,
            self.dead_letters,
        )
        self.registry = CollectorRegistry(auto_describe=False)
        """Where the metrics are registered: serve it, or read it with ``generate_latest``."""
        self.registry.register(_CountsCollector(self))
        self.registry.register(_QueueCollector(backend))

    def count(self, stored: Sequence[tuple[Any, ...]]) -> None:
        """Count what one committed write's events say, from their stored columns (the backend listener,
        added with ``stored_rows=True``: no :class:`Event` is built for it; see backends.history.numbered)."""
        step_attempts = self.step_attempts.values
        with self._lock:
            for row in stored:
                kind = row[2]
                if kind == "step.started":  # every attempt's start: counted by its outcome instead
                    continue
                if kind == "step.completed" or kind == "step.failed":
                    attempt = (row[8] or "", row[3] or "", kind[5:])
                    kept = step_attempts.get(attempt)
                    if kept is None:
                        step_attempts[attempt] = [1.0]
                    else:
                        kept[0] += 1
                    data = row[9]
                    duration = data.get("duration_seconds") if data else None
                    if type(duration) is float or type(duration) is int:
                        self.step_duration.add(attempt, duration)
                else:
                    self._count_other(kind, row[8] or "", row[3] or "", row[9])

    def _count_other(self, kind: str, workflow: str, step: str, data: Any) -> None:
        if kind == "step.retry_scheduled":
            self.step_retries.add((workflow, step))
        elif kind == "step.timed_out":
            self.step_attempts.add((workflow, step, "timed_out"))
        elif kind == "run.started":
            self.runs_started.add((workflow,))
        elif kind in _FINISHED:
            labels = (workflow, _FINISHED[kind])
            self.runs_finished.add(labels)
            duration = data.get("duration_seconds") if isinstance(data, Mapping) else None
            if isinstance(duration, int | float):
                self.run_duration.add(labels, duration)
            if kind == "run.dead_lettered":
                self.dead_letters.add((workflow,))
        elif kind == "run.taken_over":
            self.lease_takeovers.add((workflow,))
        elif kind == "undo.completed" or kind == "undo.failed":
            self.undos.add((workflow, step, kind[5:]))

    def families(self) -> list[CounterMetricFamily | HistogramMetricFamily]:
        """What the counters and histograms hold now, as Prometheus metric families."""
        with self._lock:
            return [family.family() for family in self._families]

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format, as a scrape reads them."""
        return generate_latest(self.registry)

    def serve(self, port: int, *, token: str, host: str = "127.0.0.1") -> MetricsServer:
        """Serve the metrics at ``http://host:port/metrics`` on a thread, to requests that carry
        ``Authorization: Bearer <token>`` (every network door needs one); port 0 picks a free port."""
        return MetricsServer(self, host, port, token)


class _CountsCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        yield from self._metrics.families()


class _QueueCollector(Collector):
    """What the backend holds, read at each scrape: unfinished runs by workflow and where they stand."""

    def __init__(self, backend: Callable[[], Backend]) -> None:
        self._backend = backend

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "conveyor_runs_unfinished",
            "Unfinished runs by workflow and status: queued (ready to claim), waiting (a timer, a signal "
            "or a pause), running (held by a live lease).",
            labels=["workflow", "status"],
        )
        try:
            counts = self._backend().count_unfinished_runs()
        except Exception:  # a scrape must not fail for a database that is down: the gauge is left out
            log.warning("could not count unfinished runs for the metrics", exc_info=True)
            return
        for (workflow, status), count in sorted(counts.items()):
            gauge.add_metric([workflow, status], count)
        yield gauge


class MetricsServer:
    """A running metrics endpoint (see :meth:`Metrics.serve`); ``close()`` stops it."""

    def __init__(self, metrics: Metrics, host: str, port: int, token: str) -> None:
        if not isinstance(token, str) or not token:
            raise InvalidArgumentError(
                "the metrics endpoint needs a token (--metrics-token, or $CONVEYOR_METRICS_TOKEN)",
                argument="token",
            )
        tokens = TokenTable(
            [(token, True)], where="the metrics token (--metrics-token, $CONVEYOR_METRICS_TOKEN)"
        )

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            if not tokens.find_bearer(environ.get("HTTP_AUTHORIZATION")):
                start_response("401 Unauthorized", [("WWW-Authenticate", "Bearer"), ("Content-Length", "0")])
                return [b""]
            if environ.get("PATH_INFO") not in ("/metrics", "/"):
                start_response("404 Not Found", [("Content-Length", "0")])
                return [b""]
            body = metrics.exposition()
            start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
            return [body]

        self._server: WSGIServer = make_server(host, port, app, handler_class=_QuietHandler)
        self.port = int(self._server.server_port)
        """The port it listens on (the one picked, when asked for 0)."""
        self.url = f"http://{host}:{self.port}/metrics"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="conveyor-metrics", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        log.debug(format, *args)
