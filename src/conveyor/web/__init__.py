"""conveyor over HTTP: the REST API, the dashboard, and the bearer tokens every door needs.

Needs the ``web`` extra (``pip install 'conveyor[web]'``): FastAPI, uvicorn and Jinja2. The names below
are imported when first used, so that ``conveyor.web.tokens`` works without the extra::

    from conveyor.web import ApiTokens, api_app, create_server
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.web.api import api_app
    from conveyor.web.server import create_server
    from conveyor.web.tokens import ApiTokens, Role

__all__ = ["ApiTokens", "Role", "api_app", "create_server"]

_WHERE = {
    "ApiTokens": "conveyor.web.tokens",
    "Role": "conveyor.web.tokens",
    "api_app": "conveyor.web.api",
    "create_server": "conveyor.web.server",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'conveyor.web' has no attribute {name!r}")
    try:
        module = importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name in ("fastapi", "starlette", "uvicorn"):
            raise ImportError(
                f"conveyor.web.{name} needs the web extra: pip install 'conveyor[web]' "
                f"({exc.name} is missing)"
            ) from exc
        raise
    return getattr(module, name)
