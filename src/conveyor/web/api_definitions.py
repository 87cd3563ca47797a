"""The registered workflows over HTTP (seed 002's ``/handlers``): each version's graph and input schema."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import pydantic
from fastapi import FastAPI, Path, Query

from conveyor.definition.registry import RegisteredWorkflow, UnknownWorkflowError
from conveyor.definition.workflow import StepSpec, Workflow
from conveyor.runtime.app import Conveyor
from conveyor.web.api_access import SECURED
from conveyor.web.api_models import StepDefinitionOut, WorkflowOut, WorkflowsOut, WorkflowVersionsOut
from conveyor.web.problems import PROBLEM_RESPONSES

LOGGER = logging.getLogger("conveyor.web")


def input_json_schema(workflow: Workflow) -> dict[str, Any] | None:
    """The JSON Schema of what ``workflow``'s input must fit: a template's as written, a pydantic type's
    as pydantic renders it; None when it declares none (or its type has no JSON Schema)."""
    declared = workflow.input_schema
    if declared is None:
        return None
    if isinstance(declared, dict):
        return declared
    try:
        schema: dict[str, Any] = pydantic.TypeAdapter(declared).json_schema()
    except (pydantic.PydanticUserError, pydantic.errors.PydanticInvalidForJsonSchema, TypeError):
        LOGGER.warning("workflow %r: its input type has no JSON Schema", workflow.name)
        return None
    return schema


def _step(spec: StepSpec) -> StepDefinitionOut:
    kind = "wait" if spec.waits is not None else "control" if spec.control is not None else "task"
    return StepDefinitionOut(
        name=spec.name,
        depends_on=list(spec.depends_on),
        description=spec.task.description,
        kind=kind,
        max_attempts=spec.retries.max_attempts,
        timeout_seconds=spec.timeout_seconds,
        has_compensation=spec.has_compensation,
        runs_child=spec.runs_child,
    )


def workflow_out(entry: RegisteredWorkflow) -> WorkflowOut:
    """The model of one registered workflow version."""
    workflow = entry.workflow
    return WorkflowOut(
        namespace=entry.namespace,
        name=entry.name,
        recorded_name=workflow.name,
        version=entry.version,
        description=workflow.description,
        definition_hash=workflow.definition_hash,
        output_step=workflow.output_step,
        input_schema=input_json_schema(workflow),
        steps=[_step(spec) for spec in workflow.steps],
    )


def add_definition_routes(api: FastAPI, app: Conveyor) -> None:
    """Add to ``api`` the routes that show the registered workflows (a read token is enough)."""
    shared: dict[str, Any] = {
        "tags": ["definitions"],
        "responses": PROBLEM_RESPONSES,
        "dependencies": SECURED,
    }

    @api.get("/workflows", summary="Every registered workflow version, with its step graph", **shared)
    def list_workflows() -> WorkflowsOut:
        return WorkflowsOut(workflows=[workflow_out(entry) for entry in app.registry])

    @api.get(
        "/workflows/{name}", summary="One registered workflow: each of its versions, oldest first", **shared
    )
    def show_workflow(
        name: Annotated[str, Path(min_length=1, max_length=200)],
        namespace: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    ) -> WorkflowVersionsOut:
        newest = app.registry.entry(name, namespace=namespace)  # UnknownWorkflowError: a 404
        versions = [
            entry for entry in app.registry if entry.name == name and entry.namespace == newest.namespace
        ]
        if not versions:  # unregistered between the two reads
            raise UnknownWorkflowError(f"no workflow {name!r} is registered", name=name)
        return WorkflowVersionsOut(
            name=name, namespace=newest.namespace, versions=[workflow_out(entry) for entry in versions]
        )
