"""Bearer tokens: who may call a conveyor door (the REST API, the dashboard, the metrics, an app's own API).

Every network door conveyor opens needs a token. A token is at least :data:`MIN_TOKEN_LENGTH` printable
ASCII characters without spaces, and stands for whatever its door grants: a :class:`Role` for conveyor's
own server, a customer for the order application's API. A :class:`TokenTable` keeps only the tokens'
SHA-256 digests and compares a request's digest with every one of them with :func:`hmac.compare_digest`,
so how long a check takes says nothing about any token.

The server's tokens come from the environment (see :meth:`ApiTokens.from_environment`)::

    CONVEYOR_ADMIN_TOKENS=3f9a...   # comma-separated: read everything, start, signal, cancel, retry
    CONVEYOR_READ_TOKENS=b71c...    # comma-separated: read everything, change nothing
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

from conveyor.errors import ConfigurationError

T = TypeVar("T")

MIN_TOKEN_LENGTH = 16
"""The shortest token accepted: shorter ones are guessable."""
ADMIN_TOKENS_VARIABLE = "CONVEYOR_ADMIN_TOKENS"
READ_TOKENS_VARIABLE = "CONVEYOR_READ_TOKENS"


class Role(enum.Enum):
    """What a token of conveyor's server may do: ``read`` everything, or also change runs (``admin``)."""

    READ = "read"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """Whether a token of this role may do what needs ``needed`` (admin may do everything)."""
        return self is Role.ADMIN or needed is Role.READ


def check_token(token: object, where: str) -> str:
    """``token`` if it is a well-formed token, else :class:`ConfigurationError` naming ``where`` it came
    from (the token itself is never put in a message)."""
    if not isinstance(token, str):
        raise ConfigurationError(f"{where}: a token is a string, not {type(token).__name__}")
    if len(token) < MIN_TOKEN_LENGTH or not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigurationError(
            f"{where}: each token must be at least {MIN_TOKEN_LENGTH} printable ASCII characters, no spaces"
        )
    return token


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for no header or another scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


class TokenTable(Generic[T]):
    """Tokens, each standing for a value (a role, a customer), found in constant time."""

    def __init__(self, grants: Iterable[tuple[str, T]] = (), *, where: str = "tokens") -> None:
        self._grants: list[tuple[bytes, T]] = []
        seen: set[bytes] = set()
        for token, value in grants:
            digest = _digest(check_token(token, where))
            if digest in seen:
                raise ConfigurationError(f"{where}: a token is given twice")
            seen.add(digest)
            self._grants.append((digest, value))

    def __len__(self) -> int:
        return len(self._grants)

    def find(self, token: str | None) -> T | None:
        """What ``token`` stands for, or None. Every token is compared, found or not."""
        if token is None:
            return None
        given = _digest(token)
        found: T | None = None
        for digest, value in self._grants:
            if hmac.compare_digest(given, digest):
                found = value
        return found

    def find_bearer(self, authorization: str | None) -> T | None:
        """What the token of an ``Authorization: Bearer`` header stands for, or None."""
        return self.find(bearer_token(authorization))


class ApiTokens(TokenTable[Role]):
    """The tokens conveyor's server accepts, each with its :class:`Role`."""

    def __init__(self, *, admin: Iterable[str] = (), read: Iterable[str] = ()) -> None:
        grants = [(token, Role.ADMIN) for token in admin] + [(token, Role.READ) for token in read]
        super().__init__(grants, where=f"{ADMIN_TOKENS_VARIABLE} / {READ_TOKENS_VARIABLE}")
        if not len(self):
            raise ConfigurationError(
                f"conveyor's server needs tokens: set {ADMIN_TOKENS_VARIABLE} (and {READ_TOKENS_VARIABLE} "
                f"for read-only callers), comma-separated, each at least {MIN_TOKEN_LENGTH} characters; "
                "every request must carry one as 'Authorization: Bearer <token>'"
            )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ApiTokens:
        """The tokens in ``$CONVEYOR_ADMIN_TOKENS`` and ``$CONVEYOR_READ_TOKENS`` (comma-separated)."""
        env = os.environ if environ is None else environ
        return cls(
            admin=_listed(env.get(ADMIN_TOKENS_VARIABLE, "")), read=_listed(env.get(READ_TOKENS_VARIABLE, ""))
        )

    def role(self, authorization: str | None) -> Role | None:
        """The role of an ``Authorization: Bearer`` header's token; None if it is nobody's."""
        return self.find_bearer(authorization)


def _listed(text: str) -> list[str]:
    return [token.strip() for token in text.split(",") if token.strip()]
