"""A carrier simulator: shipping labels in the ``shipments`` table, one per order.

Creating a label is idempotent per order (asking again returns the same label). The carrier refuses
addresses it cannot deliver to (any address containing ``undeliverable``: :class:`ShipmentRefusedError`,
not worth retrying), and fails now and then for a moment (:class:`CarrierUnavailableError`), at the rate
its :class:`CarrierBehaviour` sets. A label can be cancelled until it is picked up, which here is always.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass

from examples.orders.adapters.db import Database


class CarrierError(Exception):
    """The carrier refused or failed a request."""


class ShipmentRefusedError(CarrierError):
    """The carrier cannot deliver to this address."""


class CarrierUnavailableError(CarrierError):
    """The carrier's API failed for a moment; nothing was done."""


@dataclass(frozen=True, slots=True)
class CarrierBehaviour:
    """How often the carrier's API fails for a moment."""

    transient_error_rate: float = 0.0


_INSERT = (
    "INSERT INTO shipments (id, order_id, address, status, created_at) VALUES (?, ?, ?, 'label_created', ?) "
    "ON CONFLICT DO NOTHING"
)
_OF_ORDER = "SELECT id, status FROM shipments WHERE order_id = ?"
_CANCEL = "UPDATE shipments SET status = 'cancelled' WHERE order_id = ? AND status = 'label_created'"


class Carrier:
    """The simulated carrier, keeping its labels in ``db``."""

    def __init__(
        self, db: Database, behaviour: CarrierBehaviour | None = None, rng: random.Random | None = None
    ) -> None:
        self.db = db
        self.behaviour = behaviour or CarrierBehaviour()
        self.rng = rng or random.Random()

    def _network(self) -> None:
        if self.rng.random() < self.behaviour.transient_error_rate:
            raise CarrierUnavailableError("the carrier's API timed out; nothing was booked")

    def create_shipment(self, order_id: str, address: str) -> str:
        """Book a label for ``order_id`` to ``address``; return its id (the same one on every call)."""
        self._network()
        if "undeliverable" in address.lower():
            raise ShipmentRefusedError(f"the carrier does not deliver to {address!r}")
        with self.db.transaction() as tx:
            tx.execute(_INSERT, (f"shp_{uuid.uuid4().hex[:20]}", order_id, address, time.time()))
            row = tx.one(_OF_ORDER, (order_id,))
        assert row is not None
        if row[1] != "label_created":
            raise ShipmentRefusedError(f"the label of order {order_id} was cancelled; it cannot be reused")
        return str(row[0])

    def cancel_shipment(self, order_id: str) -> bool:
        """Cancel the order's label if it has one; whether this call cancelled it."""
        self._network()
        with self.db.transaction() as tx:
            return tx.execute(_CANCEL, (order_id,)) == 1

    def shipment_of(self, order_id: str) -> tuple[str, str] | None:
        """The order's label (id, status), or ``None``."""
        with self.db.transaction(readonly=True) as tx:
            row = tx.one(_OF_ORDER, (order_id,))
        return None if row is None else (str(row[0]), str(row[1]))
