"""Stock and reservations: held, confirmed or released, and never oversold, even under concurrency."""

from __future__ import annotations

import threading

import pytest
from examples.orders.adapters.db import Database
from examples.orders.adapters.inventory import Inventory, OutOfStockError
from examples.orders.system import OrderSystem


def available(system: OrderSystem) -> dict[str, int]:
    """Units on the shelf per SKU."""
    with system.db.transaction(readonly=True) as tx:
        return system.inventory.available(tx)


def test_a_reservation_takes_units_once_however_often_it_is_made(any_shop: OrderSystem) -> None:
    """Reserving for the same order again returns the first reservation and takes nothing more."""
    system = any_shop
    with system.db.transaction() as tx:
        first = system.inventory.reserve(tx, "res-1", "o-1", {"mug": 3, "kettle": 1})
    with system.db.transaction() as tx:
        again = system.inventory.reserve(tx, "res-other", "o-1", {"mug": 3, "kettle": 1})
    assert first == ("res-1", True)
    assert again == ("res-1", False)
    assert available(system) == {"kettle": 49, "matcha": 2, "mug": 47}


def test_a_short_line_reserves_nothing_at_all(any_shop: OrderSystem) -> None:
    """When one SKU is short the whole reservation rolls back, the lines that fitted included."""
    system = any_shop
    with (
        pytest.raises(OutOfStockError, match="matcha has 2 available, 3 wanted"),
        system.db.transaction() as tx,
    ):
        system.inventory.reserve(tx, "res-1", "o-1", {"mug": 1, "matcha": 3})
    assert available(system) == {"kettle": 50, "matcha": 2, "mug": 50}
    with system.db.transaction(readonly=True) as tx:
        assert system.inventory.reservation_of(tx, "o-1") is None


def test_release_puts_units_back_once_from_held_or_confirmed(any_shop: OrderSystem) -> None:
    """A held reservation is released once; a confirmed (shipped) one is restocked once too."""
    system = any_shop
    with system.db.transaction() as tx:
        system.inventory.reserve(tx, "res-1", "o-1", {"mug": 2})
        system.inventory.reserve(tx, "res-2", "o-2", {"mug": 5})
        assert system.inventory.confirm(tx, "res-2")
        assert not system.inventory.confirm(tx, "res-2")
    with system.db.transaction() as tx:
        released = [system.inventory.release(tx, reservation) for reservation in ("res-1", "res-1", "res-2")]
        again = system.inventory.release(tx, "res-2")
    assert released == [True, False, True]
    assert again is False
    assert available(system)["mug"] == 50
    with system.db.transaction(readonly=True) as tx:
        assert system.inventory.status(tx, "res-2") == "released"


def test_stock_cannot_go_below_zero_even_by_a_direct_update(any_shop: OrderSystem) -> None:
    """The CHECK constraint refuses a negative shelf whatever the code does."""
    system = any_shop
    with pytest.raises(Exception, match=r"(?i)check"), system.db.transaction() as tx:
        tx.execute("UPDATE stock SET available = available - 3 WHERE sku = 'matcha'")
    assert available(system)["matcha"] == 2


def test_fifty_concurrent_orders_for_the_last_ten_units_sell_exactly_ten(
    any_shop: OrderSystem, any_database_url: str
) -> None:
    """Fifty threads, each on its own connection, race for ten units: ten win, forty are refused."""
    system = any_shop
    with system.db.transaction() as tx:
        tx.execute("UPDATE stock SET available = 10 WHERE sku = 'kettle'")
    start = threading.Barrier(50)
    outcomes: list[str] = []
    lock = threading.Lock()

    def buy(number: int) -> None:
        with Database(any_database_url, max_connections=1) as db:
            with db.transaction(readonly=True) as tx:  # open the connection before the race starts
                tx.one("SELECT 1")
            start.wait()
            try:
                with db.transaction() as tx:
                    Inventory().reserve(tx, f"res-{number}", f"o-{number}", {"kettle": 1})
                outcome = "reserved"
            except OutOfStockError:
                outcome = "out of stock"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=buy, args=(number,)) for number in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes).count("reserved") == 10
    assert sorted(outcomes).count("out of stock") == 40
    assert available(system)["kettle"] == 0
    with system.db.transaction(readonly=True) as tx:
        assert tx.one("SELECT count(*) FROM reservations WHERE status = 'held'") == (10,)
        assert tx.one("SELECT sum(quantity) FROM reservation_lines WHERE sku = 'kettle'") == (10,)
