"""A worker in another process continues the trace of the code that started each run: the spans its
in-memory exporter recorded (written out as it exits) share the starter's trace id, under its span."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import tracing_app

from conveyor import Conveyor, RunState
from tracing_support import recording_provider

HERE = Path(__file__).parent


def test_a_worker_process_continues_the_trace_each_run_was_started_in(
    database_url: str, tmp_path: Path
) -> None:
    """Three runs started in three spans here; one worker process drives them: each run's span there is
    the child of its starter's span, in its trace, and each step attempt (a failed one too) its child."""
    provider, _exporter = recording_provider()
    starter = Conveyor(database_url, workflows=[tracing_app.ORDERS], tracer_provider=provider)
    started = {}
    for n in range(3):
        with provider.get_tracer("shop").start_as_current_span(f"order {n}") as span:
            starter.start(tracing_app.ORDERS, {"id": n}, workflow_id=f"order-{n}")
        context = span.get_span_context()
        started[f"order-{n}"] = (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    spans_file = tmp_path / "spans.json"
    worker = subprocess.run(
        [
            sys.executable,
            "-m",
            "conveyor.cli",
            "worker",
            "--app",
            "tracing_app",
            "--backend",
            database_url,
            "--until-idle",
            "--concurrency",
            "2",
            "--poll-interval-seconds",
            "0.2",
        ],
        env={**os.environ, "PYTHONPATH": str(HERE), "TRACE_SPANS": str(spans_file)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr
    assert all(starter.status(run).state is RunState.COMPLETED for run in started)
    starter.close()

    spans = json.loads(spans_file.read_text())
    assert {span["pid"] for span in spans} == {spans[0]["pid"]} != {os.getpid()}
    runs = {
        span["attributes"]["conveyor.workflow_id"]: span
        for span in spans
        if span["name"] == "conveyor.run traced-orders"
    }
    assert sorted(runs) == sorted(started)
    for workflow_id, (trace_id, starter_span_id) in started.items():
        run = runs[workflow_id]
        assert run["trace_id"] == trace_id
        assert run["parent_id"] == starter_span_id
        assert run["attributes"]["conveyor.drive.outcome"] == "finished"
        attempts = [
            (span["attributes"]["conveyor.step"], span["attributes"]["conveyor.attempt"], span["status"])
            for span in spans
            if span["parent_id"] == run["span_id"]
        ]
        assert attempts == [
            ("reserve", 1, "UNSET"),
            ("charge", 1, "ERROR"),
            ("charge", 2, "UNSET"),
            ("confirm", 1, "UNSET"),
        ]
        assert {span["trace_id"] for span in spans if span["parent_id"] == run["span_id"]} == {trace_id}
