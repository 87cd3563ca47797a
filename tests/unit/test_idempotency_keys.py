"""Idempotency keys: stable across attempts, different for every step of every run, unchanged by upgrade."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from conveyor import Flow, InMemoryBackend, RetryPolicy, StepContext, run_durable_workflow, task


def key(
    workflow_id: str, step_name: str, *, generation: int = 0, undo: bool = False, attempt: int = 1
) -> str:
    """The idempotency key of one attempt."""
    return StepContext(
        workflow_id=workflow_id,
        workflow_name="w",
        step_name=step_name,
        attempt=attempt,
        correlation_id="c",
        is_compensation=undo,
        generation=generation,
    ).idempotency_key


def test_a_colon_in_the_run_or_the_step_no_longer_makes_two_keys_equal():
    """Run 'acme:42' step 'charge' and run 'acme' step '42:charge' both got 'acme:42:charge'."""
    assert key("acme:42", "charge") != key("acme", "42:charge")
    assert key("acme:42", "charge") == "acme%3A42:charge"
    assert key("acme", "42:charge") == "acme:42%3Acharge"


@pytest.mark.parametrize(
    ("workflow_id", "step_name", "options", "expected"),
    [
        ("order-1", "charge", {}, "order-1:charge"),
        ("order-1", "charge", {"generation": 1}, "order-1:charge:retry1"),
        ("order-1", "charge", {"undo": True}, "order-1:charge:undo"),
        ("order-1", "charge", {"generation": 12, "undo": True}, "order-1:charge:retry12:undo"),
        ("checkout-3f2a", "reserve stock", {}, "checkout-3f2a:reserve stock"),
        ("ordre-é", "débit", {}, "ordre-é:débit"),
    ],
)
def test_keys_without_a_colon_or_percent_sign_are_what_they_always_were(
    workflow_id, step_name, options, expected
):
    """Runs in flight across an upgrade keep their keys: only ':' and '%' inside a part are escaped."""
    assert key(workflow_id, step_name, **options) == expected


@pytest.mark.parametrize(
    ("workflow_id", "step_name", "expected"),
    [
        ("a%b", "s", "a%25b:s"),
        ("a", "50%", "a:50%25"),
        ("%3A", "s", "%253A:s"),
        (":", ":", "%3A:%3A"),
    ],
)
def test_colons_and_percent_signs_inside_a_part_are_percent_escaped(workflow_id, step_name, expected):
    """':' becomes %3A and '%' becomes %25, so an escaped part never contains the separator."""
    assert key(workflow_id, step_name) == expected


def test_the_key_is_the_same_on_every_attempt():
    """Attempts 1, 2 and 50 of a step share its key; so do the attempts of its undo."""
    assert len({key("acme:42", "charge", attempt=n) for n in (1, 2, 50)}) == 1
    assert len({key("acme:42", "charge", attempt=n, undo=True) for n in (1, 2, 50)}) == 1


TRICKY = [
    "a",
    ":",
    "%",
    "%3A",
    "%25",
    "a:b",
    "a%b",
    "undo",
    ":undo",
    "retry1",
    ":retry1",
    "a:retry1:undo",
    "::",
]
ALPHABET = ["a", ":", "%", "3", "A"]


def _parts() -> list[str]:
    """Every string of one to three characters over ALPHABET, and the tricky table."""
    short = ["".join(chars) for size in (1, 2, 3) for chars in itertools.product(ALPHABET, repeat=size)]
    return sorted(set(short + TRICKY))


def test_no_two_different_steps_share_a_key_exhaustively_over_a_small_alphabet():
    """Every (workflow_id, step_name, generation, undo) over short strings of 'a:%3A' and a table of
    look-alikes of the suffixes gives a different key: 159,414 keys, no collision."""
    parts = _parts()
    seen: dict[str, tuple[Any, ...]] = {}
    for workflow_id, step_name in itertools.product(parts, repeat=2):
        for generation, undo in itertools.product((0, 1, 12), (False, True)):
            made = key(workflow_id, step_name, generation=generation, undo=undo)
            other = seen.setdefault(made, (workflow_id, step_name, generation, undo))
            assert other == (workflow_id, step_name, generation, undo), f"{made!r} twice"
    assert len(seen) == len(parts) ** 2 * 6


def test_two_runs_whose_keys_collided_get_different_keys_when_they_run():
    """In the engine, run 'acme:42' step 'charge' and run 'acme' step '42:charge' pass different keys."""
    seen: list[str] = []

    def record(_: Any, context: StepContext) -> None:
        seen.append(context.idempotency_key)

    backend = InMemoryBackend()
    run_durable_workflow(Flow("a").then(task(name="charge")(record)).build(), "acme:42", {}, backend)
    run_durable_workflow(Flow("b").then(task(name="42:charge")(record)).build(), "acme", {}, backend)
    assert seen == ["acme%3A42:charge", "acme:42%3Acharge"]


def test_a_retried_step_sees_one_key_across_its_attempts_in_the_engine():
    """A step that fails twice and then succeeds saw the same key on all three attempts."""
    seen: list[str] = []

    @task(retries=RetryPolicy(max_retries=2, initial_delay_secs=0))
    def charge(_: Any, context: StepContext) -> str:
        seen.append(context.idempotency_key)
        if len(seen) < 3:
            raise ConnectionError("the gateway timed out")
        return "paid"

    status = run_durable_workflow(Flow("pay").then(charge).build(), "order:7", {}, InMemoryBackend())
    assert status.is_completed()
    assert seen == ["order%3A7:charge"] * 3
