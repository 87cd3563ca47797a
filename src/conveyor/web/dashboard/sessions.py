"""Who is looking at the dashboard: sign-in sessions, their CSRF tokens, and bearer callers.

A browser cannot send an ``Authorization`` header with a link, so a person signs in once by pasting a token
(see :mod:`conveyor.web.tokens`). The server checks it and opens a session: a random id, kept only in the
HttpOnly cookie, and on the server only as its SHA-256 digest, beside the token's role, the session's
CSRF token and its end. The cookie proves the token was given without being the token (nor anything a
token could be derived from), and signing out ends the session on the server, not only in the browser.
Sessions live in the process: a restart signs everyone out.

Scripts send ``Authorization: Bearer <token>`` instead; a request that carries that header is judged by
it alone (a wrong token is refused, never helped out by a cookie), and needs no CSRF token, since a page
of another site cannot make a browser send the header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from conveyor.web.tokens import ApiTokens, Role

COOKIE_NAME = "conveyor_session"
DEFAULT_SESSION_SECONDS = 8 * 3600.0
"""How long a sign-in lasts: a working day; then the person pastes the token again."""
DEFAULT_MAX_SESSIONS = 10_000
"""The most sessions kept at once; past it, the oldest is ended to make room."""


@dataclass(frozen=True, slots=True)
class Visitor:
    """Someone whose token was accepted: its role, and, for a signed-in browser, the session's CSRF token
    (None for a bearer caller, which needs none)."""

    role: Role
    csrf_token: str | None = None

    @property
    def is_admin(self) -> bool:
        """Whether the visitor may act on runs (retry, cancel, pause, unpause, signal)."""
        return self.role.allows(Role.ADMIN)

    def csrf_matches(self, given: str | None) -> bool:
        """Whether a form's CSRF token is this session's (always true for a bearer caller)."""
        if self.csrf_token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.csrf_token.encode())


@dataclass(frozen=True, slots=True)
class _Session:
    role: Role
    csrf_token: str
    ends_at: float


class Sessions:
    """The open sign-in sessions of one dashboard, keyed by the digest of their cookie's value."""

    def __init__(
        self,
        tokens: ApiTokens,
        *,
        lifetime_seconds: float = DEFAULT_SESSION_SECONDS,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = tokens
        self.lifetime_seconds = lifetime_seconds
        self.max_sessions = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[bytes, _Session] = {}

    def sign_in(self, token: str) -> tuple[str, Visitor] | None:
        """Open a session for ``token``: the cookie value and the visitor; None if the token is nobody's."""
        role = self.tokens.find(token.strip())
        if role is None:
            return None
        cookie = secrets.token_urlsafe(32)
        session = _Session(role, secrets.token_urlsafe(32), self._clock() + self.lifetime_seconds)
        with self._lock:
            self._drop_ended()
            while len(self._open) >= self.max_sessions:
                del self._open[min(self._open, key=lambda key: self._open[key].ends_at)]
            self._open[_key(cookie)] = session
        return cookie, Visitor(role, session.csrf_token)

    def visitor(self, cookie: str | None) -> Visitor | None:
        """The visitor a session cookie belongs to; None if it is no open session's."""
        if not cookie:
            return None
        with self._lock:
            session = self._open.get(_key(cookie))
            if session is None:
                return None
            if session.ends_at <= self._clock():
                del self._open[_key(cookie)]
                return None
        return Visitor(session.role, session.csrf_token)

    def sign_out(self, cookie: str | None) -> None:
        """End the session of ``cookie`` (nothing if there is none)."""
        if cookie:
            with self._lock:
                self._open.pop(_key(cookie), None)

    def bearer_visitor(self, authorization: str) -> Visitor | None:
        """The visitor an ``Authorization: Bearer`` header stands for; None if its token is nobody's."""
        role = self.tokens.role(authorization)
        return None if role is None else Visitor(role)

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def _drop_ended(self) -> None:
        now = self._clock()
        for key in [key for key, session in self._open.items() if session.ends_at <= now]:
            del self._open[key]


def _key(cookie: str) -> bytes:
    return hashlib.sha256(cookie.encode("utf-8", "replace")).digest()
