"""A workflow class's undo method gets the runtime's resources like its steps do."""

from __future__ import annotations

from typing import Any

from conveyor import Conveyor, InMemoryBackend, RunState, Saga, StepContext, from_result, resource, step


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
