"""The headers every dashboard response carries, and the plain 500 page an unexpected error gets.

The Content-Security-Policy allows scripts, styles, images and fetches from the dashboard's own origin
only: no inline script, no inline style (the pages and their SVG charts style themselves with classes from
``static/dashboard.css``), no plugins, no framing by any page (``frame-ancestors 'none'``), and forms that
post only back to the dashboard.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
)
"""Set on every response (pages, static files, redirects and errors alike)."""

log = logging.getLogger("conveyor.web.dashboard")

_ERROR_PAGE = (
    b"<!doctype html><html lang=en><meta charset=utf-8><title>Error - conveyor</title>"
    b"<h1>Something went wrong</h1><p>The server could not show this page; its log says why.</p></html>"
)


class SecurityHeaders:
    """ASGI middleware: adds :data:`SECURITY_HEADERS` to every response, ``Cache-Control: no-store`` to
    every one but static files', and answers an unexpected error with a plain 500 page (no trace: the
    error goes to the ``conveyor.web.dashboard`` log)."""

    def __init__(self, app: ASGIApp, *, static_prefix: str = "/static/") -> None:
        self.app = app
        self.static_prefix = static_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
        if root and path.startswith(root):
            path = path[len(root) :]
        cacheable = path.startswith(self.static_prefix)
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.decode("latin-1").lower() not in _SET_HERE
                ]
                headers.extend((name.encode(), value.encode()) for name, value in SECURITY_HEADERS)
                if not cacheable:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("dashboard page %s failed", scope.get("path"))
            if started:
                raise
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"text/html; charset=utf-8")],
                }
            )
            await send_with_headers({"type": "http.response.body", "body": _ERROR_PAGE})


_SET_HERE = frozenset(name for name, _ in SECURITY_HEADERS) | {"cache-control"}
