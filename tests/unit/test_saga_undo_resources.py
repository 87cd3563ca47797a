"""A workflow class's undo method gets the runtime's resources like its steps do."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import (
    Conveyor,
    InMemoryBackend,
    InvalidArgumentError,
    RunState,
    Saga,
    StepContext,
    from_result,
    resource,
    step,
)


class Ledger:
    """A resource that records what was undone."""

    def __init__(self) -> None:
        self.undone: list[str] = []


class Booking(Saga):
    """Reserve, then fail: the reservation's undo asks for the ledger by a resource parameter."""

    @step
    def reserve(self, booking_id: str, ledger: Ledger = resource("ledger")) -> dict[str, str]:
        return {"seat": f"seat-for-{booking_id}"}

    @reserve.undo
    def release(self, seat: str, ledger: Ledger = resource("ledger"), **_: Any) -> None:
        ledger.undone.append(seat)

    @step(seat=from_result(reserve, "seat"))
    def pay(self, seat: str, context: StepContext) -> None:
        raise ValueError(f"declined for {seat}")


def test_an_undo_method_gets_a_resource_declared_as_its_parameter() -> None:
    """Before: the undo received the ``resource('ledger')`` marker itself and failed on ``.undone``."""
    ledger = Ledger()
    with Conveyor(InMemoryBackend(), workflows=[Booking], resources={"ledger": ledger}) as app:
        status = app.run(Booking, {"booking_id": "b1"})
    assert status.state is RunState.COMPENSATED
    assert ledger.undone == ["seat-for-b1"]


def test_the_class_run_and_retry_use_the_runtime_given_and_its_resources() -> None:
    """``Booking.run(..., runtime=app)`` is app.run with the seed's result; retry goes through it too."""
    ledger = Ledger()
    with Conveyor(InMemoryBackend(), resources={"ledger": ledger}) as app:
        result = Booking.run(booking_id="b2", workflow_id="booking-b2", runtime=app)
        assert not result.success
        assert result.error.step_name == "pay"
        assert ledger.undone == ["seat-for-b2"]
        again = Booking.retry("booking-b2", runtime=app)
        assert again.workflow_id == "booking-b2"
        assert ledger.undone == ["seat-for-b2", "seat-for-b2"]  # reserved and undone once more


def test_a_runtime_and_a_backend_together_is_a_clear_error() -> None:
    """The runtime has its own backend and clock: giving both would leave one of them unused."""
    with Conveyor(InMemoryBackend()) as app:
        with pytest.raises(InvalidArgumentError, match="give a runtime or a backend and clock, not both"):
            Booking.run(booking_id="b3", runtime=app, backend=InMemoryBackend())
        with pytest.raises(InvalidArgumentError, match="runtime must be a Conveyor"):
            Booking.run(booking_id="b3", runtime="sqlite:///x.db")  # type: ignore[arg-type]
