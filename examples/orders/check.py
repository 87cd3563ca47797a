"""The invariant check: what must hold on any database the application ran on, however it was treated.

``python -m examples.orders check --db URL`` prints each invariant with its evidence and exits 1 if one
fails. The invariants:

1. no order was charged twice;
2. the gateway's captured minus refunded equals the total of the completed orders, to the cent (and, order
   by order, a completed order is charged its total and any other order nothing);
3. no SKU is below zero, and each SKU's stock is what was received minus what completed orders took;
4. every failed or cancelled order is refunded (if it was charged), its reservation released and its
   shipping label cancelled;
5. every submitted order is in a final state (completed, failed or cancelled);
6. every completed order got exactly one confirmation email, and no failed order got one.
"""

from __future__ import annotations

from dataclasses import dataclass

from examples.orders.adapters import audit
from examples.orders.adapters.db import Database
from examples.orders.domain import FINAL_STATES, format_cents
from examples.orders.services import CONFIRMATION


@dataclass(frozen=True, slots=True)
class Invariant:
    """One invariant: whether it holds, and the evidence either way."""

    name: str
    holds: bool
    detail: str


def _sample(items: list[str], limit: int = 3) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def check_invariants(db: Database) -> list[Invariant]:
    """Check every invariant against the database ``db`` (read only)."""
    with db.transaction(readonly=True) as tx:
        twice = audit.orders_charged_more_than_once(tx)
        captured, refunded, completed_total = audit.money(tx)
        nets = audit.net_charged_per_order(tx)
        shelf = audit.stock(tx)
        sold = audit.units_sold(tx)
        unreleased = audit.unreleased_reservations(tx)
        labels = audit.live_labels_of_ended_orders(tx)
        by_status = audit.orders_by_status(tx)
        emails = audit.confirmations_per_order(tx, CONFIRMATION)
    results = []

    results.append(
        Invariant(
            "no order charged twice",
            not twice,
            "every order has at most one successful charge"
            if not twice
            else f"charged more than once: {_sample([f'{o} ({n}x)' for o, n in twice])}",
        )
    )

    wrong = [
        f"{order} {status}: {format_cents(net)} charged, total {format_cents(total)}"
        for order, status, total, net in nets
        if net != (total if status == "completed" else 0)
    ]
    net = captured - refunded
    results.append(
        Invariant(
            "captured - refunded = completed orders' total",
            net == completed_total and not wrong,
            f"{format_cents(captured)} - {format_cents(refunded)} = {format_cents(net)}; "
            f"completed orders: {format_cents(completed_total)}"
            + (f"; per order: {_sample(wrong)}" if wrong else ""),
        )
    )

    negative = [sku for sku, available, _ in shelf if available < 0]
    off = [
        f"{sku} has {available}, expected {received - sold.get(sku, 0)}"
        for sku, available, received in shelf
        if available != received - sold.get(sku, 0)
    ]
    units = sum(sold.values())
    results.append(
        Invariant(
            "stock = received - sold, never below zero",
            not negative and not off,
            f"{len(shelf)} SKUs, {units} units sold"
            + (f"; below zero: {_sample(negative)}" if negative else "")
            + (f"; {_sample(off)}" if off else ""),
        )
    )

    ended = sum(count for status, count in by_status.items() if status in ("failed", "cancelled"))
    problems = [
        f"{order} ({status}) still charged {format_cents(net)}"
        for order, status, _, net in nets
        if status in ("failed", "cancelled") and net != 0
    ]
    problems += [f"{order} ({status}) reservation {held}" for order, status, held in unreleased]
    problems += [f"{order} ({status}) shipping label still live" for order, status in labels]
    results.append(
        Invariant(
            "failed/cancelled orders refunded and released",
            not problems,
            f"{ended} failed or cancelled orders: refunded, restocked, labels cancelled"
            if not problems
            else _sample(problems),
        )
    )

    open_orders = {status: count for status, count in by_status.items() if status not in FINAL_STATES}
    total = sum(by_status.values())
    results.append(
        Invariant(
            "every order in a final state",
            not open_orders,
            f"{total} orders: "
            + ", ".join(f"{count} {status}" for status, count in sorted(by_status.items())),
        )
    )

    missing = [
        f"{order} ({count})" for order, status, count in emails if status == "completed" and count != 1
    ]
    unearned = [f"{order} ({status})" for order, status, count in emails if status == "failed" and count]
    completed = sum(1 for _, status, _ in emails if status == "completed")
    results.append(
        Invariant(
            "one confirmation per completed order",
            not missing and not unearned,
            f"{completed} completed orders, each emailed once"
            if not missing and not unearned
            else "; ".join(
                part
                for part in (
                    f"not exactly one: {_sample(missing)}" if missing else "",
                    f"failed but emailed: {_sample(unearned)}" if unearned else "",
                )
                if part
            ),
        )
    )
    return results


def render(results: list[Invariant]) -> str:
    """The results as plain text, one line each."""
    return "\n".join(f"{'ok  ' if r.holds else 'FAIL'}  {r.name}: {r.detail}" for r in results)


def run_check(url: str) -> int:
    """Check the database at ``url``, print the results, and return the exit status (1 if one fails)."""
    db = Database(url)
    try:
        results = check_invariants(db)
    finally:
        db.close()
    print(render(results))
    return 0 if all(result.holds for result in results) else 1
