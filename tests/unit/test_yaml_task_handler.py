"""A YAML template's ``task_handler_class``: its ``step_settings`` hook is honoured; a hook conveyor does
not call is an error naming it, never silence."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from conveyor import InMemoryBackend, TemplateError, load_template
from conveyor.definition.registry import Registry
from conveyor.definition.settings import workflow_for_run
from conveyor.runtime.adapters import run_by_name

FIXTURES = Path(__file__).parent.parent / "fixtures"
SEED_TEMPLATE = FIXTURES / "templates" / "order_processing_handler.yaml"

TEMPLATE = """
name: checkout
task_handler_class: shop.CheckoutHandler
step_templates:
  - name: charge
    handler_class: shop.Charge
    retry_limit: 1
"""


class Charge:
    def process(self, context: dict, results: dict) -> dict:
        return {"paid": True}


@pytest.fixture
def handlers() -> ModuleType:
    import sys

    sys.path.insert(0, str(FIXTURES))
    try:
        import ecommerce_handlers
    finally:
        sys.path.remove(str(FIXTURES))
    return ecommerce_handlers


def write(tmp_path: Path, handler: type) -> tuple[Path, dict[str, type]]:
    path = tmp_path / "checkout.yaml"
    path.write_text(textwrap.dedent(TEMPLATE).lstrip())
    return path, {"shop.CheckoutHandler": handler, "shop.Charge": Charge}


def test_the_seed_templates_task_handler_gives_express_orders_a_15_s_payment_timeout_and_a_retry(
    handlers: ModuleType,
) -> None:
    """Seed 002's OrderProcessingHandler, as step_settings: express runs only, the others keep the YAML's."""
    workflow = load_template(SEED_TEMPLATE, handlers=handlers)
    express = workflow_for_run(workflow, '{"priority": "express"}')
    payment = express.step("process_payment")
    assert (payment.timeout_seconds, payment.retries.max_retries) == (15, 1)
    assert express.step("send_confirmation").retries.max_retries == 1
    assert workflow.step("process_payment").timeout_seconds == 30
    assert workflow_for_run(workflow, '{"priority": "standard"}') is workflow


def test_a_task_handler_without_hooks_is_accepted(tmp_path: Path) -> None:
    """A class that defines nothing conveyor calls changes nothing."""

    class CheckoutHandler:
        """Named by the template; nothing to call."""

    path, found = write(tmp_path, CheckoutHandler)
    assert load_template(path, handlers=found).step_settings is None


@pytest.mark.parametrize(
    ("method", "words"),
    [
        ("establish_step_dependencies_and_defaults", "conveyor calls step_settings(self, context)"),
        ("update_annotations", "step.annotate(name, content)"),
        ("before_run", "the hooks conveyor calls are step_settings"),
    ],
)
def test_a_hook_conveyor_does_not_call_is_a_template_error_naming_it(
    tmp_path: Path, method: str, words: str
) -> None:
    """Tasker's hook names, and any other public method, are refused with what to write instead."""
    handler = type("CheckoutHandler", (), {method: lambda self, *args: None})
    path, found = write(tmp_path, handler)
    with pytest.raises(
        TemplateError, match=rf"CheckoutHandler\.{method} is not a hook conveyor calls"
    ) as error:
        load_template(path, handlers=found)
    assert words in str(error.value)
    assert error.value.field == "task_handler_class"


def test_a_step_settings_hook_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    """step_settings must take (self, context) and be a plain def."""

    class CheckoutHandler:
        async def step_settings(self, context: dict) -> dict:
            return {}

    path, found = write(tmp_path, CheckoutHandler)
    with pytest.raises(TemplateError, match="must be a plain def taking"):
        load_template(path, handlers=found)


def test_a_template_run_uses_its_handlers_settings(tmp_path: Path) -> None:
    """A run of the template whose hook gives charge an impossible retry count is refused when recorded."""

    class CheckoutHandler:
        def step_settings(self, context: dict) -> dict:
            return {"charge": {"retries": -1}} if context.get("broken") else {"charge": {"retries": 2}}

    path, found = write(tmp_path, CheckoutHandler)
    registry = Registry()
    load_template(path, handlers=found, registry=registry)
    status = run_by_name("checkout", {}, registry=registry, backend=InMemoryBackend())
    assert status.is_completed()
    with pytest.raises(Exception, match="whole number of retries"):
        run_by_name("checkout", {"broken": True}, registry=registry, backend=InMemoryBackend())
