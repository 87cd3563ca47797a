"""The order domain's rules: the lifecycle table, totals in cents, partial fulfilment, validation."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from examples.orders import domain
from examples.orders.domain import (
    IllegalTransitionError,
    InvalidOrderError,
    NothingAvailableError,
    Order,
    OrderLine,
    OrderStatus,
)

S = OrderStatus
ALLOWED = {
    (S.CREATED, S.PAYMENT_PENDING),
    (S.CREATED, S.FAILED),
    (S.CREATED, S.CANCELLED),
    (S.PAYMENT_PENDING, S.AWAITING_SHIPMENT),
    (S.PAYMENT_PENDING, S.FAILED),
    (S.PAYMENT_PENDING, S.CANCELLED),
    (S.AWAITING_SHIPMENT, S.SHIPPED),
    (S.AWAITING_SHIPMENT, S.FAILED),
    (S.AWAITING_SHIPMENT, S.CANCELLED),
    (S.SHIPPED, S.COMPLETED),
    (S.SHIPPED, S.CANCELLED),  # only by the order's own undo: a cancel that arrived as it shipped
    (S.COMPLETED, S.CANCELLED),
}
"""Seed 001's lifecycle, written out independently of the table under test."""
PRICES = {"kettle": 3_499, "mug": 1_250}


def an_order(status: OrderStatus = S.CREATED, *lines: OrderLine) -> Order:
    """An order in ``status`` with ``lines`` (two mugs and a kettle by default)."""
    chosen = lines or (OrderLine("mug", 2, 1_250), OrderLine("kettle", 1, 3_499))
    return Order("o-1", "ada@example.com", "tok_visa", "1 Tea St", chosen, status=status)


@pytest.mark.parametrize(("before", "after"), list(itertools.product(S, S)))
def test_a_status_change_is_allowed_exactly_when_the_lifecycle_has_it(before: S, after: S) -> None:
    """Every pair of states: the move succeeds if the lifecycle allows it and is refused otherwise."""
    order = an_order(before)
    if (before, after) in ALLOWED:
        assert order.move_to(after).status is after
    else:
        with pytest.raises(IllegalTransitionError):
            order.move_to(after)


def test_a_refused_change_names_both_states_and_the_order() -> None:
    """The error says which order, from which state, to which, and what is allowed instead."""
    with pytest.raises(IllegalTransitionError) as refused:
        an_order(S.SHIPPED).move_to(S.PAYMENT_PENDING)
    message = str(refused.value)
    assert "order o-1 cannot go from shipped to payment_pending" in message
    assert "completed" in message
    assert (refused.value.from_status, refused.value.to_status) == (S.SHIPPED, S.PAYMENT_PENDING)


def test_failed_and_cancelled_orders_never_change_again() -> None:
    """The final failure states refuse every move, saying they are final."""
    for final in (S.FAILED, S.CANCELLED):
        for target in S:
            with pytest.raises(IllegalTransitionError, match="it is final"):
                an_order(final).move_to(target)


def test_moving_an_order_leaves_the_original_untouched() -> None:
    """Orders are values: a move returns a new order."""
    order = an_order()
    moved = order.move_to(S.PAYMENT_PENDING)
    assert order.status is S.CREATED
    assert moved.status is S.PAYMENT_PENDING


def test_the_total_is_integer_cents_over_kept_lines_plus_tax() -> None:
    """Two mugs and a kettle cost 5999 cents; a dropped line costs nothing; tax is added."""
    order = an_order()
    assert order.total_cents == 2 * 1_250 + 3_499
    assert isinstance(order.total_cents, int)
    partial = order.drop_lines(["kettle"])
    assert partial.total_cents == 2_500
    assert dataclasses.replace(partial, tax_cents=200).total_cents == 2_700


def test_quantities_add_up_a_sku_listed_twice_in_sku_order() -> None:
    """Two lines of mugs become one reservation line; SKUs come sorted (the locking order)."""
    order = an_order(
        S.CREATED, OrderLine("mug", 1, 1_250), OrderLine("kettle", 1, 3_499), OrderLine("mug", 2, 1_250)
    )
    assert list(order.quantities.items()) == [("kettle", 1), ("mug", 3)]


def test_partial_fulfilment_keeps_what_the_shelf_covers() -> None:
    """Lines the stock cannot cover are split off; the rest is kept."""
    order = an_order()
    covered, short = domain.partition_available(order, {"mug": 5, "kettle": 0})
    assert (covered, short) == (["mug"], ["kettle"])
    partial = order.drop_lines(short)
    assert [line.sku for line in partial.kept_lines] == ["mug"]
    assert partial.quantities == {"mug": 2}


def test_an_order_with_nothing_available_cannot_be_partly_fulfilled() -> None:
    """Dropping every line is refused."""
    with pytest.raises(NothingAvailableError, match="none of its items"):
        an_order().drop_lines(["mug", "kettle"])


def test_lines_can_only_be_dropped_before_payment() -> None:
    """Once payment started the order's content is fixed."""
    with pytest.raises(domain.OrderError, match="only be dropped while created"):
        an_order(S.PAYMENT_PENDING).drop_lines(["mug"])


@pytest.mark.parametrize(
    ("items", "email", "message"),
    [
        ([], "ada@example.com", "at least one line"),
        ([("mug", 0)], "ada@example.com", "positive integer"),
        ([("mug", 1.5)], "ada@example.com", "positive integer"),
        ([("spoon", 1)], "ada@example.com", "unknown SKU 'spoon'"),
        ([("mug", 1)], "ada.example.com", "not an email address"),
    ],
)
def test_a_new_order_that_breaks_a_rule_is_refused(
    items: list[tuple[str, int]], email: str, message: str
) -> None:
    """Empty orders, bad quantities, unknown SKUs and bad emails are refused, saying which."""
    with pytest.raises(InvalidOrderError, match=message):
        domain.new_order(
            "o-2",
            customer_email=email,
            card_token="tok_visa",
            shipping_address="x",
            items=items,
            prices=PRICES,
        )


def test_a_new_order_is_created_and_priced_from_the_catalogue() -> None:
    """The catalogue's prices are used, never the client's."""
    order = domain.new_order(
        "o-3",
        customer_email="ada@example.com",
        card_token="tok_visa",
        shipping_address="x",
        items=[("kettle", 2)],
        prices=PRICES,
    )
    assert order.status is S.CREATED
    assert order.lines == (OrderLine("kettle", 2, 3_499),)
    assert order.total_cents == 6_998


@pytest.mark.parametrize(
    ("subtotal", "basis_points", "tax"),
    [(1_000, 800, 80), (1_006, 800, 80), (1_019, 800, 82), (10, 500, 1), (9, 500, 0), (0, 800, 0)],
)
def test_tax_is_rounded_half_up_to_the_cent(subtotal: int, basis_points: int, tax: int) -> None:
    """8 % of 10.19 is 0.8152, which is 82 cents; 5 % of 10 cents is half a cent, which rounds up."""
    assert domain.tax_cents(subtotal, basis_points) == tax


def test_amounts_are_formatted_for_people() -> None:
    """Cents print as dollars with separators, other currencies with their code."""
    assert domain.format_cents(123_456) == "$1,234.56"
    assert domain.format_cents(-5) == "-$0.05"
    assert domain.format_cents(1_000, "eur") == "10.00 EUR"
