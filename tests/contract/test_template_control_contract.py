"""Loops and maps declared in YAML templates, end to end on every backend (the contract): what they write is
stored, read back and acted on the same way by memory, SQLite and PostgreSQL."""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from conveyor import Conveyor, LoopResult, NonRetryableError, RunState, StepContext, StepState, load_template
from conveyor.backends.base import Backend

CALLS: list[Any] = []
"""What the handlers below did, in order."""

APPS: dict[str, Conveyor] = {}
"""The runtime a handler pauses its run through."""

GATE = threading.Event()


class Start:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        return {"start": context["start"], "lines": context["lines"]}


class Climb:
    """Climbs from the start to 4, one step an iteration; pauses its run in iteration 2, once."""

    def process(self, context: dict[str, Any], results: dict[str, Any], step: StepContext) -> Any:
        n = results.get("climb", {"n": results["begin"]["start"]})["n"]
        CALLS.append(("climb", step.index, n, step.idempotency_key))
        if step.index == 2 and "paused" not in APPS:
            APPS["paused"] = APPS["app"]
            APPS["app"].pause(step.workflow_id)
        return LoopResult.done({"top": n}) if n >= 4 else LoopResult.again({"n": n + 1})


class Reserve:
    """Element 0 fails for good once elements 1 and 2 are running; they end, and are undone."""

    def process(self, context: dict[str, Any], results: dict[str, Any], step: StepContext) -> dict[str, Any]:
        line = results["reserve"]
        if line["n"] == 0:
            GATE.set()
            time.sleep(0.02)
            raise NonRetryableError("out of stock")
        GATE.wait(5)
        time.sleep(0.05)
        return {"reserved": line["n"], "key": step.idempotency_key}

    def undo(self, result: dict[str, Any], context: dict[str, Any], results: dict[str, Any]) -> None:
        CALLS.append(("release", result["reserved"], results["reserve"]["n"]))


class Report:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        return {"report": results}


HANDLERS: dict[str, type] = {f"h.{cls.__name__}": cls for cls in (Start, Climb, Reserve, Report)}

TEMPLATE = """
name: warehouse
step_templates:
  - name: begin
    handler_class: h.Start
  - name: climb
    handler_class: h.Climb
    depends_on_step: begin
    loop: {max_iterations: 10}
  - name: reserve
    handler_class: h.Reserve
    depends_on_step: climb
    retryable: false
    map: {over: begin.lines, max_concurrency: 3}
  - name: report
    handler_class: h.Report
    depends_on_steps: [climb, reserve]
"""


def runtime(backend: Backend, tmp_path: Path) -> Conveyor:
    path = tmp_path / "warehouse.yaml"
    path.write_text(textwrap.dedent(TEMPLATE).lstrip())
    CALLS.clear()
    APPS.clear()
    GATE.clear()
    APPS["app"] = app = Conveyor(backend, workflows=[load_template(path, handlers=HANDLERS)])
    return app


def test_a_template_loops_progress_is_stored_and_a_fresh_runtime_resumes_it(
    backend: Backend, tmp_path: Path
) -> None:
    """Paused in iteration 2, the stored loop step holds the iteration and the value passed on; a fresh
    runtime on the same backend runs iterations 3 and 4 only, then the map and the report."""
    app = runtime(backend, tmp_path)
    given = {"start": 0, "lines": [{"n": 1}, {"n": 2}]}
    assert app.run("warehouse", given, workflow_id="yl-1").is_paused()
    stored = backend.load_run("yl-1")
    assert stored is not None
    record = stored.steps["climb"]
    assert (record.state, record.progress) == (StepState.PENDING, '{"iteration":3,"value":{"n":3}}')
    again = Conveyor(backend, workflows=[load_template(tmp_path / "warehouse.yaml", handlers=HANDLERS)])
    again.unpause("yl-1")
    status = again.run("warehouse", given, workflow_id="yl-1")
    assert status.is_completed()
    assert status.step("climb").result == {"top": 4}
    assert status.step("climb").progress is None
    assert [call[1:3] for call in CALLS] == [(n, n) for n in range(5)]  # each iteration ran once
    assert [call[3] for call in CALLS] == [f"yl-1:climb:{n}" for n in range(5)]
    assert status.output()["report"] == {
        "report": {
            "begin": {"start": 0, "lines": [{"n": 1}, {"n": 2}]},
            "climb": {"top": 4},
            "reserve": [{"reserved": 1, "key": "yl-1:reserve:0"}, {"reserved": 2, "key": "yl-1:reserve:1"}],
        }
    }


def test_a_template_map_with_a_failing_element_compensates_exactly_the_succeeded_ones_newest_first(
    backend: Backend, tmp_path: Path
) -> None:
    """Element 0 fails for good while 1 and 2 run; they end and are undone newest first, each once, with
    its result and its element; the stored step holds which elements succeeded, failed and were undone."""
    app = runtime(backend, tmp_path)
    given = {"start": 4, "lines": [{"n": n} for n in range(6)]}
    status = app.run("warehouse", given, workflow_id="ym-1")
    assert status.state is RunState.COMPENSATED
    stored = backend.load_run("ym-1")
    assert stored is not None
    record = stored.steps["reserve"]
    assert record.state is StepState.COMPENSATED
    assert record.progress is not None
    progress = orjson.loads(record.progress)
    assert sorted(progress["done"]) == [1, 2]
    assert progress["failed"] == [0]
    releases = [call for call in CALLS if call[0] == "release"]
    assert releases == [("release", n, n) for n in reversed(progress["done"])]
    assert progress["undone"] == list(reversed(progress["done"]))
    assert app.status("ym-1").step("reserve").elements == {
        "count": 6, "done": 2, "failed": 1, "undone": 2, "undo_failed": 0,
    }  # fmt: skip
    assert stored.steps["report"].state is StepState.PENDING
