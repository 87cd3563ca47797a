"""The body limit: a request body over it is refused with 413 before anything reads or parses it.

:class:`BodyLimit` wraps an ASGI app. A ``Content-Length`` over the limit is refused at once, unread; a
body without one (chunked) is counted as it arrives and refused as soon as it passes the limit. A body
within the limit is read whole first and handed on, so the app parses only what was counted, and a client
that promises a small body and sends a large one is refused all the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from conveyor.errors import InvalidArgumentError
from conveyor.web.problems import problem_response

DEFAULT_MAX_BODY_BYTES = 1 << 20
"""The largest request body accepted unless configured otherwise: 1 MiB."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def check_max_body_bytes(value: object) -> int:
    """A body limit: a whole number of bytes, at least 1."""
    if type(value) is not int or value < 1:
        raise InvalidArgumentError(
            f"max_body_bytes must be a whole number of bytes >= 1, not {value!r}", argument="max_body_bytes"
        )
    return value


def _too_large(limit: int) -> str:
    return f"the request body is over the limit of {limit:,} bytes"


class BodyLimit:
    """ASGI middleware refusing, with a 413 problem, any HTTP request whose body is over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = check_max_body_bytes(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the client to disconnect

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(413, _too_large(self.max_bytes), headers={"Connection": "close"})
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
