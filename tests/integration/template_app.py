"""A YAML template with a loop and a map, for the worker-process tests (``conveyor worker --app
template_app``): ``template_flows.yaml`` next to this module, its handlers below.

Each handler notes its start and end in $WORKER_LOG (see ``worker_app.note``), which survives a SIGKILL.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from flow_app import die_once, hang_once
from worker_app import note

from conveyor import Conveyor, LoopResult, StepContext, load_template


class Begin:
    def process(self, context: dict[str, Any], results: dict[str, Any], step: StepContext) -> dict[str, Any]:
        note(step, "start")
        note(step, "done")
        return {"lines": context["lines"]}


class Climb:
    """Five iterations, 0 to 4; the worker dies in the middle of iteration 3, once."""

    def process(self, context: dict[str, Any], results: dict[str, Any], step: StepContext) -> Any:
        n = results.get("climb", {"n": 0})["n"]
        note(step, f"start{step.index}")
        if step.index == 3:
            die_once(step, "climb3")
        note(step, f"done{step.index}")
        return LoopResult.done({"top": n}) if n >= 4 else LoopResult.again({"n": n + 1})


class Pack:
    """One element: elements 3 and 4 hang on their first run, holding both slots of the map."""

    def process(self, context: dict[str, Any], results: dict[str, Any], step: StepContext) -> dict[str, Any]:
        n = results["pack"]
        note(step, f"start{step.index}")
        if n in (3, 4) and context.get("hang"):
            hang_once(step, f"pack{n}")
        note(step, f"done{step.index}")
        return {"box": n}


class Count:
    def process(self, context: dict[str, Any], results: dict[str, Any], step: StepContext) -> dict[str, Any]:
        note(step, "start")
        note(step, "done")
        return {"sent": [box["box"] for box in results["pack"]], "top": results["climb"]["top"]}


TEMPLATED = load_template(Path(__file__).with_name("template_flows.yaml"), handlers=sys.modules[__name__])
"""begin -> climb (a loop of five iterations) -> pack (a map, two at a time) -> count."""

app = Conveyor(workflows=[TEMPLATED])
"""The runtime ``conveyor worker --app template_app`` loads (its backend comes from ``--backend``)."""
