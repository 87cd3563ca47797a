"""schemathesis against the API's own OpenAPI schema, with an admin token, on SQLite holding real runs:
no generated request gets a 5xx, and every answer fits the schema (status, content type, headers, body)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from web_support import ADMIN, ADMIN_TOKEN, CHECKOUT_V1, GATEWAY, READ_TOKEN, WORKFLOWS

from conveyor import Conveyor, SqliteBackend
from conveyor.web import ApiTokens, api_app


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The API over a SQLite file with runs completed, failed, waiting and cancelled; its schema, loaded
    from its own /openapi.json with the admin token."""
    backend = SqliteBackend(tmp_path_factory.mktemp("schema") / "api.db")
    app = Conveyor(backend, workflows=WORKFLOWS)
    app.run(CHECKOUT_V1, {"order_id": "o-1", "quantity": 1}, workflow_id="x", correlation_id="req-1")
    GATEWAY["down"] = True
    app.run(CHECKOUT_V1, {"order_id": "o-2", "quantity": 2}, workflow_id="failed-1")
    GATEWAY["down"] = False
    app.start("approval", {}, workflow_id="waiting-1")
    app.start("approval", {}, workflow_id="cancelled-1")
    app.worker(concurrency=1, poll_interval_seconds=0.05).run(until_idle=True)
    app.cancel("cancelled-1", "schemathesis")
    api = api_app(app, ApiTokens(admin=[ADMIN_TOKEN], read=[READ_TOKEN]))
    yield schemathesis.openapi.from_asgi("/openapi.json", api, headers=ADMIN)
    app.close()
    backend.close()


# Every other check of schemathesis' runs. positive_data_acceptance (a schema-valid request must not be
# refused) is left out: what the schema cannot say is checked after it, by design, and answered 404 or 422
# naming the field: a workflow name nobody registered, an input that breaks that workflow's own schema, a
# page token the API never gave, a window that ends before it starts.
EXAMPLES_PER_OPERATION = 15
"""Generated requests per operation and kind (valid, invalid): enough to reach every parameter, bounded
so the whole test takes well under a minute."""


@pytest.mark.parametrize(
    "mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda mode: mode.value
)
def test_no_generated_request_gets_a_5xx_or_an_answer_outside_the_schema(api_schema: Any, mode: Any) -> None:
    """Every operation, with generated parameters and bodies (valid, then invalid ones): each answer is a
    documented status with a body that fits its schema; none is a 5xx."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        inputs = len(operation.path_parameters) + len(operation.query) + len(operation.body)
        if mode is GenerationMode.NEGATIVE and not inputs:
            continue  # nothing to get wrong (GET /workflows, /metrics, /healthz)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            case.call_and_validate(headers=ADMIN, excluded_checks=[positive_data_acceptance])

        check()
