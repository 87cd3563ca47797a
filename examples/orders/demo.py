"""``python -m examples.orders demo``: the chaos scenario on a fresh SQLite file, with a live progress bar.

Three hundred orders go through two ``conveyor worker`` processes while the simulated gateway declines
cards, answers 503, loses responses and takes its time, the carrier refuses addresses, the email server
fails a third of the time, some customers cancel, and one worker is killed with SIGKILL halfway. The demo
ends with a table of what happened, a per-step bottleneck table for each workflow (``Conveyor.bottlenecks``
and ``Conveyor.performance`` over the demo's runs, computed in the database) and the invariant check, and
exits 1 if an invariant fails.

It ends by printing where conveyor's dashboard would show its runs; with ``--serve`` (``make demo
SERVE=1``) it then serves the dashboard and the REST API over the demo's database, with a worker, until
Ctrl-C, so that a newcomer can click through the compensated and cancelled orders (and retry one). The
admin token is ``$CONVEYOR_ADMIN_TOKENS`` when set, else a new one printed once, for this server only.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from conveyor import Bottlenecks, Performance
from conveyor.web.tokens import ADMIN_TOKENS_VARIABLE, ApiTokens
from examples.orders.chaos import Outcome, Scenario, percentile, run_chaos
from examples.orders.chaos import Progress as ChaosProgress
from examples.orders.workflows import shop_runtime


def fresh_database() -> str:
    """The URL of a new SQLite file in a new temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="orders-demo-"))
    return f"sqlite:///{folder / 'orders.db'}"


def _describe(state: ChaosProgress) -> str:
    counts = " ".join(f"{status}={count}" for status, count in sorted(state.by_status.items()))
    killed = f" [red]worker {state.killed_pid} killed[/red]" if state.killed_pid else ""
    return f"{state.phase}: {counts}{killed}"


def summary_table(outcome: Outcome) -> Table:
    """What the scenario did: orders by state, retries, compensations, latency."""
    table = Table(title="What happened", show_header=False)
    table.add_column("what")
    table.add_column("how many", justify="right")
    for status, count in sorted(outcome.by_status.items()):
        table.add_row(f"orders {status}", str(count))
    table.add_row("step retries (attempts after the first)", str(outcome.retries))
    table.add_row("runs compensated (undone, newest first)", str(outcome.compensated_runs))
    table.add_row("steps undone", str(outcome.undone_steps))
    table.add_row("runs resumed after the killed worker", str(outcome.recovered_runs))
    table.add_row("cancellations accepted", str(outcome.cancellations))
    table.add_row("same Idempotency-Key, same order", f"{outcome.replays_matched}/{outcome.replays}")
    table.add_row("emails sent (failed attempts retried)", f"{outcome.emails_sent} ({outcome.email_retries})")
    table.add_row("order latency p50", f"{percentile(outcome.latencies, 0.50):.2f} s")
    table.add_row("order latency p95", f"{percentile(outcome.latencies, 0.95):.2f} s")
    table.add_row("wall time", f"{outcome.elapsed_seconds:.1f} s")
    return table


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def bottleneck_tables(bottlenecks: Bottlenecks, performance: Performance) -> list[Table]:
    """One table per workflow of the demo's finished runs: its steps, worst bottleneck first, under its health
    score (both computed in the database by ``Conveyor.bottlenecks`` and ``Conveyor.performance``)."""
    tables = []
    for found in sorted(performance.workflows, key=lambda found: -found.finished):
        title = (
            f"{found.workflow}: {found.finished} runs, health {found.health_score:.1f}%, "
            "steps ranked as bottlenecks"
        )
        table = Table(title=title)
        for header in ("#", "step", "runs", "mean", "p50", "p95", "retry", "fail", "time"):
            table.add_column(header, justify="left" if header == "step" else "right", no_wrap=True)
        for rank, step in enumerate(bottlenecks.of_workflow(found.workflow), 1):
            share = "—" if step.share_of_time is None else f"{step.share_of_time:.0%}"
            table.add_row(
                str(rank),
                step.step + (" (waits)" if step.waits else ""),
                str(step.executions),
                _seconds(step.duration_mean_seconds),
                _seconds(step.duration_p50_seconds),
                _seconds(step.duration_p95_seconds),
                f"{step.retry_rate:.1%}",
                f"{step.failure_rate:.1%}",
                share,
            )
        tables.append(table)
    return tables


def invariant_table(outcome: Outcome) -> Table:
    """The invariant check, one row each."""
    table = Table(title="Invariants")
    table.add_column("")
    table.add_column("invariant")
    table.add_column("evidence")
    for invariant in outcome.invariants:
        mark = "[green]ok[/green]" if invariant.holds else "[bold red]FAIL[/bold red]"
        table.add_row(mark, invariant.name, invariant.detail)
    return table


DASHBOARD_PORT = 8000


def run_demo(
    url: str | None = None, orders: int = 300, *, serve: bool = False, port: int = DASHBOARD_PORT
) -> int:
    """Run the demo on ``url`` (a fresh SQLite file by default), then, with ``serve``, serve the dashboard
    over it on ``port`` until interrupted; the exit status."""
    console = Console()
    url = url or fresh_database()
    scenario = Scenario(orders=orders)
    console.print(f"[bold]conveyor orders demo[/bold]: {orders} orders, 2 workers, faults injected, on {url}")
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("starting", total=orders)

        def show(state: ChaosProgress) -> None:
            bar.update(task, completed=state.finished, description=_describe(state))

        started = time.time()
        outcome = run_chaos(url, scenario, show)
        bar.update(task, completed=sum(outcome.by_status.values()), description="done")
    console.print(summary_table(outcome))
    with shop_runtime(url) as shop:  # its steps' resources are never built: it only reads the analytics
        since, until = started - 1, time.time() + 1
        steps = shop.bottlenecks(since=since, until=until)
        for table in bottleneck_tables(steps, shop.performance(since=since, until=until)):
            console.print(table)
    console.print(invariant_table(outcome))
    if outcome.ok:
        console.print(
            f"[green]every invariant holds[/green] (database: {url}; workers' log: {outcome.worker_log})"
        )
    else:
        console.print(f"[bold red]an invariant failed[/bold red]; workers' log: {outcome.worker_log}")
    address = f"http://127.0.0.1:{port}/"
    if not serve:
        console.print(
            f"the dashboard: {address} over this database with [bold]make demo SERVE=1[/bold] "
            f"(or conveyor serve --app examples.orders.workflows:app --backend {url})"
        )
        return 0 if outcome.ok else 1
    status = serve_dashboard(console, url, port)
    return status if outcome.ok else 1


def serve_dashboard(console: Console, url: str, port: int) -> int:
    """Serve conveyor's dashboard and REST API over the demo's database ``url`` on ``port``, with a worker
    that drives what the dashboard retries, until Ctrl-C; the exit status."""
    from conveyor.web.serve import serve
    from examples.orders.system import OrderSystem

    given = os.environ.get(ADMIN_TOKENS_VARIABLE, "").strip()
    token = None if given else secrets.token_urlsafe(24)
    tokens = ApiTokens.from_environment() if given else ApiTokens(admin=[token or ""])
    system = OrderSystem.open(url, create_schema=False)
    try:
        with shop_runtime(url, system=system) as shop:
            console.print(
                f"[bold]the dashboard[/bold]: http://127.0.0.1:{port}/ (the REST API at /api); Ctrl-C stops"
            )
            if token is not None:
                console.print(f"sign in with this admin token (for this server only): [bold]{token}[/bold]")
            else:
                console.print(f"sign in with a token of ${ADMIN_TOKENS_VARIABLE}")
            return serve(shop, port=port, tokens=tokens, worker_slots=2)
    finally:
        system.close()
