"""Helpers for the tracing tests: an SDK tracer provider that keeps its spans in memory, and span lookups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def recording_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    """A tracer provider of the SDK's whose spans are exported, as each ends, to an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    """The spans called ``name``, in the order they ended."""
    return [span for span in spans if span.name == name]


def only(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    """The one span called ``name`` (fails if there is not exactly one)."""
    found = named(spans, name)
    assert len(found) == 1, f"{len(found)} spans named {name!r} in {[span.name for span in spans]}"
    return found[0]


def parent_id(span: ReadableSpan) -> int | None:
    """The span id of ``span``'s parent, or None for a root span."""
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    """The span's own id."""
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    """The id of the trace ``span`` belongs to."""
    assert span.context is not None
    return span.context.trace_id


def attributes(span: ReadableSpan) -> dict[str, Any]:
    """The span's attributes as a plain dict."""
    return dict(span.attributes or {})
