"""A traced runtime for the worker-process tracing test, loaded by ``conveyor worker --app tracing_app``.

Its spans go to the SDK's in-memory exporter; when the process exits, they are written to $TRACE_SPANS as a
JSON list (name, ids as hex, parent, attributes, status, the pid), for the test to read back.
"""

from __future__ import annotations

import atexit
import json
import os
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conveyor import Conveyor, Flow, RetryPolicy, StepContext, task

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))


@task
def reserve(order: dict[str, Any]) -> dict[str, Any]:
    return {**order, "reserved": True}


@task(retries=RetryPolicy(max_retries=1, initial_delay_secs=0.0))
def charge(order: dict[str, Any], context: StepContext) -> dict[str, Any]:
    if context.attempt == 1:
        raise ConnectionError("gateway timed out")
    return {**order, "charged": True}


@task
def confirm(order: dict[str, Any]) -> str:
    return f"confirmed {order['id']}"


ORDERS = Flow("traced-orders").then(reserve).then(charge).then(confirm).build()

app = Conveyor(workflows=[ORDERS], tracer_provider=provider)


def _write_spans() -> None:
    path = os.environ.get("TRACE_SPANS")
    if not path:
        return
    spans = []
    for span in exporter.get_finished_spans():
        assert span.context is not None
        spans.append(
            {
                "name": span.name,
                "trace_id": f"{span.context.trace_id:032x}",
                "span_id": f"{span.context.span_id:016x}",
                "parent_id": None if span.parent is None else f"{span.parent.span_id:016x}",
                "attributes": dict(span.attributes or {}),
                "status": span.status.status_code.name,
                "pid": os.getpid(),
            }
        )
    with open(path, "w") as output:
        json.dump(spans, output)


atexit.register(_write_spans)
