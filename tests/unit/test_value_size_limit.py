"""A value over the backend's size limit is a clear, final error with the size and the limit, never a loop."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import (
    EncodingError,
    Flow,
    InMemoryBackend,
    RetryPolicy,
    RunState,
    run_durable_workflow,
    start_workflow,
    task,
)
from conveyor.codec import DEFAULT_MAX_VALUE_BYTES, encode, max_value_bytes

POSTGRES_JSONB_STRING_LIMIT = 268_435_455  # bytes: PostgreSQL refuses longer jsonb strings
LIMIT = 1_000


def small_backend() -> InMemoryBackend:
    """A backend that stores values of at most LIMIT bytes of JSON."""
    backend = InMemoryBackend()
    backend.max_value_bytes = LIMIT  # type: ignore[attr-defined]
    return backend


@task
def echo(value: Any) -> Any:
    return value


ECHO = Flow("echo").then(echo).build()


# --- the codec ------------------------------------------------------------------------------------------


def test_encode_refuses_json_longer_than_max_bytes_with_the_size_and_the_limit():
    """A value of 1,002 bytes of JSON over a 1,000-byte limit is refused, saying both numbers."""
    with pytest.raises(EncodingError) as raised:
        encode("x" * 1_000, what="result of step 'export'", max_bytes=LIMIT)
    message = str(raised.value)
    assert message.startswith("result of step 'export' is 1,002 bytes as JSON; the limit is 1,000 bytes")
    assert raised.value.size == 1_002
    assert raised.value.limit == LIMIT


def test_encode_keeps_a_value_exactly_at_the_limit():
    """JSON of exactly max_bytes bytes is stored."""
    assert encode("x" * 998, max_bytes=LIMIT) == '"' + "x" * 998 + '"'


def test_the_limit_counts_bytes_not_characters():
    """Text outside ASCII takes more bytes than characters; the limit is in bytes, as the databases count."""
    with pytest.raises(EncodingError, match="is 1,502 bytes as JSON"):
        encode("é" * 750, max_bytes=LIMIT)


def test_the_default_limit_is_well_under_postgresqls():
    """The default (64 MiB) is a quarter of what a PostgreSQL jsonb string may hold, and used by default."""
    assert DEFAULT_MAX_VALUE_BYTES == 64 * 1024 * 1024
    assert DEFAULT_MAX_VALUE_BYTES * 4 <= POSTGRES_JSONB_STRING_LIMIT + 1
    assert max_value_bytes(InMemoryBackend()) == DEFAULT_MAX_VALUE_BYTES
    assert max_value_bytes(small_backend()) == LIMIT


def test_encode_applies_the_default_limit():
    """Without max_bytes, encode refuses values over 64 MiB."""
    with pytest.raises(EncodingError, match=r"the limit is 67,108,864 bytes \(64 MiB\)"):
        encode("x" * DEFAULT_MAX_VALUE_BYTES)


# --- the engine -----------------------------------------------------------------------------------------


def test_an_input_over_the_backends_limit_is_refused_before_anything_is_stored():
    """run_durable_workflow and start_workflow refuse an oversized input, saying its size; no run recorded."""
    backend = small_backend()
    big = {"blob": "x" * 2_000}
    with pytest.raises(EncodingError, match=r"^input is 2,011 bytes as JSON; the limit is 1,000 bytes"):
        run_durable_workflow(ECHO, "w", big, backend)
    with pytest.raises(EncodingError, match="the limit is 1,000 bytes"):
        start_workflow(ECHO, "w", big, backend)
    assert backend.load_run("w") is None


def test_a_result_over_the_backends_limit_fails_the_step_at_once_naming_size_and_limit():
    """A step returning more than the backend stores fails once, not retried; the run ends failed."""
    calls = []

    @task(retries=RetryPolicy(max_retries=5, initial_delay_secs=0))
    def export(_: Any) -> str:
        calls.append(1)
        return "x" * 5_000

    status = run_durable_workflow(Flow("export").then(export).build(), "w", {}, small_backend())
    assert status.state is RunState.FAILED
    assert len(calls) == 1
    step = status.step("export")
    assert step.result_json is None
    assert step.error is not None
    assert step.error.error_type == "EncodingError"
    assert not step.error.retryable
    assert "result of step 'export' is 5,002 bytes as JSON; the limit is 1,000 bytes" in step.error.message


def test_an_oversized_result_is_undone_like_any_failed_step():
    """The steps before the oversized one are compensated: it is an ordinary, final step failure."""
    undone = []

    @task(compensate=lambda result: undone.append(result))
    def reserve(_: Any) -> str:
        return "res-1"

    @task
    def export(_: Any) -> str:
        return "x" * 5_000

    workflow = Flow("export-undo").then(reserve).then(export).build()
    status = run_durable_workflow(workflow, "w", {}, small_backend())
    assert status.state is RunState.COMPENSATED
    assert undone == ["res-1"]


def test_values_under_the_limit_run_as_before():
    """A run whose values fit completes on a backend with a limit."""
    status = run_durable_workflow(ECHO, "w", {"blob": "x" * 900}, small_backend())
    assert status.is_completed()
