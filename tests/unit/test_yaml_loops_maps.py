"""Loops (``loop:``) and fan-out (``map:``) in YAML templates: declared on a step with a handler_class,
run as Flow.loop and Flow.map steps are, and every mistake a TemplateError naming the file and line."""

from __future__ import annotations

import asyncio
import re
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from conveyor import (
    Conveyor,
    InMemoryBackend,
    LoopLimitError,
    LoopResult,
    NonRetryableError,
    RunState,
    StepContext,
    StepState,
    TemplateError,
    load_template,
)

SEEN: list[Any] = []
"""What the handlers below saw, in order (cleared before each test)."""


@pytest.fixture(autouse=True)
def _clear() -> None:
    SEEN.clear()
    Flaky.fail_on.clear()


class Ship:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        return {"parcel": context["parcel"]}


class Poll:
    """Polls until the fourth call: each call sees the value the one before passed on."""

    def process(self, context: dict[str, Any], results: dict[str, Any], step: StepContext) -> Any:
        SEEN.append((step.index, step.idempotency_key, dict(results)))
        state = results.get("poll", {"polls": 0})
        if state["polls"] >= context.get("deliver_after", 3):
            return LoopResult.done({**state, "delivered": True})
        return LoopResult.again({"polls": state["polls"] + 1})

    def undo(self, result: dict[str, Any], context: dict[str, Any], results: dict[str, Any]) -> None:
        SEEN.append(("undo poll", result))


class AsyncPoll:
    async def process(self, context: dict[str, Any], results: dict[str, Any]) -> Any:
        await asyncio.sleep(0)
        n = results.get("poll", {"n": 0})["n"]
        return LoopResult.done({"n": n}) if n == 2 else LoopResult.again({"n": n + 1})


class NotALoopResult:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> Any:
        return {"polls": 1}


class LoopOfText:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> Any:
        return LoopResult.again("polled")


class Close:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        if context.get("refuse"):
            raise NonRetryableError("the customer refused the parcel")
        return {"closed": results["poll"]}


class Lines:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        return {"order": {"lines": context["lines"]}, "count": len(context["lines"])}


class Flaky:
    """An element handler that fails for good on the SKUs in ``fail_on``."""

    fail_on: ClassVar[set[str]] = set()

    def process(self, context: dict[str, Any], results: dict[str, Any], step: StepContext) -> dict[str, Any]:
        line = results["reserve"]
        SEEN.append(("reserve", step.index, step.idempotency_key, line))
        if line["sku"] in self.fail_on:
            raise NonRetryableError(f"{line['sku']} is out of stock")
        return {"reservation": f"r-{line['sku']}", "qty": line["qty"]}

    def undo(self, result: dict[str, Any], context: dict[str, Any], results: dict[str, Any]) -> None:
        SEEN.append(("release", result["reservation"], results["reserve"]["sku"]))


class Slow:
    lock = threading.Lock()
    now = 0
    most = 0

    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        with Slow.lock:
            Slow.now += 1
            Slow.most = max(Slow.most, Slow.now)
        time.sleep(0.03)
        with Slow.lock:
            Slow.now -= 1
        return {"n": results["pick"]}


class Label:
    """A map after a map: one label per reservation."""

    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        return {"label": results["label"]["reservation"].upper()}


class Text:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> Any:
        return "reserved"


class Charge:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        if context.get("decline"):
            raise NonRetryableError("card declined")
        return {"charged": [line["qty"] for line in results["reserve"]]}


HANDLERS: dict[str, type] = {
    f"h.{cls.__name__}": cls
    for cls in (
        Ship,
        Poll,
        AsyncPoll,
        NotALoopResult,
        LoopOfText,
        Close,
        Lines,
        Flaky,
        Slow,
        Label,
        Text,
        Charge,
    )
}

DELIVERY = """
name: delivery
step_templates:
  - name: ship
    handler_class: h.Ship
  - name: poll
    handler_class: h.Poll
    depends_on_step: ship
    loop:
      max_iterations: 5
      on_max: fail
  - name: close
    handler_class: h.Close
    depends_on_step: poll
"""

ORDERS = """
name: orders
step_templates:
  - name: lines
    handler_class: h.Lines
  - name: reserve
    handler_class: h.Flaky
    depends_on_step: lines
    retry_limit: 1
    map:
      over: lines.order.lines
      max_concurrency: 1
  - name: charge
    handler_class: h.Charge
    depends_on_step: reserve
"""

LINES = [{"sku": "apple", "qty": 2}, {"sku": "pear", "qty": 1}, {"sku": "plum", "qty": 5}]


def load(tmp_path: Path, text: str, name: str = "template.yaml") -> Conveyor:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return Conveyor(InMemoryBackend(), workflows=[load_template(path, handlers=HANDLERS)])


# -- loops ----------------------------------------------------------------------------------------------


def test_a_loop_steps_process_finds_the_value_the_iteration_before_passed_on_under_its_own_name(
    tmp_path: Path,
) -> None:
    """The first iteration gets results as any step does; each later one also gets the carried value in
    results['poll']; done's value is the step's result, which the next step receives."""
    app = load(tmp_path, DELIVERY)
    status = app.run("delivery", {"parcel": "p-1"}, workflow_id="d-1")
    assert status.is_completed()
    assert status.step("poll").result == {"polls": 3, "delivered": True}
    assert status.output()["close"] == {"closed": {"polls": 3, "delivered": True}}
    assert [results for _index, _key, results in SEEN] == [
        {"ship": {"parcel": "p-1"}},
        {"ship": {"parcel": "p-1"}, "poll": {"polls": 1}},
        {"ship": {"parcel": "p-1"}, "poll": {"polls": 2}},
        {"ship": {"parcel": "p-1"}, "poll": {"polls": 3}},
    ]
    assert [(index, key) for index, key, _results in SEEN] == [(n, f"d-1:poll:{n}") for n in range(4)]


def test_a_loop_that_asks_for_more_than_max_iterations_fails_or_exits_as_on_max_says(tmp_path: Path) -> None:
    """on_max: fail (the default) fails the step with LoopLimitError; on_max: exit completes it with the
    last value passed on."""
    failing = load(tmp_path, DELIVERY.replace("      on_max: fail\n", ""))
    status = failing.run("delivery", {"parcel": "p", "deliver_after": 10}, workflow_id="d-2")
    assert status.state is RunState.FAILED
    error = status.error()
    assert error is not None
    assert (error.step_name, error.error_type) == ("poll", LoopLimitError.__name__)
    assert len(SEEN) == 5
    exiting = load(tmp_path, DELIVERY.replace("on_max: fail", "on_max: exit"), "exit.yaml")
    status = exiting.run("delivery", {"parcel": "p", "deliver_after": 10}, workflow_id="d-3")
    assert status.is_completed()
    assert status.step("poll").result == {"polls": 5}


def test_a_loops_undo_runs_once_with_its_final_result_when_a_later_step_fails(tmp_path: Path) -> None:
    app = load(tmp_path, DELIVERY)
    status = app.run("delivery", {"parcel": "p", "refuse": True}, workflow_id="d-4")
    assert status.state is RunState.COMPENSATED
    assert [seen for seen in SEEN if seen[0] == "undo poll"] == [
        ("undo poll", {"polls": 3, "delivered": True})
    ]


def test_an_async_loop_handler_runs_too(tmp_path: Path) -> None:
    app = load(tmp_path, DELIVERY.replace("h.Poll", "h.AsyncPoll"))
    assert app.run("delivery", {"parcel": "p"}, workflow_id="d-5").step("poll").result == {"n": 2}


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        ("h.NotALoopResult", r"NotALoopResult\.process of loop step 'poll' returned dict; a loop's process"),
        ("h.LoopOfText", r"LoopOfText\.process of loop step 'poll' returned a LoopResult holding str"),
    ],
)
def test_a_loop_handler_returning_anything_but_a_loop_result_of_a_dict_fails_the_step_at_once(
    tmp_path: Path, handler: str, message: str
) -> None:
    app = load(tmp_path, DELIVERY.replace("h.Poll", handler))
    status = app.run("delivery", {"parcel": "p"}, workflow_id="d-6")
    assert status.state is RunState.FAILED
    error = status.error()
    assert error is not None
    assert error.attempts == 1
    assert error.step_name == "poll"
    assert re.search(message, error.message)


# -- maps -----------------------------------------------------------------------------------------------


def test_a_map_steps_process_is_called_once_per_element_found_under_its_own_name(tmp_path: Path) -> None:
    """over: lines.order.lines (a path into a step's result): one call per line, in order one at a time,
    each with its own index and key; the step's result is the list of results, which charge receives."""
    app = load(tmp_path, ORDERS)
    status = app.run("orders", {"lines": LINES}, workflow_id="o-1")
    assert status.is_completed()
    assert [("reserve", n, f"o-1:reserve:{n}", line) for n, line in enumerate(LINES)] == SEEN
    assert status.step("reserve").result == [
        {"reservation": "r-apple", "qty": 2},
        {"reservation": "r-pear", "qty": 1},
        {"reservation": "r-plum", "qty": 5},
    ]
    assert status.output()["charge"] == {"charged": [2, 1, 5]}
    assert status.step("reserve").elements == {
        "count": 3,
        "done": 3,
        "failed": 0,
        "undone": 0,
        "undo_failed": 0,
    }


def test_a_failing_element_undoes_exactly_the_elements_that_succeeded_newest_first(tmp_path: Path) -> None:
    """plum fails for good after apple and pear succeeded: pear's undo, then apple's, each with the element's
    result and the element in results['reserve']; the run ends compensated."""
    Flaky.fail_on.add("plum")
    app = load(tmp_path, ORDERS)
    status = app.run("orders", {"lines": LINES}, workflow_id="o-2")
    assert status.state is RunState.COMPENSATED
    assert [seen for seen in SEEN if seen[0] == "release"] == [
        ("release", "r-pear", "pear"),
        ("release", "r-apple", "apple"),
    ]
    assert status.step("reserve").state is StepState.COMPENSATED
    assert status.step("reserve").elements == {
        "count": 3,
        "done": 2,
        "failed": 1,
        "undone": 2,
        "undo_failed": 0,
    }
    assert status.step("charge").state is StepState.PENDING


def test_a_completed_map_is_undone_once_per_element_when_a_later_step_fails(tmp_path: Path) -> None:
    app = load(tmp_path, ORDERS)
    status = app.run("orders", {"lines": LINES, "decline": True}, workflow_id="o-3")
    assert status.state is RunState.COMPENSATED
    assert [seen[2] for seen in SEEN if seen[0] == "release"] == ["plum", "pear", "apple"]


def test_a_map_over_the_runs_input_and_a_map_over_the_one_step_it_depends_on(tmp_path: Path) -> None:
    """over: context.lines reads the run's input; a map without over maps over its one dependency's whole
    result (here another map's list)."""
    app = load(
        tmp_path,
        """
        name: labels
        step_templates:
          - name: reserve
            handler_class: h.Flaky
            map: {over: context.lines}
          - name: label
            handler_class: h.Label
            depends_on_step: reserve
            map: {}
        """,
    )
    status = app.run("labels", {"lines": LINES}, workflow_id="o-4")
    assert status.is_completed()
    assert status.step("label").result == [{"label": "R-APPLE"}, {"label": "R-PEAR"}, {"label": "R-PLUM"}]


def test_a_map_runs_no_more_elements_at_once_than_max_concurrency(tmp_path: Path) -> None:
    Slow.most = 0
    app = load(
        tmp_path,
        """
        name: picking
        step_templates:
          - name: pick
            handler_class: h.Slow
            map: {over: context.items, max_concurrency: 3}
        """,
    )
    status = app.run("picking", {"items": list(range(9))}, workflow_id="o-5")
    assert status.step("pick").result == [{"n": n} for n in range(9)]
    assert Slow.most == 3


@pytest.mark.parametrize(
    ("given", "state", "message"),
    [
        ({"lines": []}, RunState.COMPLETED, None),
        (
            {"lines": {"sku": "apple"}},
            RunState.FAILED,
            "map 'reserve' maps over a list, and it received dict",
        ),
        ({}, RunState.FAILED, "map 'reserve' maps over context.lines, and context has no field 'lines'"),
    ],
)
def test_a_maps_list_is_read_when_the_step_starts(
    tmp_path: Path, given: dict[str, Any], state: RunState, message: str | None
) -> None:
    """An empty list gives []; anything but a list, or a path that leads nowhere, fails the step at once."""
    app = load(
        tmp_path,
        """
        name: reading
        step_templates:
          - name: reserve
            handler_class: h.Flaky
            map: {over: context.lines}
        """,
    )
    status = app.run("reading", given, workflow_id="o-6")
    assert status.state is state
    if message is None:
        assert status.step("reserve").result == []
    else:
        error = status.error()
        assert error is not None
        assert message in error.message


def test_an_element_handler_returning_anything_but_a_dict_fails_the_step(tmp_path: Path) -> None:
    app = load(tmp_path, ORDERS.replace("h.Flaky", "h.Text"))
    status = app.run("orders", {"lines": LINES}, workflow_id="o-7")
    assert status.state is RunState.FAILED
    error = status.error()
    assert error is not None
    assert "Text.process of step 'reserve' returned str; a step's result must be a dict" in error.message


def test_the_definition_hash_covers_a_loops_limits_and_the_list_a_map_maps_over(tmp_path: Path) -> None:
    """Another max_iterations, on_max, max_concurrency or list is another definition (a run recorded by
    the one is never driven by the other); the same template hashes the same."""

    def digest(text: str, name: str) -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return load_template(path, handlers=HANDLERS).definition_hash

    both = DELIVERY + ORDERS.split("step_templates:\n", 1)[1].replace("- name: charge", "- name: charge_it")
    base = digest(both, "base.yaml")
    assert digest(both, "again.yaml") == base
    changes = [
        ("max_iterations: 5", "max_iterations: 6"),
        ("on_max: fail", "on_max: exit"),
        ("max_concurrency: 1", "max_concurrency: 2"),
        ("over: lines.order.lines", "over: context.lines"),
    ]
    hashes = {digest(both.replace(*change), f"changed{n}.yaml") for n, change in enumerate(changes)}
    assert base not in hashes
    assert len(hashes) == len(changes)


# -- mistakes -------------------------------------------------------------------------------------------


MISTAKES = [
    (
        DELIVERY,
        ("max_iterations: 5", "max_iterations: 0"),
        9,
        "loop.max_iterations",
        "must be a whole number",
    ),
    (DELIVERY, ("max_iterations: 5", "max_iterations: five"), 9, "loop.max_iterations", "not 'five'"),
    (DELIVERY, ("max_iterations: 5", "max_iterations: true"), 9, "loop.max_iterations", "not True"),
    (DELIVERY, ("      max_iterations: 5\n", ""), 8, "loop", "a loop needs max_iterations"),
    (DELIVERY, ("on_max: fail", "on_max: stop"), 10, "loop.on_max", "must be fail .* or exit"),
    (
        DELIVERY,
        ("on_max: fail", "until: done"),
        10,
        "loop.until",
        "unknown field in a loop; the known fields",
    ),
    (
        DELIVERY,
        ("loop:\n      max_iterations: 5\n      on_max: fail\n", "loop: 5\n"),
        8,
        "loop",
        "must be a mapping",
    ),
    (DELIVERY, ("    loop:\n", "    map: {}\n    loop:\n"), 8, "map", "a step is a loop or a map, not both"),
    (DELIVERY, ("    loop:\n", "    route: true\n    loop:\n"), 9, "loop", "a route cannot be a loop"),
    (DELIVERY, ("    handler_class: h.Poll\n", "    delay: 5m\n"), 8, "loop", "a loop needs a handler_class"),
    (
        ORDERS,
        ("max_concurrency: 1", "max_concurrency: 0"),
        11,
        "map.max_concurrency",
        "must be a whole number",
    ),
    (ORDERS, ("max_concurrency: 1", "concurrency: 1"), 11, "map.concurrency", "unknown field in a map"),
    (ORDERS, ("    map:\n", "    route: true\n    map:\n"), 10, "map", "a route cannot be a map"),
    (ORDERS, ("over: lines.order.lines", "over: charge.lines"), 10, "map.over", "does not depend on"),
    (ORDERS, ("over: lines.order.lines", "over: nowhere.lines"), 10, "map.over", "neither context"),
    (ORDERS, ("over: lines.order.lines", "over: reserve"), 10, "map.over", "its own result"),
    (ORDERS, ("over: lines.order.lines", "over: lines..order"), 10, "map.over", "must name the list"),
    (ORDERS, ("over: lines.order.lines", "over: 5"), 10, "map.over", "must name the list"),
    (ORDERS, ("      over: lines.order.lines\n", ""), None, None, None),  # fine: it depends on lines alone
    (
        ORDERS,
        (
            "    depends_on_step: lines\n    retry_limit: 1\n    map:\n      over: lines.order.lines\n",
            "    retry_limit: 1\n    map:\n",
        ),
        8,
        "map",
        "depends on 0; say where its list is with over",
    ),
    (
        ORDERS,
        (
            "    depends_on_step: lines\n    retry_limit: 1\n    map:\n      over: lines.order.lines\n",
            "    depends_on_steps: [lines, ship]\n    map:\n",
        ),
        8,
        "map",
        r"depends on 2 \(lines, ship\)",
    ),
]


@pytest.mark.parametrize(("text", "change", "line", "field", "message"), MISTAKES)
def test_every_loop_and_map_mistake_is_a_template_error_naming_the_file_and_line(
    tmp_path: Path, text: str, change: tuple[str, str], line: int, field: str, message: str
) -> None:
    path = tmp_path / "broken.yaml"
    original = textwrap.dedent(text).lstrip()
    changed = original.replace(*change)
    assert changed != original
    if "ship" in change[1]:  # a second step to depend on
        changed += "  - name: ship\n    handler_class: h.Ship\n"
    path.write_text(changed)
    if message is None:
        load_template(path, handlers=HANDLERS)
        return
    with pytest.raises(TemplateError, match=message) as raised:
        load_template(path, handlers=HANDLERS)
    error = raised.value
    assert (error.file, error.line, error.field) == (str(path), line, field)
    assert str(error).startswith(f"{path}:{line}: step ")
    assert f"field {field!r}" in str(error)
