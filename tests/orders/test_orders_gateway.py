"""The payment gateway simulator: idempotency keys, declines, transient faults, lost responses, refunds."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from examples.orders.adapters.db import Database
from examples.orders.adapters.payments import (
    CardDeclinedError,
    ChargeAlreadyRefundedError,
    GatewayBehaviour,
    GatewayUnavailableError,
    IdempotencyKeyReusedError,
    PaymentGateway,
    RefundExceedsChargeError,
    ResponseLostError,
)
from examples.orders.system import OrderSystem
from orders_support import ScriptedRandom, make_system


def charge(gateway: PaymentGateway, key: str = "key-1", amount: int = 4_599, card: str = "tok_visa") -> str:
    """Charge ``amount`` cents for order o-1 with ``key``; the charge id."""
    made = gateway.charge(
        amount_cents=amount, currency="usd", card_token=card, reference="o-1", idempotency_key=key
    )
    return made.id


def charges(system: OrderSystem) -> int:
    """How many charges the gateway has made, declined ones included."""
    with system.db.transaction(readonly=True) as tx:
        row = tx.one("SELECT count(*) FROM gateway_charges")
    assert row is not None
    return int(row[0])


@pytest.fixture
def system(sqlite_url: str) -> Iterator[OrderSystem]:
    """A shop on SQLite."""
    shop = make_system(sqlite_url)
    yield shop
    shop.close()


def test_the_same_key_twice_charges_once(system: OrderSystem) -> None:
    """A repeated charge returns the first one; the card is charged once."""
    first = charge(system.gateway)
    second = charge(system.gateway)
    assert first == second
    assert charges(system) == 1
    assert system.gateway.get_charge(first).amount_cents == 4_599


def test_the_same_key_with_another_amount_is_refused(system: OrderSystem) -> None:
    """A key reused for a different charge is refused, and nothing new is charged."""
    charge(system.gateway, amount=4_599)
    with pytest.raises(IdempotencyKeyReusedError, match="key-1"):
        charge(system.gateway, amount=4_600)
    assert charges(system) == 1


def test_a_lost_response_then_a_retry_charges_once(system: OrderSystem, sqlite_url: str) -> None:
    """The charge goes through but its answer is lost; the retry, from another process, finds that charge."""
    flaky = PaymentGateway(system.db, GatewayBehaviour(lost_response_rate=1.0))
    with pytest.raises(ResponseLostError):
        charge(flaky)
    with Database(sqlite_url) as another_process:
        retried = charge(PaymentGateway(another_process))
    assert charges(system) == 1
    assert [made.id for made in system.gateway.charges_for("o-1")] == [retried]


def test_a_transient_error_charges_nothing(system: OrderSystem) -> None:
    """A 503 happens before the charge: nothing is recorded and the retry charges."""
    flaky = PaymentGateway(system.db, GatewayBehaviour(transient_error_rate=0.5), ScriptedRandom([0.1]))
    with pytest.raises(GatewayUnavailableError):
        charge(flaky)
    assert charges(system) == 0
    charge(flaky)
    assert charges(system) == 1


def test_a_declined_card_stays_declined_under_the_same_key(system: OrderSystem) -> None:
    """A decline is recorded against its key; the replay declines again, with the same charge."""
    with pytest.raises(CardDeclinedError) as first:
        charge(system.gateway, card="tok_chargeDeclinedInsufficientFunds")
    with pytest.raises(CardDeclinedError) as again:
        charge(system.gateway, card="tok_chargeDeclinedInsufficientFunds")
    assert first.value.code == "insufficient_funds"
    assert again.value.charge_id == first.value.charge_id
    assert system.gateway.get_charge(first.value.charge_id).refundable_cents == 0


def test_concurrent_requests_with_one_key_make_one_charge(
    any_shop: OrderSystem, any_database_url: str
) -> None:
    """Twenty threads send the same charge at once, each on its own connection: one charge, one id."""
    system = any_shop
    start = threading.Barrier(20)
    ids: list[str] = []

    def pay() -> None:
        with Database(any_database_url, max_connections=1) as db:
            gateway = PaymentGateway(db)
            start.wait()
            ids.append(charge(gateway, key="shared"))

    threads = [threading.Thread(target=pay) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(ids) == 20
    assert len(set(ids)) == 1
    assert charges(system) == 1


def test_a_refund_with_the_same_key_refunds_once(system: OrderSystem) -> None:
    """Refunding twice with one key returns the first refund; the charge is refunded once."""
    charge_id = charge(system.gateway)
    first = system.gateway.refund(charge_id=charge_id, amount_cents=1_000, idempotency_key="refund-1")
    again = system.gateway.refund(charge_id=charge_id, amount_cents=1_000, idempotency_key="refund-1")
    assert first == again
    assert system.gateway.get_charge(charge_id).refunded_cents == 1_000


def test_a_refund_never_exceeds_the_charge(system: OrderSystem) -> None:
    """The rest can be refunded; then nothing more, and no refund may be larger than what is left."""
    charge_id = charge(system.gateway)
    with pytest.raises(RefundExceedsChargeError, match="4599 cents are left"):
        system.gateway.refund(charge_id=charge_id, amount_cents=5_000, idempotency_key="too-much")
    rest = system.gateway.refund(charge_id=charge_id, amount_cents=None, idempotency_key="rest")
    assert rest.amount_cents == 4_599
    with pytest.raises(ChargeAlreadyRefundedError):
        system.gateway.refund(charge_id=charge_id, amount_cents=None, idempotency_key="rest-again")
    with pytest.raises(IdempotencyKeyReusedError):
        system.gateway.refund(charge_id=charge_id, amount_cents=1, idempotency_key="rest")


def test_a_lost_refund_response_then_a_retry_refunds_once(system: OrderSystem) -> None:
    """The refund is made but its answer is lost; the retry with the same key gets that refund."""
    charge_id = charge(system.gateway)
    flaky = PaymentGateway(system.db, GatewayBehaviour(lost_response_rate=1.0))
    with pytest.raises(ResponseLostError):
        flaky.refund(charge_id=charge_id, amount_cents=None, idempotency_key="refund")
    retried = system.gateway.refund(charge_id=charge_id, amount_cents=None, idempotency_key="refund")
    assert retried.amount_cents == 4_599
    assert system.gateway.get_charge(charge_id).refunded_cents == 4_599


def test_amounts_must_be_whole_positive_cents(system: OrderSystem) -> None:
    """Floats, zero and negative amounts are refused before anything is sent."""
    for amount in (45.99, 0, -1):
        with pytest.raises(ValueError, match="positive integer"):
            system.gateway.charge(
                amount_cents=amount,  # type: ignore[arg-type]
                currency="usd",
                card_token="tok_visa",
                reference="o-1",
                idempotency_key="k",
            )
    assert charges(system) == 0
