"""Class-based workflows: seed 000's reactors written as conveyor Saga classes, and the rules they rely on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import pytest

from conveyor import (
    Conveyor,
    DefinitionError,
    FakeClock,
    InMemoryBackend,
    InvalidInputError,
    NonRetryableError,
    RetryPolicy,
    RunState,
    SqliteBackend,
    StepContext,
    StepState,
    Workflow,
)
from conveyor.definition.arguments import from_input, from_result
from conveyor.definition.registry import Registry
from conveyor.definition.steps import step
from conveyor.saga import Saga, SagaResult

# -- the shop the reactors work against (the seed's Order, InventoryService, PaymentService, EmailService) --


class Item(pydantic.BaseModel):
    product_id: int
    quantity: int


class Customer(pydantic.BaseModel):
    email: str
    card_token: str


class Order(pydantic.BaseModel):
    id: str
    items: list[Item]
    total_cents: int
    currency: str = "EUR"
    customer: Customer
    status: str = "pending"
    payment_id: str | None = None


@dataclass
class Payment:
    success: bool
    id: str | None = None
    error: str | None = None


@dataclass
class Services:
    """Fakes of the seed's services; ``journal`` records every call that changes something."""

    orders: dict[str, Order] = field(default_factory=dict)
    stock: dict[int, int] = field(default_factory=lambda: {1: 10, 2: 10})
    journal: list[tuple[str, Any]] = field(default_factory=list)
    reservation_id: str | None = "res_123"
    payment: Payment = field(default_factory=lambda: Payment(success=True, id="pay_1"))
    confirm_succeeds: bool = True
    email_succeeds: bool = True

    def find_order(self, order_id: str) -> Order | None:
        return self.orders.get(order_id)

    def reserve_items(self, items: list[Item]) -> str | None:
        self.journal.append(("reserve_items", [item.product_id for item in items]))
        return self.reservation_id

    def release_reservation(self, reservation_id: str) -> None:
        self.journal.append(("release_reservation", reservation_id))

    def confirm_reservation(self, reservation_id: str) -> bool:
        self.journal.append(("confirm_reservation", reservation_id))
        return self.confirm_succeeds

    def restore_from_reservation(self, reservation_id: str) -> None:
        self.journal.append(("restore_from_reservation", reservation_id))

    def restore_order_items(self, order: Order) -> None:
        self.journal.append(("restore_order_items", order.id))

    def charge(self, *, amount: int, currency: str, card_token: str, description: str) -> Payment:
        self.journal.append(("charge", amount))
        return self.payment

    def refund(self, payment_id: str) -> None:
        self.journal.append(("refund", payment_id))

    def update_order(self, order_id: str, **changes: Any) -> None:
        self.orders[order_id] = self.orders[order_id].model_copy(update=changes)
        self.journal.append(("update_order", changes))

    def send_order_confirmation(self, *, to: str, order: Order, payment_id: str) -> bool:
        self.journal.append(("send_order_confirmation", to))
        return self.email_succeeds

    def undos(self) -> list[tuple[str, Any]]:
        names = {"release_reservation", "refund", "restore_from_reservation"}
        return [entry for entry in self.journal if entry[0] in names]


services = Services()


@pytest.fixture(autouse=True)
def shop(monkeypatch: pytest.MonkeyPatch) -> Services:
    """A fresh shop holding one pending order, 12345, for two items."""
    fresh = Services()
    fresh.orders["12345"] = Order(
        id="12345",
        items=[Item(product_id=1, quantity=2), Item(product_id=2, quantity=1)],
        total_cents=4599,
        customer=Customer(email="ada@example.com", card_token="tok_visa"),
    )
    monkeypatch.setattr(f"{__name__}.services", fresh)
    return fresh


# -- seed 000's reactors, as conveyor classes -------------------------------------------------------


class OrderInput(pydantic.BaseModel):
    """validate_args: required(:order_id).filled(:string)."""

    order_id: str = pydantic.Field(min_length=1)


ORDER = from_result("validate_order", "order")


class OrderProcessing(Saga):
    """Seed 000's OrderProcessingReactor: validate, check and reserve stock, charge, confirm."""

    input_schema = OrderInput
    retry_defaults = RetryPolicy(max_attempts=3, backoff="exponential", initial_delay_secs=2)

    @step
    def validate_order(self, order_id: str) -> dict[str, Order]:
        order = services.find_order(order_id)
        if order is None:
            raise NonRetryableError("Order not found")
        if order.status == "completed":
            raise NonRetryableError("Order already processed")
        if order.status == "cancelled":
            raise NonRetryableError("Order cancelled")
        return {"order": order}

    @step(order=ORDER)
    def check_inventory(self, order: Order) -> dict[str, Any]:
        unavailable = [
            {
                "product_id": item.product_id,
                "requested": item.quantity,
                "available": services.stock[item.product_id],
            }
            for item in order.items
            if services.stock[item.product_id] < item.quantity
        ]
        if unavailable:
            raise RuntimeError(f"Insufficient inventory: {unavailable}")
        return {"inventory_checked": True}

    @step(order=ORDER)
    def reserve_inventory(self, order: Order) -> dict[str, str]:
        reservation_id = services.reserve_items(order.items)
        if not reservation_id:
            raise RuntimeError("Inventory reservation failed")
        return {"reservation_id": reservation_id}

    @reserve_inventory.undo
    def release_reservation(self, reservation_id: str | None, **_: Any) -> None:
        if reservation_id:
            services.release_reservation(reservation_id)

    @step(order=ORDER, retries=RetryPolicy(max_attempts=2, backoff="fixed", initial_delay_secs=30))
    def process_payment(self, order: Order) -> dict[str, Any]:
        payment = services.charge(
            amount=order.total_cents,
            currency=order.currency,
            card_token=order.customer.card_token,
            description=f"Order #{order.id}",
        )
        if not payment.success:
            raise RuntimeError(f"Payment failed: {payment.error}")
        return {"payment_id": payment.id, "payment_amount": order.total_cents}

    @process_payment.undo
    def refund_payment(self, payment_id: str | None, **_: Any) -> None:
        if payment_id:
            services.refund(payment_id)

    @step(order=ORDER, reservation_id=from_result(reserve_inventory, "reservation_id"))
    def update_inventory(self, order: Order, reservation_id: str) -> dict[str, bool]:
        if not services.confirm_reservation(reservation_id):
            raise RuntimeError("Inventory update failed")
        return {"inventory_updated": True}

    @update_inventory.undo
    def restore_inventory(self, order: Order, reservation_id: str | None, **_: Any) -> None:
        if reservation_id:
            services.restore_from_reservation(reservation_id)

    @step(order=ORDER, payment_id=from_result(process_payment, "payment_id"))
    def update_order_status(self, order: Order, payment_id: str) -> dict[str, bool]:
        services.update_order(order.id, status="completed", payment_id=payment_id)
        return {"order_completed": True}

    @step(
        order=ORDER,
        payment_id=from_result(process_payment, "payment_id"),
        retries=RetryPolicy(max_attempts=3, backoff="linear", initial_delay_secs=10),
    )
    def send_confirmation(self, order: Order, payment_id: str) -> dict[str, bool]:
        if not services.send_order_confirmation(to=order.customer.email, order=order, payment_id=payment_id):
            raise RuntimeError("Confirmation email failed")
        return {"confirmation_sent": True}


class PartialOrderProcessing(OrderProcessing):
    """Seed 000's PartialOrderProcessingReactor: ship the items in stock, report the others."""

    def check_inventory(self, order: Order) -> dict[str, Any]:
        available, unavailable = self.partition_available_items(order.items)
        if available and unavailable:
            return {
                "partial_order": self.create_partial_order(order, available),
                "unavailable_items": unavailable,
            }
        if not available:
            raise NonRetryableError("No items available")
        return {"inventory_checked": True}

    def partition_available_items(self, items: list[Item]) -> tuple[list[Item], list[Item]]:
        available = [item for item in items if services.stock[item.product_id] >= item.quantity]
        return available, [item for item in items if item not in available]

    def create_partial_order(self, order: Order, items: list[Item]) -> Order:
        return order.model_copy(update={"id": f"{order.id}-partial", "items": items})


class OrderCancellation(Saga):
    """Seed 000's OrderCancellationReactor: refund and restock a completed order, then cancel it."""

    input_schema = OrderInput

    @step
    def load_order(self, order_id: str) -> dict[str, Order]:
        order = services.find_order(order_id)
        if order is None:
            raise NonRetryableError("Order not found")
        return {"order": order}

    @step(order=from_result(load_order, "order"))
    def cancel_order(self, order: Order) -> dict[str, bool]:
        if order.status == "completed":
            assert order.payment_id is not None
            services.refund(order.payment_id)
            services.restore_order_items(order)
        services.update_order(order.id, status="cancelled")
        return {"cancelled": True}


def run_order(saga: type[Saga] = OrderProcessing, clock: FakeClock | None = None) -> SagaResult:
    return saga.run(order_id="12345", clock=clock or FakeClock())


# -- the seed's RSpec scenarios -------------------------------------------------------------------------


def test_successful_order_processing_completes_all_steps(shop: Services) -> None:
    """RSpec 'completes all steps successfully': success, and send_confirmation among the completed steps."""
    result = run_order()
    assert result.success
    assert "send_confirmation" in result.completed_steps
    assert result.completed_steps == OrderProcessing.workflow.step_names
    assert result.step_results["process_payment"]["payment_id"] == "pay_1"
    assert result.error is None
    assert shop.orders["12345"].status == "completed"


def test_payment_failure_compensates_the_inventory_reservation(shop: Services) -> None:
    """RSpec 'compensates inventory reservation': res_123 is released; the error says Payment failed."""
    shop.payment = Payment(success=False, error="card declined")
    result = run_order()
    assert not result.success
    assert result.error is not None
    assert "Payment failed" in result.error.message
    assert result.error.step_name == "process_payment"
    assert ("release_reservation", "res_123") in shop.journal


# -- the seed's compensation table ----------------------------------------------------------------------


def test_check_inventory_failing_undoes_nothing_after_the_default_retries(shop: Services) -> None:
    """check_inventory fails: nothing to undo; retried by retry_defaults (3 attempts, 2 s then 4 s)."""
    shop.stock[2] = 0
    clock = FakeClock()
    result = run_order(clock=clock)
    assert result.state is RunState.FAILED
    assert shop.undos() == []
    assert result.error is not None
    assert result.error.step_name == "check_inventory"
    assert "Insufficient inventory" in result.error.message
    assert result.error.attempts == 3
    assert clock.sleeps == [2.0, 4.0]


def test_process_payment_failing_releases_the_reservation_only(shop: Services) -> None:
    """process_payment fails after its own 2 attempts (30 s apart): only the reservation is released."""
    shop.payment = Payment(success=False, error="insufficient funds")
    clock = FakeClock()
    result = run_order(clock=clock)
    assert result.state is RunState.COMPENSATED
    assert shop.undos() == [("release_reservation", "res_123")]
    assert result.error is not None
    assert result.error.attempts == 2
    assert clock.sleeps == [30.0]
    assert result.status.step("update_inventory").state is StepState.PENDING


def test_send_confirmation_failing_refunds_and_restores_newest_first(shop: Services) -> None:
    """send_confirmation fails (3 linear attempts): restore inventory, refund, release, newest first."""
    shop.email_succeeds = False
    clock = FakeClock()
    result = run_order(clock=clock)
    assert result.state is RunState.COMPENSATED
    assert shop.undos() == [
        ("restore_from_reservation", "res_123"),
        ("refund", "pay_1"),
        ("release_reservation", "res_123"),
    ]
    assert result.error is not None
    assert result.error.step_name == "send_confirmation"
    assert clock.sleeps == [10.0, 20.0]
    assert result.completed_steps == ("validate_order", "check_inventory", "update_order_status")


# -- subclasses ------------------------------------------------------------------------------------------


def test_partial_fulfilment_subclass_ships_what_is_in_stock(shop: Services) -> None:
    """The subclass overrides check_inventory only: a partial order instead of a failure."""
    shop.stock[2] = 0
    result = run_order(PartialOrderProcessing)
    assert result.success
    check = result.step_results["check_inventory"]
    assert check["partial_order"]["id"] == "12345-partial"
    assert check["unavailable_items"] == [{"product_id": 2, "quantity": 1}]
    assert not run_order(OrderProcessing).success


def test_partial_fulfilment_subclass_keeps_the_other_steps_and_their_undos(shop: Services) -> None:
    """Inherited steps keep their arguments, retry policies and undos."""
    shop.payment = Payment(success=False, error="declined")
    result = run_order(PartialOrderProcessing)
    assert shop.undos() == [("release_reservation", "res_123")]
    assert PartialOrderProcessing.workflow.step_names == OrderProcessing.workflow.step_names
    assert PartialOrderProcessing.workflow.step("process_payment").retries.max_attempts == 2
    assert result.error is not None
    assert result.error.attempts == 2


def test_partial_fulfilment_with_nothing_in_stock_fails_at_once(shop: Services) -> None:
    """'No items available' is a NonRetryableError: one attempt, nothing to undo."""
    shop.stock.update({1: 0, 2: 0})
    result = run_order(PartialOrderProcessing)
    assert result.error is not None
    assert result.error.message == "No items available"
    assert result.error.attempts == 1
    assert shop.undos() == []


def test_redeclaring_a_step_in_a_subclass_replaces_its_options_and_keeps_its_undo(shop: Services) -> None:
    """@step in a subclass declares the step afresh (new retries), but the inherited undo stays."""

    class PatientReservations(OrderProcessing):
        @step(order=ORDER, retries=RetryPolicy(max_attempts=4, initial_delay_secs=1))
        def reserve_inventory(self, order: Order) -> dict[str, str]:
            return {"reservation_id": "res_patient"}

    shop.payment = Payment(success=False, error="declined")
    run_order(PatientReservations)
    assert shop.undos() == [("release_reservation", "res_patient")]
    assert PatientReservations.workflow.step("reserve_inventory").retries.max_attempts == 4
    assert OrderProcessing.workflow.step("reserve_inventory").retries.max_attempts == 3


def test_overriding_an_undo_method_in_a_subclass_changes_the_undo(shop: Services) -> None:
    """The undo is looked up by method name, so a subclass may override it like any method."""

    class LoudRelease(OrderProcessing):
        def release_reservation(self, reservation_id: str | None, **_: Any) -> None:
            services.journal.append(("release_reservation", f"loudly {reservation_id}"))

    shop.payment = Payment(success=False, error="declined")
    run_order(LoudRelease)
    assert shop.undos() == [("release_reservation", "loudly res_123")]


# -- OrderCancellationReactor --------------------------------------------------------------------------


def test_cancelling_a_completed_order_refunds_and_restocks_it(shop: Services) -> None:
    """A completed order is refunded and its items restored before it is marked cancelled."""
    shop.orders["12345"] = shop.orders["12345"].model_copy(
        update={"status": "completed", "payment_id": "pay_9"}
    )
    result = OrderCancellation.run(order_id="12345")
    assert result.success
    assert shop.journal[:2] == [("refund", "pay_9"), ("restore_order_items", "12345")]
    assert shop.orders["12345"].status == "cancelled"


def test_cancelling_a_pending_order_only_marks_it_cancelled(shop: Services) -> None:
    """A pending order has nothing to refund."""
    result = OrderCancellation.run(order_id="12345")
    assert result.step_results == {
        "load_order": {"order": shop.orders["12345"].model_copy(update={"status": "pending"})},
        "cancel_order": {"cancelled": True},
    }
    assert shop.undos() == []
    assert shop.orders["12345"].status == "cancelled"


# -- input, graph, registry ------------------------------------------------------------------------------


def test_invalid_input_fails_before_any_step_runs_naming_the_field(shop: Services) -> None:
    """An empty order_id breaks input_schema: InvalidInputError naming order_id, nothing run or stored."""
    backend = InMemoryBackend()
    with pytest.raises(InvalidInputError, match="field 'order_id'") as raised:
        OrderProcessing.run(order_id="", backend=backend, workflow_id="bad-order")
    assert raised.value.fields == ["order_id"]
    assert shop.journal == []
    assert backend.load_run("bad-order") is None


def test_the_dependency_graph_follows_the_declaration_order_and_the_bindings() -> None:
    """A step depends on the step declared before it, then on the steps it reads (from_result)."""
    workflow = OrderProcessing.workflow
    assert workflow.step("validate_order").depends_on == ()
    assert workflow.step("check_inventory").depends_on == ("validate_order",)
    assert workflow.step("reserve_inventory").depends_on == ("check_inventory", "validate_order")
    assert workflow.step("update_inventory").depends_on == (
        "process_payment",
        "validate_order",
        "reserve_inventory",
    )


def test_parallel_steps_that_read_nothing_from_each_other_run_concurrently() -> None:
    """Two parallel=True steps meet at a barrier: it only opens if they run at the same time."""
    barrier = threading.Barrier(2, timeout=5)

    class Parallel(Saga):
        @step(parallel=True)
        def left(self) -> str:
            barrier.wait()
            return "L"

        @step(parallel=True)
        def right(self) -> str:
            barrier.wait()
            return "R"

        @step(left=from_result(left), right=from_result(right))
        def both(self, left: str, right: str) -> str:
            return left + right

    result = Parallel.run()
    assert result.success, result.error
    assert result.step_results["both"] == "LR"


def test_steps_run_one_after_another_by_default() -> None:
    """Without parallel=, steps that read nothing from each other still run in declaration order, one at
    a time: a step declared first is never overtaken, however long it takes."""
    events: list[str] = []

    class InOrder(Saga):
        @step
        async def slow(self) -> None:
            events.append("slow started")
            await asyncio.sleep(0.05)
            events.append("slow ended")

        @step
        def fast(self) -> None:
            events.append("fast")

    assert InOrder.run().success
    assert events == ["slow started", "slow ended", "fast"]


def test_a_step_after_parallel_ones_waits_for_all_of_them() -> None:
    """The next step without parallel= joins every parallel step declared before it."""

    class FanOut(Saga):
        @step
        def order(self) -> int:
            return 1

        @step(parallel=True, n=from_result(order))
        def email(self, n: int) -> int:
            return n

        @step(parallel=True, n=from_result(order))
        def invoice(self, n: int) -> int:
            return n

        @step(parallel=True)
        def audit(self) -> int:
            return 0

        @step
        def archive(self) -> None: ...

        @step
        def close(self) -> None: ...

    workflow = FanOut.workflow
    assert workflow.step("email").depends_on == ("order",)
    assert workflow.step("invoice").depends_on == ("order",)
    assert workflow.step("audit").depends_on == ()
    assert workflow.step("archive").depends_on == ("email", "invoice", "audit")
    assert workflow.step("close").depends_on == ("archive",)
    result = FanOut.run()
    assert result.success, result.error
    assert result.completed_steps[-2:] == ("archive", "close")


def test_a_parallel_step_still_waits_for_its_after() -> None:
    """parallel=True drops the wait for the steps before it, not the ones after= names."""

    class Notify(Saga):
        @step
        def charge(self) -> None: ...

        @step
        def ship(self) -> None: ...

        @step(parallel=True, after=charge)
        def receipt(self) -> None: ...

    assert Notify.workflow.step("receipt").depends_on == ("charge",)


def test_a_subclass_keeps_the_place_of_the_steps_it_redeclares_and_appends_new_ones() -> None:
    """A step redeclared with @step stays where the base class put it; a new step runs after all others."""

    class Audited(OrderProcessing):
        @step(order=ORDER, retries=RetryPolicy(max_attempts=4, initial_delay_secs=1))
        def reserve_inventory(self, order: Order) -> dict[str, str]:
            return {"reservation_id": "res_audited"}

        @step
        def audit(self) -> None: ...

    assert Audited.workflow.step_names == (*OrderProcessing.workflow.step_names, "audit")
    assert Audited.workflow.step("reserve_inventory").depends_on[0] == "check_inventory"
    assert Audited.workflow.step("audit").depends_on == ("send_confirmation",)


def test_each_class_is_compiled_once_when_it_is_defined() -> None:
    """The class's workflow is built when it is defined (each subclass its own), and registered nowhere."""
    assert isinstance(OrderProcessing.__dict__["workflow"], Workflow)
    assert OrderProcessing.workflow.step_names[0] == "validate_order"
    assert isinstance(PartialOrderProcessing.__dict__["workflow"], Workflow)
    assert PartialOrderProcessing.workflow is not OrderProcessing.workflow
    assert len(Registry()) == 0
    assert OrderProcessing.workflow.description.startswith("Seed 000's OrderProcessingReactor")
    assert OrderProcessing.workflow.step("process_payment").has_compensation


def test_class_attributes_name_namespace_and_version_the_workflow() -> None:
    """workflow_name, namespace and version decide the registry key and the recorded name."""
    registry = Registry()

    @registry.register
    class Checkout(Saga):
        workflow_name = "checkout"
        namespace = "shop"
        version = "2.1"

        @step
        def total(self, cents: int) -> int:
            return cents

    assert Checkout.workflow.name == "shop.checkout"
    assert registry.get("checkout", namespace="shop", version="2.1") is Checkout.workflow
    assert Checkout.run(cents=5).step_results == {"total": 5}


# -- running ---------------------------------------------------------------------------------------------


def test_a_durable_run_is_stored_and_retried_after_its_fault_is_fixed(tmp_path: Path, shop: Services) -> None:
    """With backend= and workflow_id= the run is checkpointed; retry re-runs only what did not complete."""
    shop.confirm_succeeds = False
    with SqliteBackend(tmp_path / "orders.db") as backend:
        failed = OrderProcessing.run(
            order_id="12345", backend=backend, workflow_id="order-12345", clock=FakeClock()
        )
        assert failed.state is RunState.COMPENSATED
        assert failed.workflow_id == "order-12345"
        assert shop.undos() == [("refund", "pay_1"), ("release_reservation", "res_123")]
        shop.confirm_succeeds = True
        shop.journal.clear()
        retried = OrderProcessing.retry("order-12345", backend=backend, clock=FakeClock())
        assert retried.success
        assert [name for name, _ in shop.journal if name in ("charge", "reserve_items")] == [
            "reserve_items",
            "charge",
        ]
        again = OrderProcessing.run(order_id="12345", backend=backend, workflow_id="order-12345")
        assert again.success
        assert again.status.created_at == failed.status.created_at


def test_an_undo_names_the_step_arguments_result_fields_or_the_whole_result() -> None:
    """The undo gets what it names: step arguments, result fields, and ``result`` for the whole value."""
    seen: list[dict[str, Any]] = []

    class Booking(Saga):
        @step
        def hold_seat(self, flight: str, seat: str) -> dict[str, str]:
            return {"hold_id": f"{flight}-{seat}"}

        @hold_seat.undo
        def release_seat(self, flight: str, hold_id: str, result: dict[str, str], ctx: StepContext) -> None:
            seen.append({"flight": flight, "hold_id": hold_id, "result": result, "undo": ctx.is_compensation})

        @step(hold=from_result(hold_seat, "hold_id"))
        def pay(self, hold: str) -> None:
            raise NonRetryableError("declined")

    result = Booking.run(flight="LH400", seat="12A")
    assert result.state is RunState.COMPENSATED
    assert seen == [
        {"flight": "LH400", "hold_id": "LH400-12A", "result": {"hold_id": "LH400-12A"}, "undo": True}
    ]


def test_an_undo_asking_for_something_unknown_fails_with_a_clear_message() -> None:
    """An undo parameter that is neither an argument nor a result field fails the undo at once, named."""

    class Broken(Saga):
        @step
        def reserve(self, sku: str) -> dict[str, str]:
            return {"reservation_id": "r1"}

        @reserve.undo
        def release(self, reservation: str) -> None: ...

        @step
        def fail(self) -> None:
            raise NonRetryableError("declined")

    result = Broken.run(sku="A")
    assert result.state is RunState.COMPENSATION_FAILED
    error = result.status.step("reserve").compensation_error
    assert error is not None
    assert "needs 'reservation'" in error.message
    assert "'reservation_id'" in error.message


def test_steps_get_their_context_and_may_be_async() -> None:
    """A parameter annotated StepContext receives the context; async def steps are awaited."""

    class Keys(Saga):
        @step
        async def charge(self, amount: int, ctx: StepContext) -> str:
            await asyncio.sleep(0)
            return f"{ctx.idempotency_key}:{amount}"

    result = Keys.run(amount=5, workflow_id="run-1")
    assert result.step_results == {"charge": "run-1:charge:5"}


def test_step_methods_stay_plain_methods_for_unit_tests(shop: Services) -> None:
    """Called on an instance, a step is the method itself."""
    order = shop.orders["12345"]
    assert OrderProcessing().check_inventory(order) == {"inventory_checked": True}
    assert OrderProcessing().release_reservation("res_9") is None
    assert shop.journal == [("release_reservation", "res_9")]


def test_an_input_field_named_like_a_run_option_is_passed_as_a_mapping() -> None:
    """run({...}) takes the input as a mapping, for fields called backend, workflow_id or clock."""

    class Echo(Saga):
        @step
        def echo(self, backend: str) -> str:
            return backend

    assert Echo.run({"backend": "postgres"}).step_results == {"echo": "postgres"}


def test_unbound_parameters_take_the_input_field_of_their_name_or_their_default() -> None:
    """A parameter without a binding reads the same-named input field; absent, its default applies."""

    class Greeting(Saga):
        @step(name=from_input("who"))
        def greet(self, name: str, punctuation: str = "!") -> str:
            return f"hello {name}{punctuation}"

    assert Greeting.run(who="ada").step_results == {"greet": "hello ada!"}
    assert Greeting.run(who="ada", punctuation="?").step_results == {"greet": "hello ada?"}


# -- definition errors -------------------------------------------------------------------------------


def test_reading_a_step_the_class_does_not_have_fails_when_the_class_is_defined() -> None:
    """An unknown step in from_result is a DefinitionError at class definition, naming it."""
    with pytest.raises(DefinitionError, match="depends on 'validate_ordr'"):

        class Typo(Saga):
            @step(order=from_result("validate_ordr", "order"))
            def check(self, order: dict[str, Any]) -> None: ...


def test_waiting_for_a_step_declared_later_fails_when_the_class_is_defined() -> None:
    """Steps run in the order they are declared: after= or a binding naming a later step is refused."""
    with pytest.raises(DefinitionError, match="step 'a' of saga Loop waits for 'b', which is declared after"):

        class Loop(Saga):
            @step(after="b")
            def a(self) -> None: ...

            @step
            def b(self) -> None: ...

    with pytest.raises(DefinitionError, match="waits for 'later', which is declared after it"):

        class Ahead(Saga):
            @step(parallel=True, value=from_result("later"))
            def early(self, value: int) -> None: ...

            @step(parallel=True)
            def later(self) -> int:
                return 1


def declares_no_steps() -> None:
    class Empty(Saga):
        pass


def names_a_step_run() -> None:
    class Shadow(Saga):
        @step
        def run(self) -> None: ...


def needs_init_arguments() -> None:
    class NeedsDatabase(Saga):
        def __init__(self, database: object) -> None: ...

        @step
        def ok(self) -> None: ...


def takes_a_positional_only_parameter() -> None:
    class Positional(Saga):
        @step
        def total(self, cents: int, /) -> int:
            return cents


def hides_a_helper_of_its_base_class() -> None:
    class Helpers(Saga, abstract=True):
        def total(self) -> int:
            return 1

    class Hides(Helpers):
        @step
        def total(self) -> int:
            return 2


def sets_parallel_to_a_string() -> None:
    class Vague(Saga):
        @step(parallel="yes")  # type: ignore[arg-type]
        def ok(self) -> None: ...


def sets_retry_defaults_to_a_number() -> None:
    class BadRetries(Saga):
        retry_defaults = 3  # type: ignore[assignment]

        @step
        def ok(self) -> None: ...


@pytest.mark.parametrize(
    ("define", "message"),
    [
        (declares_no_steps, "saga Empty declares no steps"),
        (names_a_step_run, "may not be called 'run'"),
        (
            needs_init_arguments,
            r"created with no arguments for each step, but its __init__ requires \['database'\]",
        ),
        (takes_a_positional_only_parameter, "parameter 'cents' cannot take one"),
        (hides_a_helper_of_its_base_class, "may not be called 'total': Helpers has an attribute"),
        (sets_parallel_to_a_string, "parallel= of step 'ok' must be a bool"),
        (sets_retry_defaults_to_a_number, "retry_defaults of saga BadRetries must be a RetryPolicy"),
    ],
)
def test_malformed_classes_are_refused_when_defined(define: Callable[[], None], message: str) -> None:
    """Each mistake is a DefinitionError, raised by the class statement, saying what to change."""
    with pytest.raises(DefinitionError, match=message):
        define()


def test_undo_of_an_inherited_step_cannot_be_redeclared_from_a_subclass() -> None:
    """@Parent.step.undo in a subclass would change the parent too; it is refused."""
    with pytest.raises(DefinitionError, match="by overriding the undo method"):

        class Sneaky(OrderProcessing):
            @OrderProcessing.reserve_inventory.undo
            def other_release(self, **_: Any) -> None: ...


def test_abstract_base_classes_are_not_workflows() -> None:
    """abstract=True skips compiling; running it says it is not a workflow; subclasses compile."""

    class Base(Saga, abstract=True):
        @step
        def first(self, value: int) -> int:
            return value + 1

    class Concrete(Base):
        pass

    with pytest.raises(DefinitionError, match="Base is not a workflow"):
        Base.run(value=1)
    assert Concrete.run(value=1).step_results == {"first": 2}


def test_an_asynchronous_saga_returns_a_handle_that_a_worker_completes() -> None:
    """With asynchronous = True, run() records the run and returns at once; a worker executes it."""
    from conveyor import InMemoryBackend, Worker
    from conveyor.saga import SagaHandle

    class Greeting(Saga):
        asynchronous = True

        @step
        def greet(self, name: str) -> dict[str, str]:
            return {"greeting": f"hello {name}"}

    backend = InMemoryBackend()
    handle = Greeting.run(name="ada", backend=backend, workflow_id="greet-1")
    assert isinstance(handle, SagaHandle)
    assert handle.status == "running"
    assert handle.result is None
    Worker(backend, [Greeting.workflow]).run(until_idle=True)
    assert handle.status == "success"
    result = handle.wait(timeout=5)
    assert result.step_results["greet"] == {"greeting": "hello ada"}
    assert handle.error is None


def test_an_asynchronous_saga_without_a_backend_goes_to_the_default_one() -> None:
    """Without a backend, an asynchronous saga's run is recorded where every spelling records: the default."""

    class Lonely(Saga):
        asynchronous = True

        @step
        def alone(self, name: str) -> str:
            return name

    handle = Lonely.run(name="x", workflow_id="lonely-1")
    assert handle.status == "running"
    assert Conveyor().status("lonely-1").state is RunState.PENDING
