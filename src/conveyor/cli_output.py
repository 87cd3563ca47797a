"""What the ``conveyor`` command prints: tables for people (with ``rich``), JSON for scripts, progress.

Each command prints either way through one :class:`Output`: with ``--json``, one JSON document on stdout
and nothing else there (times in ISO 8601, UTC); without, aligned tables. Progress (prune's batches, a
``start --wait``, a migration) goes to stderr, and only when stderr is a terminal, so a pipe or a log file
never holds a spinner. Everything a run recorded (ids, errors, results) is printed as plain text: never as
``rich`` markup, with control characters (a terminal's escape sequences among them) shown escaped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from conveyor.cli_arguments import one_line
from conveyor.core.history import Event
from conveyor.core.records import Failure, RunSummary
from conveyor.engine.status import WorkflowStatus
from conveyor.observe.analytics import Bottlenecks, Performance

if TYPE_CHECKING:  # rich is imported when something is drawn: a worker starting up never pays for it
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text

PIPED_WIDTH = 200
"""How wide tables are when stdout is not a terminal (``$COLUMNS`` when set): wide enough that a line per
row survives ``grep``."""
LONGEST_CELL = 160
"""The most characters of one value a table shows (``--json`` shows all of it)."""


def _columns() -> int:
    value = os.environ.get("COLUMNS", "").strip()
    return int(value) if value.isdigit() else 0


def _json_default(value: object) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def as_json(value: Any) -> str:
    """``value`` as the JSON the commands print: indented, times in ISO 8601."""
    return json.dumps(value, indent=2, default=_json_default, ensure_ascii=False)


def plain(value: object, limit: int = LONGEST_CELL) -> Text:
    """``value`` as one line of plain text: never markup, control characters escaped, at most ``limit``."""
    from rich.text import Text

    shown = one_line(value) if isinstance(value, str) else str(value)
    shown = "".join(character if character.isprintable() else repr(character)[1:-1] for character in shown)
    if len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return Text(shown)


def redacted(url: str) -> str:
    """``url`` with its password, if it has one, shown as ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def when(moment: dt.datetime | float | None) -> str:
    """A time in UTC, to the second (empty for none)."""
    if moment is None:
        return ""
    if not isinstance(moment, dt.datetime):
        moment = dt.datetime.fromtimestamp(moment, dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def took(seconds: float | None) -> str:
    """A duration for people: ``12.3 ms``, ``4.56 s``, ``3m 05s``, ``2h 10m`` (empty for none)."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def share(rate: float | None) -> str:
    """A rate as a percentage (empty for none)."""
    return "" if rate is None else f"{rate * 100:.1f}%"


def _failure(error: Failure | None) -> str:
    if error is None:
        return ""
    return f"{error.error_type}: {error.message}"


def _json_text(value: Any) -> str:
    return "" if value is None else json.dumps(value, default=str, ensure_ascii=False)


def _table(*columns: str) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


class Output:
    """Where a command prints: its results on stdout (tables, or JSON with ``--json``), progress and
    notes on stderr."""

    def __init__(self, *, json: bool) -> None:
        from rich.console import Console

        self.json = json
        piped = not sys.stdout.isatty()
        width = (_columns() or PIPED_WIDTH) if piped else None
        self.console = Console(file=sys.stdout, highlight=False, markup=False, width=width)
        self.errors = Console(file=sys.stderr, highlight=False, markup=False)

    def data(self, value: Any) -> None:
        """Print ``value`` as the command's JSON document."""
        print(as_json(value), file=sys.stdout, flush=True)

    def show(self, *renderables: RenderableType | str) -> None:
        """Print tables or lines for people (piped: without the blanks that pad a line's last cell)."""
        for renderable in renderables:
            if self.console.is_terminal:
                self.console.print(renderable, soft_wrap=isinstance(renderable, str))
                continue
            with self.console.capture() as captured:
                self.console.print(renderable, soft_wrap=isinstance(renderable, str))
            lines = captured.get().splitlines()
            sys.stdout.write("".join(line.rstrip() + "\n" for line in lines))
        sys.stdout.flush()

    def note(self, line: str) -> None:
        """A line for people on stderr (never part of what a script reads)."""
        self.errors.print(line, soft_wrap=True)

    @contextlib.contextmanager
    def progress(self, description: str) -> Iterator[Callable[[str], None] | None]:
        """A live progress line on stderr while the block runs, and a function that changes what it says;
        None when stderr is not a terminal (then nothing is shown)."""
        if not sys.stderr.isatty():
            yield None
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=self.errors, transient=True) as progress:
            task = progress.add_task(plain(description).plain, total=None)

            def update(line: str) -> None:
                progress.update(task, description=plain(line).plain)

            yield update

    def run(self, status: WorkflowStatus) -> None:
        """Print one run with its steps (``status.to_dict()`` with ``--json``)."""
        if self.json:
            self.data(status.to_dict())
            return
        self.show(run_table(status), steps_table(status))
        actions = status.operator_actions
        if actions:
            table = _table("DONE BY HAND", "BY", "AT (UTC)", "STEP", "REASON")
            for action in actions:
                table.add_row(
                    plain(action.action),
                    plain(action.by),
                    when(action.at),
                    plain(action.step or ""),
                    plain(action.reason),
                )
            self.show(table)


def run_table(status: WorkflowStatus) -> Table:
    """A run's own fields, one per line: id, workflow, state, correlation id, times, output or error."""
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    state = status.state.value + (" (paused)" if status.is_paused() else "")
    rows: list[tuple[str, str]] = [
        ("run", status.workflow_id),
        ("workflow", f"{status.workflow_name}@{status.workflow_version}"),
        ("state", state),
        ("correlation id", status.correlation_id or ""),
        ("created (UTC)", when(status.created_at)),
        ("updated (UTC)", when(status.updated_at)),
    ]
    optional = [
        ("parent run", status.parent_id or ""),
        ("deadline (UTC)", when(status.deadline_at)),
        ("cancel reason", status.cancel_reason or ""),
        ("recoveries", str(status.recoveries) if status.recoveries else ""),
    ]
    rows.extend(row for row in optional if row[1])
    error = status.error()
    if error is not None:
        rows.append(("error", f"step {error.step_name}, attempt {error.attempts}: {_failure(error)}"))
    elif status.is_completed():
        rows.append(("output", _json_text(status.to_dict()["output"])))
    for name, value in rows:
        grid.add_row(name, plain(value))
    return grid


def steps_table(status: WorkflowStatus) -> Table:
    """A run's steps: state, attempts, duration, when started, result and error."""
    table = _table("STEP", "STATE", "ATTEMPTS", "DURATION", "STARTED (UTC)", "RESULT", "ERROR")
    for step in status.steps:
        error = _failure(step.error)
        if step.compensation_error is not None:
            error = f"{error}; undo: {_failure(step.compensation_error)}".lstrip("; ")
        table.add_row(
            plain(step.name),
            step.state.value,
            str(step.attempts),
            took(step.duration_seconds),
            when(step.started_at),
            plain(_json_text(step.result), 60),
            plain(error),
        )
    return table


def runs_table(runs: Sequence[RunSummary]) -> Table | str:
    """Runs as a table: id, workflow@version, state, correlation id, when recorded (UTC), what went wrong."""
    if not runs:
        return "no runs"
    table = _table("WORKFLOW ID", "WORKFLOW", "STATE", "CORRELATION ID", "CREATED (UTC)", "ERROR")
    for run in runs:
        state = run.state.value if run.state is not None else "unreadable"
        table.add_row(
            plain(run.workflow_id),
            plain(f"{run.workflow_name}@{run.workflow_version}"),
            state,
            plain(run.correlation_id or ""),
            when(run.created_at),
            plain(run.problem or run.error_message or ""),
        )
    return table


def history_table(events: Sequence[Event]) -> Table | str:
    """A run's events: seq, time (UTC, to the millisecond), kind, step and attempt, worker, details."""
    if not events:
        return "no events (the run was recorded with history off)"
    table = _table("SEQ", "AT (UTC)", "EVENT", "STEP", "WORKER", "DETAILS")
    for event in events:
        at = _utc(event.at, "%Y-%m-%d %H:%M:%S.%f")
        step = "" if event.step is None else event.step
        if event.attempt is not None:
            step += f" #{event.attempt}"
        details = " ".join(_detail(key, value) for key, value in event.data.items())
        table.add_row(str(event.seq), at, event.kind, plain(step), plain(event.worker or ""), plain(details))
    return table


def _detail(key: str, value: Any) -> str:
    """One item of an event's data, for people: durations in ms, times in UTC."""
    if key == "duration_seconds" and isinstance(value, int | float):
        return f"took={value * 1000:.1f}ms"
    if key.endswith("_at") and isinstance(value, int | float):
        return f"{key}={_utc(value, '%H:%M:%S.%f')}"
    return f"{key}={value}"


def _utc(moment: object, form: str) -> str:
    """An epoch time in UTC, to the millisecond; a value that is no such time (a newer version's time in
    milliseconds, a damaged row's text) as it is, so that one odd event never stops its run's history."""
    try:
        return dt.datetime.fromtimestamp(moment, dt.UTC).strftime(form)[:-3]  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return str(moment)


def performance_table(performance: Performance) -> Table | str:
    """Each workflow's finished runs in the window: how many, rates, throughput, durations, health."""
    if not performance.workflows:
        return "no run finished in the window"
    table = _table("WORKFLOW", "FINISHED", "SUCCESS", "FAILURE", "PER MIN", "P50", "P95", "P99", "HEALTH")
    for found in performance.workflows:
        table.add_row(
            plain(found.workflow),
            str(found.finished),
            share(found.success_rate),
            share(found.failure_rate),
            f"{found.throughput_per_minute:.2f}",
            took(found.duration_p50_seconds),
            took(found.duration_p95_seconds),
            took(found.duration_p99_seconds),
            f"{found.health_score:.0f}",
        )
    if len(performance.workflows) > 1:
        health = "" if performance.health_score is None else f"{performance.health_score:.0f}"
        table.add_row(
            "(all)",
            str(performance.finished),
            share(performance.success_rate),
            share(performance.failure_rate),
            f"{performance.throughput_per_minute:.2f}",
            "",
            "",
            "",
            health,
        )
    return table


def bottlenecks_table(bottlenecks: Bottlenecks) -> Table | str:
    """The window's steps, worst bottleneck first: durations, retry and failure rates, share of time."""
    if not bottlenecks.steps:
        return "no step ran in the window"
    table = _table(
        "RANK", "WORKFLOW", "STEP", "RUNS", "P50", "P95", "MEAN", "RETRIED", "FAILED", "TIME SHARE"
    )
    for step in bottlenecks.steps:
        table.add_row(
            str(step.rank),
            plain(step.workflow),
            plain(step.step) if not step.waits else plain(f"{step.step} (waits)"),
            str(step.executions),
            took(step.duration_p50_seconds),
            took(step.duration_p95_seconds),
            took(step.duration_mean_seconds),
            share(step.retry_rate),
            share(step.failure_rate),
            share(step.share_of_time),
        )
    return table


def window_line(performance: Performance) -> str:
    """The window the figures cover, for the line above them."""
    window = performance.window
    return f"runs finished from {when(window.since)} to {when(window.until)} UTC"
