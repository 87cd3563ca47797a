"""How much watching conveyor costs: the same build measured with its observation on and off.

``BENCH_OBSERVE=quiet`` (the baseline of ``run.py --against-quiet``) turns the event history off; any other
value (the default) keeps it on and adds what a watched deployment runs in process: the Prometheus metrics
and one in-process subscriber that reads every event. A build older than the history ignores both.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

QUIET = os.environ.get("BENCH_OBSERVE") == "quiet"
seen = [0]


def _subscriber(events: Sequence[Any]) -> None:
    seen[0] += len(events)


def observed(backend: Any) -> Any:
    """``backend`` set up as the run asks: history off when quiet, else metrics and a subscriber on."""
    if QUIET:
        backend.records_history = False
        return backend
    add_listener = getattr(backend, "add_listener", None)
    if add_listener is None:  # a build without the event history
        return backend
    import inspect

    from conveyor.runtime.metrics import Metrics

    metrics = Metrics(lambda: backend)
    if "stored_rows" in inspect.signature(add_listener).parameters:  # as the runtime adds it
        add_listener(metrics.count, stored_rows=True)
    else:  # a build whose metrics counted Event values
        add_listener(metrics.count)
    add_listener(_subscriber)
    return backend


def runtime_options() -> dict[str, Any]:
    """What the workers' runtime is built with: history off when quiet, else metrics on."""
    import inspect

    from conveyor import Conveyor

    accepted = inspect.signature(Conveyor).parameters
    if "history" not in accepted:
        return {}
    return {"history": False} if QUIET else {"metrics": True}
