"""Declaring a step settings hook: a workflow class's ``step_settings`` method is checked when the class is
defined, and settings for a wait step are refused."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import DefinitionError, Flow, Saga, step, task
from conveyor.definition.settings import workflow_for_run


def test_a_class_step_settings_that_is_not_a_method_taking_the_input_is_refused() -> None:
    """An attribute, a method of the wrong arity and an async method are all DefinitionErrors."""
    with pytest.raises(DefinitionError, match="must be a method defined with def"):

        class Attribute(Saga):
            step_settings = ("a", "not a method")

            @step
            def a(self, x: int) -> int:
                return x

    with pytest.raises(DefinitionError, match=r"must take \(self, input\)"):

        class NoInput(Saga):
            def step_settings(self) -> dict[str, Any]:
                return {}

            @step
            def a(self, x: int) -> int:
                return x

    with pytest.raises(DefinitionError, match="not async"):

        class Async(Saga):
            async def step_settings(self, order: Any) -> dict[str, Any]:
                return {}

            @step
            def a(self, x: int) -> int:
                return x


def test_settings_for_a_wait_step_are_refused_and_unnamed_steps_keep_their_own() -> None:
    """A wait's timeout is declared with the wait; the steps a hook leaves out are the same objects."""

    @task
    def ask(order: dict[str, Any]) -> str:
        return "asked"

    @task
    def act(answer: Any) -> str:
        return "done"

    flow = Flow("approval", step_settings=lambda order: order["settings"])
    workflow = flow.then(ask).wait_for_signal("approved", timeout=60).then(act).build()
    with pytest.raises(DefinitionError, match="a wait step: set its timeout where it is declared"):
        workflow_for_run(workflow, '{"settings": {"approved": {"timeout": 5}}}')
    adjusted = workflow_for_run(workflow, '{"settings": {"act": {"timeout": 5}}}')
    assert adjusted.step("ask") is workflow.step("ask")
    assert adjusted.step("act").timeout_seconds == 5
    assert not adjusted.step("act").runs_inline
    assert adjusted.definition_hash == workflow.definition_hash
