"""The workflow registry: versions side by side, newest first, namespaces, and starting a workflow by name."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from conveyor import (
    DefinitionError,
    Flow,
    InMemoryBackend,
    InvalidInputError,
    Registry,
    RunState,
    Saga,
    Workflow,
    run_by_name,
    step,
    task,
)
from conveyor.definition.registry import UnknownWorkflowError, qualified_name, version_key


def workflow(name: str, version: str, label: str = "") -> Workflow:
    """A one-step workflow whose output says which version ran."""
    answer = label or f"{name}@{version}"
    return Flow(name, version=version).then(task(name="answer")(lambda _input: answer)).build()


def test_get_without_a_version_returns_the_newest_comparing_numbers_as_numbers() -> None:
    """1.0.10 is newer than 1.0.9 and 1.0.2, whatever the registration order."""
    registry = Registry()
    for version in ("1.0.9", "1.0.10", "1.0.2"):
        registry.register(workflow("checkout", version))
    assert registry.get("checkout").version == "1.0.10"
    assert registry.versions("checkout") == ("1.0.2", "1.0.9", "1.0.10")


def test_get_with_a_version_returns_that_version() -> None:
    """Several versions coexist; each can be asked for."""
    registry = Registry()
    old = registry.register(workflow("checkout", "1.0.0"))
    registry.register(workflow("checkout", "2.0.0"))
    assert registry.get("checkout", "1.0.0") is old


def test_an_unknown_version_lists_the_registered_versions() -> None:
    """Asking for a version that is not there names the ones that are."""
    registry = Registry()
    registry.register(workflow("checkout", "1.0.0"))
    registry.register(workflow("checkout", "1.1.0"))
    with pytest.raises(
        UnknownWorkflowError, match=r"no version '3\.0'; registered versions: 1\.0\.0, 1\.1\.0"
    ):
        registry.get("checkout", "3.0")


def test_an_unknown_name_is_a_definition_error_listing_what_is_registered() -> None:
    """The error names every registered namespace/name and its versions."""
    registry = Registry()
    registry.register(workflow("checkout", "1"))
    registry.register(workflow("refund", "2"), namespace="payments")
    with pytest.raises(UnknownWorkflowError) as raised:
        registry.get("chekout")
    message = str(raised.value)
    assert "no workflow 'chekout' is registered" in message
    assert "default/checkout (1), payments/refund (2)" in message
    assert isinstance(raised.value, DefinitionError)
    assert isinstance(raised.value, LookupError)


def test_an_empty_registry_says_none_is_registered() -> None:
    """Looking up in an empty registry says so."""
    with pytest.raises(UnknownWorkflowError, match="registered: none"):
        Registry().get("checkout")


def test_registering_the_same_key_again_replaces_it() -> None:
    """A reloaded module registers its workflow again; the new one wins, no error."""
    registry = Registry()
    registry.register(workflow("checkout", "1", label="first"))
    second = registry.register(workflow("checkout", "1", label="second"))
    assert registry.get("checkout") is second
    assert len(registry) == 1
    assert registry.for_run("checkout", "1") is second


def test_the_same_name_in_two_namespaces_needs_the_namespace() -> None:
    """Without namespace= a name in two namespaces is ambiguous; with it, each is found."""
    registry = Registry()
    shop = registry.register(workflow("shop.checkout", "1"), namespace="shop", name="checkout")
    b2b = registry.register(workflow("b2b.checkout", "1"), namespace="b2b", name="checkout")
    with pytest.raises(UnknownWorkflowError, match=r"several namespaces \(b2b, shop\); pass namespace="):
        registry.get("checkout")
    assert registry.get("checkout", namespace="shop") is shop
    assert registry.get("checkout", namespace="b2b") is b2b
    with pytest.raises(UnknownWorkflowError, match="in namespace 'retail'"):
        registry.get("checkout", namespace="retail")


def test_a_name_in_one_namespace_is_found_without_naming_it() -> None:
    """If only one namespace has the name, namespace= may be left out."""
    registry = Registry()
    found = registry.register(
        workflow("ecommerce.process_order", "1.0.0"), namespace="ecommerce", name="process_order"
    )
    assert registry.get("process_order") is found


def test_two_keys_may_not_share_the_name_and_version_a_run_records() -> None:
    """Runs record the workflow's own name and version, so two entries with the same pair are refused."""
    registry = Registry()
    registry.register(workflow("checkout", "1"), namespace="shop")
    with pytest.raises(DefinitionError, match="already registered as shop/checkout"):
        registry.register(workflow("checkout", "1"), namespace="b2b")


def test_for_run_finds_the_workflow_of_a_recorded_run() -> None:
    """A worker holding a run's recorded name and version gets the workflow back."""
    registry = Registry()
    built = registry.register(
        workflow("ecommerce.process_order", "1.0.0"), namespace="ecommerce", name="process_order"
    )
    status = registry.run("process_order", None, backend=InMemoryBackend(), workflow_id="w1")
    assert registry.for_run(status.workflow_name, status.workflow_version) is built
    with pytest.raises(UnknownWorkflowError, match=r"no registered workflow builds runs of 'x' v1"):
        registry.for_run("x", "1")


def test_qualified_name_leaves_the_default_namespace_out() -> None:
    """Workflows of the default namespace keep their name; others are prefixed with their namespace."""
    assert qualified_name("default", "checkout") == "checkout"
    assert qualified_name("ecommerce", "process_order") == "ecommerce.process_order"


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.0.9", "1.0.10"),
        ("1.9", "1.10"),
        ("1.10", "2"),
        ("1.0.0-rc1", "1.0.0"),
        ("1.0.0-rc2", "1.0.0-rc10"),
        ("v1.2", "v1.3"),
        ("2024.1", "2024.12"),
    ],
)
def test_versions_order_as_people_read_them(older: str, newer: str) -> None:
    """Numeric parts compare as numbers; a pre-release comes before its release."""
    assert version_key(older) < version_key(newer)


def test_trailing_zeros_do_not_make_a_version_newer() -> None:
    """1.0 and 1.0.0 are equally new (only the text breaks the tie)."""
    assert version_key("1.0")[:2] == version_key("1.0.0")[:2]


def test_run_by_name_starts_the_newest_version_durably_and_never_twice() -> None:
    """run_by_name runs the newest version in the backend; the same workflow_id returns that run."""
    registry = Registry()
    registry.register(workflow("checkout", "1.0.9"))
    registry.register(workflow("checkout", "1.0.10"))
    backend = InMemoryBackend()
    status = run_by_name("checkout", {"cart": 1}, backend=backend, workflow_id="order-1", registry=registry)
    assert status.state is RunState.COMPLETED
    assert status.output() == "checkout@1.0.10"
    assert status.workflow_version == "1.0.10"
    again = run_by_name("checkout", {"cart": 1}, backend=backend, workflow_id="order-1", registry=registry)
    assert again.created_at == status.created_at
    older = run_by_name("checkout", None, backend=backend, version="1.0.9", registry=registry)
    assert older.output() == "checkout@1.0.9"
    assert older.workflow_id.startswith("checkout-")


def test_nothing_registers_itself_when_it_is_declared() -> None:
    """Declaring a flow or a workflow class registers it nowhere: every registry starts empty."""

    class Declared(Saga):
        @step
        def only(self) -> str:
            return "ran"

    workflow("declared-flow", "1")
    assert len(Registry()) == 0
    with pytest.raises(UnknownWorkflowError):
        run_by_name("Declared", None, backend=InMemoryBackend(), registry=Registry())


class Cart(pydantic.BaseModel):
    items: int


def test_run_by_name_refuses_bad_input_before_anything_is_stored() -> None:
    """The workflow's input schema is checked before the run is recorded."""
    registry = Registry()
    registry.register(Flow("typed", input_schema=Cart).then(task(name="echo")(lambda cart: cart)).build())
    backend = InMemoryBackend()
    with pytest.raises(InvalidInputError, match="field 'items'"):
        run_by_name("typed", {"items": "many"}, backend=backend, workflow_id="bad", registry=registry)
    assert backend.load_run("bad") is None


def test_only_built_workflows_and_real_names_can_be_registered() -> None:
    """Registering a Flow (not built) or with an empty namespace is a DefinitionError."""
    registry = Registry()
    flow: Any = Flow("x").then(task(name="a")(lambda v: v))
    with pytest.raises(DefinitionError, match="only a built workflow or a workflow class"):
        registry.register(flow)
    with pytest.raises(DefinitionError, match="a namespace must be a non-empty string"):
        registry.register(workflow("x", "1"), namespace="")


def test_iterating_lists_entries_sorted_by_namespace_name_and_version() -> None:
    """A registry iterates over its entries in a stable order, oldest version first."""
    registry = Registry()
    registry.register(workflow("b", "1.10"))
    registry.register(workflow("b", "1.9"))
    registry.register(workflow("a.z", "1"), namespace="a", name="z")
    assert [(e.namespace, e.name, e.version) for e in registry] == [
        ("a", "z", "1"),
        ("default", "b", "1.9"),
        ("default", "b", "1.10"),
    ]
