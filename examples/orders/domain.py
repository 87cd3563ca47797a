"""The order domain: orders, their lines and their lifecycle. Pure: no I/O, no conveyor.

An order moves through seed 001's lifecycle, written as a table::

    created ─► payment_pending ─► awaiting_shipment ─► shipped ─► completed
       │              │                   │                 │         │
       └──────────────┴───────────────────┴──► failed       │         │
       └──────────────┴───────────────────┴──► cancelled ◄──┴─────────┘  (refund and restock)

A shipped order is cancelled only by its own workflow's undo (a cancel that arrived as it shipped: the
label is cancelled first); the API refuses to cancel it.

Any other change is refused with :class:`IllegalTransitionError`, which names both states. Money is integer
cents throughout; nothing here ever holds a float amount.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator

Cents = int
"""An amount of money in the smallest unit of its currency (cents for USD and EUR)."""
CARD_TOKEN_PATTERN = re.compile(r"tok_(?![A-Za-z0-9_]*[0-9]{12})[A-Za-z0-9_]{1,64}")
"""What a card token looks like: ``tok_`` then letters, digits or ``_``, and never twelve digits in a row
(a card number behind a ``tok_`` prefix is still a card number). An order keeps the gateway's token for
its card, never the number."""


def is_card_token(value: object) -> bool:
    """Whether ``value`` looks like a card token (see :data:`CARD_TOKEN_PATTERN`)."""
    return isinstance(value, str) and CARD_TOKEN_PATTERN.fullmatch(value) is not None


def _card_token(value: str) -> str:
    if not is_card_token(value):  # the error does not repeat the value: it may be a card number
        raise ValueError("must be a card token (tok_ then letters, digits or _), never a card number")
    return value


CardToken = Annotated[str, AfterValidator(_card_token)]
"""A string field that holds a card token (for pydantic models at the doors: the API, the workflows)."""


class OrderStatus(StrEnum):
    """Where an order is in its life (seed 001)."""

    CREATED = "created"
    PAYMENT_PENDING = "payment_pending"
    AWAITING_SHIPMENT = "awaiting_shipment"
    SHIPPED = "shipped"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


S = OrderStatus
TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    S.CREATED: frozenset({S.PAYMENT_PENDING, S.FAILED, S.CANCELLED}),
    S.PAYMENT_PENDING: frozenset({S.AWAITING_SHIPMENT, S.FAILED, S.CANCELLED}),
    S.AWAITING_SHIPMENT: frozenset({S.SHIPPED, S.FAILED, S.CANCELLED}),
    S.SHIPPED: frozenset({S.COMPLETED, S.CANCELLED}),
    S.COMPLETED: frozenset({S.CANCELLED}),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}
"""Every allowed change of status: ``TRANSITIONS[from]`` holds the states an order may move to."""

FINAL_STATES = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED})
"""States an order may end in (a completed order may still be cancelled: refunded and restocked)."""
CANCELLABLE_IN_FLIGHT = frozenset({S.CREATED, S.PAYMENT_PENDING, S.AWAITING_SHIPMENT})
"""States in which a customer's cancellation cancels the order's run, which then undoes its steps."""


class OrderError(Exception):
    """A business rule refused what was asked of an order."""


class IllegalTransitionError(OrderError):
    """The order cannot move from its status to the one asked for."""

    def __init__(self, order_id: str, from_status: OrderStatus, to_status: OrderStatus) -> None:
        self.order_id = order_id
        self.from_status = from_status
        self.to_status = to_status
        allowed = ", ".join(sorted(TRANSITIONS[from_status])) or "nothing: it is final"
        super().__init__(
            f"order {order_id} cannot go from {from_status.value} to {to_status.value} "
            f"(from {from_status.value} it may go to {allowed})"
        )


class InvalidOrderError(OrderError):
    """The order as submitted breaks a rule (no lines, a non-positive quantity, a bad email)."""


class OrderCancelledError(OrderError):
    """The order was cancelled before its workflow got to it."""


class PaymentFailedError(OrderError):
    """The payment was refused (the card was declined); retrying will not help."""


class InsufficientInventoryError(OrderError):
    """The shelf does not hold enough units for every line of the order."""


class NothingAvailableError(OrderError):
    """None of the order's lines can be fulfilled (partial fulfilment needs at least one)."""


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One line of an order: so many units of a SKU at a unit price. ``dropped`` lines are not fulfilled."""

    sku: str
    quantity: int
    unit_price_cents: Cents
    dropped: bool = False

    @property
    def total_cents(self) -> Cents:
        """The line's price: quantity times unit price."""
        return self.quantity * self.unit_price_cents


@dataclass(frozen=True, slots=True)
class Order:
    """An order and where it stands. Changing it returns a new ``Order``; nothing here writes anywhere."""

    id: str
    customer_email: str
    card_token: str
    """The payment gateway's token for the card (``tok_…``): the card number is never held."""
    shipping_address: str
    lines: tuple[OrderLine, ...]
    customer_id: str = ""
    """Who placed the order (the API's caller): only they, and an admin, may see or cancel it."""
    card_last4: str | None = None
    card_brand: str | None = None
    status: OrderStatus = OrderStatus.CREATED
    currency: str = "usd"
    tax_cents: Cents = 0
    cancel_reason: str | None = None
    """Why the order was cancelled (its run's cancel reason), once it is ``cancelled``."""
    payment_id: str | None = None
    reservation_id: str | None = None
    shipment_id: str | None = None
    failure_reason: str | None = None
    workflow_id: str | None = None

    @property
    def kept_lines(self) -> tuple[OrderLine, ...]:
        """The lines that will be fulfilled (all of them unless partial fulfilment dropped some)."""
        return tuple(line for line in self.lines if not line.dropped)

    @property
    def total_cents(self) -> Cents:
        """What the customer pays: the sum of the kept lines, plus tax."""
        return sum(line.total_cents for line in self.kept_lines) + self.tax_cents

    @property
    def quantities(self) -> dict[str, int]:
        """Units wanted per SKU, over the kept lines (a SKU on two lines is added up)."""
        return quantities_by_sku(self.kept_lines)

    @property
    def is_final(self) -> bool:
        """Whether the order has reached a state it normally ends in."""
        return self.status in FINAL_STATES

    def can_move_to(self, status: OrderStatus) -> bool:
        """Whether the lifecycle allows moving from the current status to ``status``."""
        return status in TRANSITIONS[self.status]

    def move_to(self, status: OrderStatus) -> Order:
        """The order in ``status``; :class:`IllegalTransitionError` if the lifecycle does not allow it."""
        if not self.can_move_to(status):
            raise IllegalTransitionError(self.id, self.status, status)
        return dataclasses.replace(self, status=status)

    def drop_lines(self, skus: Iterable[str]) -> Order:
        """The order without the lines for ``skus`` (partial fulfilment); only before it is paid."""
        if self.status is not OrderStatus.CREATED:
            raise OrderError(
                f"order {self.id} is {self.status.value}; lines can only be dropped while created"
            )
        unwanted = set(skus)
        lines = tuple(
            dataclasses.replace(line, dropped=line.dropped or line.sku in unwanted) for line in self.lines
        )
        if not any(not line.dropped for line in lines):
            raise NothingAvailableError(f"order {self.id}: none of its items is available")
        return dataclasses.replace(self, lines=lines)


def quantities_by_sku(lines: Iterable[OrderLine]) -> dict[str, int]:
    """Units per SKU over ``lines``, in SKU order (the order in which stock rows are locked)."""
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.sku] = totals.get(line.sku, 0) + line.quantity
    return dict(sorted(totals.items()))


def new_order(
    order_id: str,
    *,
    customer_email: str,
    card_token: str,
    shipping_address: str,
    items: Iterable[tuple[str, int]],
    prices: Mapping[str, Cents],
    currency: str = "usd",
    customer_id: str = "",
    card_last4: str | None = None,
    card_brand: str | None = None,
) -> Order:
    """A new order in ``created`` for ``items`` (SKU, quantity), priced from the catalogue ``prices``.

    ``card_token`` must be a token (``tok_…``): a card number is refused, and the error does not repeat it.
    """
    if "@" not in customer_email.strip("@"):
        raise InvalidOrderError(f"customer_email {customer_email!r} is not an email address")
    if not card_token:
        raise InvalidOrderError("card_token is required")
    if not is_card_token(card_token):
        raise InvalidOrderError("card_token must be a card token (tok_...), never a card number")
    lines = []
    for sku, quantity in items:
        if sku not in prices:
            raise InvalidOrderError(f"unknown SKU {sku!r}")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
            raise InvalidOrderError(f"quantity of {sku!r} must be a positive integer, not {quantity!r}")
        price = prices[sku]
        if isinstance(price, bool) or not isinstance(price, int) or price < 0:
            raise InvalidOrderError(f"price of {sku!r} must be a non-negative number of cents, not {price!r}")
        lines.append(OrderLine(sku, quantity, price))
    if not lines:
        raise InvalidOrderError("an order needs at least one line")
    return Order(
        id=order_id,
        customer_email=customer_email,
        card_token=card_token,
        shipping_address=shipping_address,
        lines=tuple(lines),
        customer_id=customer_id,
        card_last4=card_last4,
        card_brand=card_brand,
        currency=currency,
    )


def partition_available(order: Order, available: Mapping[str, int]) -> tuple[list[str], list[str]]:
    """Split the order's SKUs into those the stock ``available`` covers and those it does not (seed 000)."""
    covered: list[str] = []
    short: list[str] = []
    for sku, quantity in order.quantities.items():
        (covered if available.get(sku, 0) >= quantity else short).append(sku)
    return covered, short


def format_cents(amount: Cents, currency: str = "usd") -> str:
    """``amount`` for people: ``$12.34`` (``12.34 EUR`` for other currencies)."""
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    if currency.lower() == "usd":
        return f"{sign}${whole:,}.{cents:02d}"
    return f"{sign}{whole:,}.{cents:02d} {currency.upper()}"


def tax_cents(subtotal: Cents, rate_basis_points: int) -> Cents:
    """Tax on ``subtotal`` at ``rate_basis_points`` (800 = 8 %), rounded half up to the cent."""
    if subtotal < 0 or rate_basis_points < 0:
        raise ValueError("tax needs a non-negative subtotal and rate")
    return (subtotal * rate_basis_points + 5_000) // 10_000
