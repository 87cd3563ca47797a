"""Who may call the REST API: a bearer token on every request but the health check, checked first.

:class:`TokenGate` wraps the API's ASGI app and decides before anything reads the request's body or finds
its route: reading (``GET``, ``HEAD``) needs a token of either role, anything else (the actions) an admin
token. No token, or one the server did not issue, is a 401 problem with ``WWW-Authenticate: Bearer``; a
read token on an action is a 403. An unknown path without a token is a 401 too: the API's shape is not
shown to strangers. Tokens are compared in constant time (:class:`~conveyor.web.tokens.TokenTable`).
"""

from __future__ import annotations

from collections.abc import Collection

from fastapi import Security
from fastapi.security import HTTPBearer

from conveyor.web.limits import ASGIApp, Receive, Scope, Send
from conveyor.web.problems import problem_response
from conveyor.web.tokens import ApiTokens, Role

READING_METHODS = frozenset({"GET", "HEAD"})
"""The methods a read token may use; every other method needs an admin token."""

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="a token of $CONVEYOR_READ_TOKENS (GET only) or $CONVEYOR_ADMIN_TOKENS (everything)",
)
"""The API's security scheme, declared on its routes so that the OpenAPI schema names it; the check
itself is :class:`TokenGate`'s."""
SECURED = [Security(bearer_scheme)]
"""The ``dependencies`` of a route that needs a token (they only name the scheme in the OpenAPI)."""


def needed_role(method: str) -> Role:
    """The role a request with ``method`` needs: read to read, admin for anything else."""
    return Role.READ if method.upper() in READING_METHODS else Role.ADMIN


def route_path(scope: Scope) -> str:
    """The request's path inside the app it reached (without the prefix the app is mounted at)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


class TokenGate:
    """ASGI middleware: refuses a request without a token of the role its method needs (see module)."""

    def __init__(self, app: ASGIApp, tokens: ApiTokens, open_paths: Collection[str] = ()) -> None:
        self.app = app
        self.tokens = tokens
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in self.open_paths:
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        role = self.tokens.role(authorization)
        if role is None:
            detail = (
                "this request needs 'Authorization: Bearer <token>' with a token the server issued"
                if authorization is None
                else "the bearer token is not one the server issued"
            )
            response = problem_response(401, detail, headers={"WWW-Authenticate": 'Bearer realm="conveyor"'})
            await response(scope, receive, send)
            return
        needed = needed_role(scope["method"])
        if not role.allows(needed):
            response = problem_response(
                403, f"a {role.value} token may only read; {scope['method']} needs an admin token"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
