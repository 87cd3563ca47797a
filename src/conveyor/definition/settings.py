"""Step settings a workflow adjusts per run, from the run's input (seed 002's express orders).

A workflow may carry a ``step_settings`` hook: ``hook(input) -> {step name: {"timeout": seconds,
"retries": n}}`` (``Flow(..., step_settings=hook)``, a workflow class's ``step_settings(self, input)``
method, or a YAML template's ``task_handler_class`` with ``step_settings(self, context)``). It gets the
run's input as plain JSON values (as stored, so it sees the same in every process) and returns the
settings that differ for this run; a step it does not name keeps its own. It is called when the run is
recorded (a result naming an unknown step or setting is a :class:`~conveyor.errors.DefinitionError`
then, before anything is stored) and each time the run is driven, in every process: it must say the same
for the same input. A workflow without a hook pays nothing.

Settings: ``timeout`` (seconds or a ``timedelta``; ``None`` for none) and ``retries`` (how many times a
failed attempt is tried again, keeping the step's backoff; or a :class:`RetryPolicy`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import orjson

from conveyor.definition.retry import RetryPolicy, seconds
from conveyor.errors import DefinitionError

if TYPE_CHECKING:
    from conveyor.definition.workflow import StepSpec, Workflow

StepSettingsHook = Callable[[Any], Mapping[str, Mapping[str, Any]] | None]
"""``hook(input) -> {step name: {setting: value}}`` (None or ``{}`` for no change)."""

SETTINGS = ("timeout", "retries")
"""The settings a hook may give a step."""


def check_hook(hook: object, where: str) -> StepSettingsHook | None:
    """``hook`` if it is None or callable, else a DefinitionError naming ``where`` it was given."""
    if hook is not None and not callable(hook):
        raise DefinitionError(f"step_settings of {where} must be a function of the run's input, not {hook!r}")
    return hook


def workflow_for_run(workflow: Workflow, input_text: str) -> Workflow:
    """``workflow`` with the settings its hook gives a run whose input is ``input_text`` (JSON)."""
    hook = workflow.step_settings
    if hook is None:
        return workflow
    where = f"workflow {workflow.name!r}"
    try:
        given = hook(orjson.loads(input_text))
    except Exception as exc:
        raise DefinitionError(
            f"the step_settings hook of {where} raised {type(exc).__name__}: {exc}",
            workflow_name=workflow.name,
        ) from exc
    if not given:
        return workflow
    if not isinstance(given, Mapping):
        raise DefinitionError(
            f"the step_settings hook of {where} must return {{step name: {{setting: value}}}}, not {given!r}"
        )
    changed = {name: _adjusted(workflow, name, settings) for name, settings in given.items()}
    steps = tuple(changed.get(spec.name, spec) for spec in workflow.steps)
    return dataclasses.replace(workflow, steps=steps, by_name=MappingProxyType({s.name: s for s in steps}))


def _adjusted(workflow: Workflow, name: object, settings: object) -> StepSpec:
    """The step ``name`` of ``workflow`` with ``settings`` applied, each checked."""
    spec = workflow.by_name.get(name) if isinstance(name, str) else None
    where = f"the step_settings hook of workflow {workflow.name!r}"
    if spec is None:
        raise DefinitionError(
            f"{where} names step {name!r}, which the workflow does not have "
            f"({', '.join(workflow.step_names)})"
        )
    if spec.waits is not None:
        raise DefinitionError(
            f"{where} gives settings to {name!r}, a wait step: set its timeout where it is declared"
        )
    if not isinstance(settings, Mapping):
        raise DefinitionError(f"{where} must give step {name!r} a dict of settings, not {settings!r}")
    unknown = [key for key in settings if key not in SETTINGS]
    if unknown:
        raise DefinitionError(
            f"{where} gives step {name!r} the setting {unknown[0]!r}; the settings are {', '.join(SETTINGS)}"
        )
    timeout = spec.timeout_seconds
    if "timeout" in settings:
        timeout = _timeout(settings["timeout"], f"{where}: the timeout of step {name!r}")
    retries = spec.retries
    if "retries" in settings:
        retries = _retries(settings["retries"], spec.retries, f"{where}: the retries of step {name!r}")
    return dataclasses.replace(
        spec,
        timeout_seconds=timeout,
        retries=retries,
        runs_inline=not spec.task.shape.is_async and timeout is None,
    )


def _timeout(value: object, what: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float | timedelta) or isinstance(value, bool):
        raise DefinitionError(f"{what} must be a number of seconds or a timedelta, not {value!r}")
    timeout = seconds(value, what=what)
    if not timeout:
        raise DefinitionError(f"{what} must be more than zero seconds, not {value!r}")
    return timeout


def _retries(value: object, policy: RetryPolicy, what: str) -> RetryPolicy:
    if isinstance(value, RetryPolicy):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DefinitionError(
            f"{what} must be a whole number of retries (0 or more) or a RetryPolicy, not {value!r}"
        )
    return RetryPolicy(
        max_retries=value,
        initial_delay_secs=policy.initial_delay_secs,
        backoff_multiplier=policy.backoff_multiplier,
        backoff=policy.backoff,
        max_delay_secs=policy.max_delay_secs,
        jitter=policy.jitter,
        non_retryable_errors=policy.non_retryable_errors,
    )
