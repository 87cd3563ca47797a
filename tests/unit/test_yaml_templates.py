"""YAML workflow templates (seed 002): loaded with Python handlers, validated at load time, run durably."""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conveyor import (
    FakeClock,
    InMemoryBackend,
    InvalidInputError,
    Registry,
    RunState,
    SqliteBackend,
    StepState,
    TemplateError,
    get_workflow_status,
    load_template,
    load_templates,
    retry_workflow,
    run_by_name,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SEED_TEMPLATE = FIXTURES / "templates" / "order_processing_handler.yaml"

CHECKOUT = {
    "cart_items": [{"product_id": 1, "quantity": 2, "price": 10.0}, {"product_id": 2, "quantity": 1}],
    "payment_info": {"token": "tok_visa", "amount": 49.14},
    "customer_info": {"email": "sarah@growthcorp.example", "name": "Sarah"},
}


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The seed's five step handlers (tests/fixtures/ecommerce_handlers.py), with a fresh shop."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    module = importlib.import_module("ecommerce_handlers")
    module.reset_shop()
    return module


@pytest.fixture
def registry() -> Registry:
    return Registry()


def write(directory: Path, text: str, name: str = "template.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


# -- seed 002's template ---------------------------------------------------------------------------------


def test_the_seed_template_loads_unchanged_with_python_handlers(
    handlers: ModuleType, registry: Registry
) -> None:
    """process_order loads as written in the seed: its steps, dependencies, retries and timeout."""
    workflow = load_template(SEED_TEMPLATE, handlers=handlers, registry=registry)
    assert workflow.name == "ecommerce.process_order"
    assert workflow.version == "1.0.0"
    assert workflow.description == "Reliable e-commerce checkout workflow with automatic retry and recovery"
    assert workflow.step_names == (
        "validate_cart",
        "process_payment",
        "update_inventory",
        "create_order",
        "send_confirmation",
    )
    attempts = {step.name: step.retries.max_attempts for step in workflow.steps}
    assert attempts == {
        "validate_cart": 3,
        "process_payment": 3,
        "update_inventory": 2,
        "create_order": 3,
        "send_confirmation": 5,
    }
    assert workflow.step("process_payment").timeout_seconds == 30.0
    assert workflow.step("validate_cart").depends_on == ()
    assert workflow.step("update_inventory").depends_on == ("validate_cart", "process_payment")
    assert workflow.step("process_payment").task.description == "Charge payment method"
    assert registry.get("process_order", "1.0.0", namespace="ecommerce") is workflow


def test_the_seed_workflow_runs_durably_on_sqlite(
    tmp_path: Path, handlers: ModuleType, registry: Registry
) -> None:
    """Started by name, the checkout completes; its output is every step's result, stored in SQLite."""
    load_template(SEED_TEMPLATE, handlers=handlers, registry=registry)
    database = tmp_path / "tasker.db"
    with SqliteBackend(database) as backend:
        status = run_by_name(
            "process_order", CHECKOUT, backend=backend, workflow_id="checkout-1", registry=registry
        )
    assert status.state is RunState.COMPLETED
    output = status.output()
    assert list(output) == list(registry.get("process_order").step_names)
    assert output["validate_cart"]["total"] == pytest.approx(49.14)
    assert output["create_order"] == {"order_id": "order_1"}
    assert handlers.shop.emails == [{"to": "sarah@growthcorp.example", "order_id": "order_1"}]
    assert handlers.shop.products[1].stock == 3
    with SqliteBackend(database) as reopened:
        stored = get_workflow_status("checkout-1", reopened)
    assert stored.state is RunState.COMPLETED
    assert stored.step("process_payment").result["payment_id"] == "pi_1"


def test_input_that_breaks_the_schema_is_refused_before_anything_is_stored(
    tmp_path: Path, handlers: ModuleType, registry: Registry
) -> None:
    """A missing and a mistyped field are both named; the backend holds no run."""
    load_template(SEED_TEMPLATE, handlers=handlers, registry=registry)
    bad = {**CHECKOUT, "cart_items": [{"product_id": "one", "quantity": 1}]}
    del bad["payment_info"]
    with SqliteBackend(tmp_path / "tasker.db") as backend:
        with pytest.raises(InvalidInputError) as raised:
            run_by_name("process_order", bad, backend=backend, workflow_id="bad-1", registry=registry)
        assert backend.load_run("bad-1") is None
    assert raised.value.fields == ["cart_items.0.product_id", "payment_info"]
    message = str(raised.value)
    assert "field 'cart_items.0.product_id': is not of type 'integer'" in message
    assert "'one'" not in message  # the value itself is never repeated: it could be a secret
    assert "field 'payment_info': is required" in message
    assert handlers.shop.calls == []


def failed_checkout(tmp_path: Path, handlers: ModuleType, registry: Registry) -> SqliteBackend:
    """A checkout whose update_inventory fails on both of its attempts."""
    load_template(SEED_TEMPLATE, handlers=handlers, registry=registry)
    handlers.shop.inventory_down = True
    backend = SqliteBackend(tmp_path / "tasker.db")
    clock = FakeClock()
    status = run_by_name(
        "process_order", CHECKOUT, backend=backend, workflow_id="task-1", registry=registry, clock=clock
    )
    assert status.state is RunState.FAILED
    error = status.error()
    assert error is not None
    assert (error.step_name, error.attempts) == ("update_inventory", 2)
    assert error.message == "Inventory service timeout after 30 seconds"
    assert clock.sleeps == [1.0]
    return backend


def test_a_failed_run_is_retried_without_rerunning_completed_steps(
    tmp_path: Path, handlers: ModuleType, registry: Registry
) -> None:
    """After the inventory service is back, retry re-runs update_inventory on; cart and payment are kept."""
    with failed_checkout(tmp_path, handlers, registry) as backend:
        handlers.shop.inventory_down = False
        retried = registry.retry("task-1", backend=backend, clock=FakeClock())
    assert retried.state is RunState.COMPLETED
    assert handlers.shop.calls == [
        "validate_cart",
        "process_payment",
        "update_inventory",
        "update_inventory",
        "update_inventory",
        "create_order",
        "send_confirmation",
    ]
    assert len(handlers.shop.charges) == 1
    assert retried.step("update_inventory").attempts == 1


def test_retry_workflow_also_retries_it_given_a_workflow_without_the_input_check(
    tmp_path: Path, handlers: ModuleType, registry: Registry
) -> None:
    """retry_workflow keeps validate_cart and process_payment (see the next test for the schema check)."""
    with failed_checkout(tmp_path, handlers, registry) as backend:
        handlers.shop.inventory_down = False
        retried = retry_workflow(registry.get("process_order"), "task-1", backend, clock=FakeClock())
    assert retried.state is RunState.COMPLETED
    assert handlers.shop.calls.count("validate_cart") == 1
    assert handlers.shop.calls.count("process_payment") == 1


def test_retry_workflow_retries_a_workflow_that_has_an_input_schema(
    tmp_path: Path, handlers: ModuleType, registry: Registry
) -> None:
    """retry_workflow must not check the stored run's input against the schema again."""
    with failed_checkout(tmp_path, handlers, registry) as backend:
        handlers.shop.inventory_down = False
        retried = retry_workflow(registry.get("process_order"), "task-1", backend, clock=FakeClock())
    assert retried.state is RunState.COMPLETED


def test_a_declined_card_fails_at_once_and_stops_the_run(handlers: ModuleType, registry: Registry) -> None:
    """A NonRetryableError from a handler is not retried; the steps after it never run."""
    load_template(SEED_TEMPLATE, handlers=handlers, registry=registry)
    handlers.shop.declined_tokens.add("tok_visa")
    status = run_by_name("process_order", CHECKOUT, backend=InMemoryBackend(), registry=registry)
    assert status.state is RunState.FAILED
    assert status.step("process_payment").attempts == 1
    assert status.step("create_order").state is StepState.PENDING
    assert "Payment failed" in str(status.error())


# -- handlers --------------------------------------------------------------------------------------------


class Record:
    """Records what each step receives."""

    seen: dict[str, tuple[Any, Any]] = {}  # noqa: RUF012 (reset by each test)


class First:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        Record.seen["first"] = (context, results)
        return {"n": context["n"] + 1}


class Second:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        Record.seen["second"] = (context, results)
        return {"n": results["first"]["n"] * 10}


class Third:
    async def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        Record.seen["third"] = (context, results)
        return {"sum": results["first"]["n"] + results["second"]["n"]}


CHAIN = """
    name: chain
    version: "2"
    step_templates:
      - name: first
        handler_class: handlers.First
      - name: second
        handler_class: handlers.Second
        depends_on_step: first
      - name: third
        handler_class: handlers.Third
        depends_on_steps: [second]
"""

HANDLERS = {"handlers.First": First, "handlers.Second": Second, "handlers.Third": Third}


def test_handlers_receive_the_input_and_the_results_of_the_steps_before_them(
    tmp_path: Path, registry: Registry
) -> None:
    """A first step gets results={}; later ones get every upstream result by step name; async works."""
    Record.seen = {}
    workflow = load_template(write(tmp_path, CHAIN), handlers=HANDLERS, registry=registry)
    status = registry.run("chain", {"n": 1}, backend=InMemoryBackend())
    assert status.output() == {"first": {"n": 2}, "second": {"n": 20}, "third": {"sum": 22}}
    assert Record.seen["first"] == ({"n": 1}, {})
    assert Record.seen["second"] == ({"n": 1}, {"first": {"n": 2}})
    assert Record.seen["third"] == ({"n": 1}, {"first": {"n": 2}, "second": {"n": 20}})
    assert workflow.name == "chain"
    assert registry.get("chain").version == "2"


def test_handler_classes_are_imported_from_dotted_or_ruby_style_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without handlers=, 'pkg.mod.Class' is imported, and 'Shopfront::StepHandlers::Echo' too."""
    package = tmp_path / "shopfront"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "step_handlers.py").write_text(
        "class EchoHandler:\n    def process(self, context, results):\n        return {'echo': context}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for handler_class in ("shopfront.step_handlers.EchoHandler", "Shopfront::StepHandlers::EchoHandler"):
        path = write(
            tmp_path,
            f"""
            name: echo
            step_templates:
              - name: echo
                handler_class: {handler_class}
            """,
        )
        workflow = load_template(path)
        assert registry_free_run(workflow, {"a": 1}) == {"echo": {"echo": {"a": 1}}}


def registry_free_run(workflow: Any, payload: Any) -> Any:
    registry = Registry()
    registry.register(workflow)
    return registry.run(workflow.name, payload, backend=InMemoryBackend()).output()


class Reserve:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        return {"reservation_id": "res_123"}

    def undo(self, result: dict[str, Any], context: dict[str, Any], results: dict[str, Any]) -> None:
        Record.seen["undo"] = (result, context)


class Decline:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("card declined")


class NotADict:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> list[int]:
        return [1, 2]


def test_a_handler_undo_runs_when_a_later_step_fails_for_good(tmp_path: Path) -> None:
    """undo(result, context, results) is the step's compensation; retryable: false fails at once."""
    Record.seen = {}
    path = write(
        tmp_path,
        """
        name: reserve_then_pay
        step_templates:
          - name: reserve
            handler_class: Shop::Reserve
          - name: pay
            handler_class: Shop::Decline
            depends_on_step: reserve
            retryable: false
        """,
    )
    workflow = load_template(
        path, handlers={"Shop::Reserve": Reserve, "Shop::Decline": Decline}, registry=None
    )
    registry = Registry()
    registry.register(workflow)
    status = registry.run("reserve_then_pay", {"order": 7}, backend=InMemoryBackend())
    assert status.state is RunState.COMPENSATED
    assert status.step("pay").attempts == 1
    assert Record.seen["undo"] == ({"reservation_id": "res_123"}, {"order": 7})


def test_a_handler_returning_something_other_than_a_dict_fails_the_step_clearly(tmp_path: Path) -> None:
    """Step results are dicts: anything else fails the step at once, saying so."""
    path = write(tmp_path, "name: odd\nstep_templates:\n  - name: odd\n    handler_class: x.NotADict\n")
    workflow = load_template(path, handlers={"x.NotADict": NotADict})
    registry = Registry()
    registry.register(workflow)
    status = registry.run("odd", {}, backend=InMemoryBackend(), clock=FakeClock())
    error = status.error()
    assert error is not None
    assert error.attempts == 1
    assert "returned list; a step's result must be a dict" in error.message


# -- load-time errors ------------------------------------------------------------------------------------


class NoProcess:
    def run(self, context: dict[str, Any]) -> None: ...


class WrongProcess:
    def process(self, context: dict[str, Any]) -> None: ...


ERROR_HANDLERS = {"h.First": First, "h.NoProcess": NoProcess, "h.WrongProcess": WrongProcess}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: w\nstep_templates:\n  - name: a\n    handler_class: h.Missing\n",
            r"template.yaml:4: step 'a', field 'handler_class': handler class 'h.Missing' is not in the "
            r"handlers given",
        ),
        (
            "name: w\nstep_templates:\n  - handler_class: h.First\n",
            r"template.yaml:3: step '#1': the field 'name' is required",
        ),
        (
            "name: w\nstep_templates:\n  - name: a\n    handler_class: h.First\n    depends_on_stpe: b\n",
            r"template.yaml:5: step 'a', field 'depends_on_stpe': unknown field in a step; the known fields",
        ),
        (
            "name: w\nstep_templates:\n  - name: a\n    handler_class: h.First\n    depends_on_step: b\n",
            r"template.yaml:5: step 'a', field 'depends_on_step': depends on 'b', which is not a step of "
            r"this template \(steps: a\)",
        ),
        (
            "name: w\nstep_templates:\n"
            "  - name: a\n    handler_class: h.First\n    depends_on_step: b\n"
            "  - name: b\n    handler_class: h.First\n    depends_on_steps: [a]\n",
            r"template.yaml:5: step 'a', field 'depends_on_step': the dependencies form a cycle: a -> b -> a",
        ),
        (
            "name: w\nstep_templates:\n"
            "  - name: a\n    handler_class: h.First\n  - name: a\n    handler_class: h.First\n",
            r"template.yaml:5: step 'a', field 'name': a step called 'a' is declared twice",
        ),
        (
            "name: w\nschema:\n  type: object\n  properties:\n    n:\n      type: integr\n"
            "step_templates:\n  - name: a\n    handler_class: h.First\n",
            r"template.yaml:6: field 'schema': invalid JSON Schema at properties.n.type: 'integr' is not",
        ),
        (
            "name: w\nstep_templates:\n  - name: a\n    handler_class: h.First\n    retry_limit: 0\n",
            r"template.yaml:5: step 'a', field 'retry_limit': must be a whole number of attempts, at least 1",
        ),
        (
            "name: w\nstep_templates:\n  - name: a\n    handler_class: h.First\n    timeout: -5\n",
            r"template.yaml:5: step 'a', field 'timeout': must be a positive number of milliseconds",
        ),
        (
            "name: w\nstep_templates:\n  - name: a\n    handler_class: h.First\n    retryable: sometimes\n",
            r"template.yaml:5: step 'a', field 'retryable': must be true or false",
        ),
        (
            "name: w\nversion: 1.10\nstep_templates:\n  - name: a\n    handler_class: h.First\n",
            r"template.yaml:2: field 'version': 1.1 was read as a number; quote it",
        ),
        (
            "name: w\nstep_templates:\n  - name: a\n    handler_class: h.NoProcess\n",
            r"template.yaml:4: step 'a', field 'handler_class': handler 'h.NoProcess' has no process",
        ),
        (
            "name: w\nstep_templates:\n  - name: a\n    handler_class: h.WrongProcess\n",
            r"template.yaml:4: step 'a', field 'handler_class': WrongProcess.process must take "
            r"\(self, context, results\)",
        ),
        ("name: w\nstep_templates: []\n", r"template.yaml:2: field 'step_templates': step_templates must be"),
        (
            "name: w\nstep_template: []\n",
            r"template.yaml:2: field 'step_template': unknown field in a workflow",
        ),
        (
            "name: w\nname: v\nstep_templates: []\n",
            r"template.yaml:2: invalid YAML: while reading a mapping found the key 'name' twice",
        ),
        ("name: w\nstep_templates:\n  - name: [a\n", r"template.yaml:4: invalid YAML"),
        ("- just\n- a list\n", r"template.yaml:1: a workflow template must be a mapping, not list"),
    ],
)
def test_mistakes_are_refused_at_load_time_naming_file_line_step_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    """Each mistake is a TemplateError (a DefinitionError) that says where it is and what is wrong."""
    path = write(tmp_path, text)
    with pytest.raises(TemplateError, match=message) as raised:
        load_template(path, handlers=ERROR_HANDLERS)
    assert raised.value.file == str(path)


def test_an_unimportable_handler_names_the_module_that_is_missing(tmp_path: Path) -> None:
    """Without handlers=, a handler_class whose module does not exist says which one."""
    path = write(tmp_path, "name: w\nstep_templates:\n  - name: a\n    handler_class: Nowhere::Handler\n")
    with pytest.raises(TemplateError, match=r":4: step 'a', field 'handler_class': .*no module 'nowhere'"):
        load_template(path)


def test_a_module_of_handlers_is_searched_by_class_name(tmp_path: Path, handlers: ModuleType) -> None:
    """handlers=<module> finds 'Ecommerce::StepHandlers::X' as the module's class X, or says it has none."""
    path = write(tmp_path, "name: w\nstep_templates:\n  - name: a\n    handler_class: Ecommerce::Missing\n")
    with pytest.raises(TemplateError, match="module 'ecommerce_handlers' has no handler class 'Missing'"):
        load_template(path, handlers=handlers)


# -- directories and versions ----------------------------------------------------------------------------


def test_a_directory_of_templates_registers_every_version(tmp_path: Path, registry: Registry) -> None:
    """load_templates reads *.yaml and *.yml recursively; get() returns the newest version."""
    for version, folder in (("1.0.9", "old"), ("1.0.10", "new")):
        (tmp_path / folder).mkdir()
        write(tmp_path / folder, CHAIN.replace('version: "2"', f"version: {version}"), name="chain.yml")
    write(tmp_path, "not: a template", name="notes.txt")
    loaded = load_templates(tmp_path, handlers=HANDLERS, registry=registry)
    assert sorted(workflow.version for workflow in loaded) == ["1.0.10", "1.0.9"]
    assert registry.get("chain").version == "1.0.10"
    assert registry.versions("chain") == ("1.0.9", "1.0.10")


def test_two_files_declaring_the_same_version_are_refused_and_nothing_is_registered(
    tmp_path: Path, registry: Registry
) -> None:
    """The same (namespace, name, version) in two files is an error naming both files."""
    write(tmp_path, CHAIN, name="a.yaml")
    write(tmp_path, CHAIN, name="b.yaml")
    with pytest.raises(
        TemplateError, match=r"b\.yaml: workflow default/chain v2 is also declared in .*a\.yaml"
    ):
        load_templates(tmp_path, handlers=HANDLERS, registry=registry)
    assert len(registry) == 0
