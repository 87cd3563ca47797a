"""Rendering the dashboard's pages: the Jinja2 environment (autoescape on everywhere, SVG included) and
the filters the templates format values with."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from conveyor.web.dashboard.sessions import Visitor

MAX_VALUE_CHARACTERS = 4000
"""How much of a stored value (an input, a result, an output) a page shows; the rest is cut, and said so."""


def when(moment: float | dt.datetime | None) -> str:
    """A moment (epoch seconds or an aware datetime) as ``2026-12-01 19:20:49 UTC``; ``-`` for None."""
    if moment is None:
        return "-"
    if isinstance(moment, dt.datetime):
        moment = moment.timestamp()
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def clock(moment: float) -> str:
    """An event's time of day (UTC, epoch seconds given) to the millisecond: ``19:20:49.759``."""
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%H:%M:%S.%f")[:-3]


def datum(value: Any) -> str:
    """One value of an event's data, short: text as it is, a due time as a time, the rest as JSON."""
    if isinstance(value, str):
        return value if len(value) <= 300 else value[:299] + "…"
    if isinstance(value, float) and value > 1e9:  # an epoch time (due_at, until)
        return clock(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return orjson.dumps(value, default=str).decode()


def seconds(value: float | None) -> str:
    """A duration a person reads at a glance: ``850 ms``, ``12.4 s``, ``3 min 5 s``, ``2 h 4 min``."""
    if value is None or not math.isfinite(value):
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms" if value >= 0.001 else f"{value * 1000:.2f} ms"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"


def percent(value: float | None) -> str:
    """A share as ``97.5%``; ``-`` for None."""
    return "-" if value is None else f"{value * 100:.1f}%"


def json_text(value: Any) -> str:
    """A JSON value, indented, cut past :data:`MAX_VALUE_CHARACTERS` (and said so)."""
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str).decode()
    if len(text) > MAX_VALUE_CHARACTERS:
        return f"{text[:MAX_VALUE_CHARACTERS]}\n… ({len(text) - MAX_VALUE_CHARACTERS} more characters)"
    return text


def run_path(workflow_id: str) -> str:
    """The path of a run's page (below the dashboard's root)."""
    return "/runs/" + quote(workflow_id, safe="")


class Templates:
    """The dashboard's templates and how a page is answered with one."""

    def __init__(self, *, refresh_seconds: float) -> None:
        self.refresh_seconds = refresh_seconds
        self.environment = Environment(
            loader=PackageLoader("conveyor.web.dashboard", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.environment.filters.update(
            when=when,
            clock=clock,
            datum=datum,
            seconds=seconds,
            percent=percent,
            json_text=json_text,
            run_path=run_path,
        )

    def page(
        self,
        request: Request,
        name: str,
        *,
        visitor: Visitor | None,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """``name`` rendered for ``visitor`` (None on the sign-in page) with ``context``."""
        root = str(request.scope.get("root_path", "")).rstrip("/")

        def link(path: str, **query: Any) -> str:
            kept = {key: value for key, value in query.items() if value not in (None, "")}
            return root + path + ("?" + urlencode(kept) if kept else "")

        body = self.environment.get_template(name).render(
            visitor=visitor,
            link=link,
            refresh_seconds=self.refresh_seconds,
            path=request.url.path,
            **context,
        )
        return HTMLResponse(body, status_code=status_code)
