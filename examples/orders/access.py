"""Who may call the order API: every request carries a bearer token, a customer's or an admin's.

The tokens come from the environment of ``python -m examples.orders serve``:

- ``ORDERS_API_TOKENS``: a JSON object from each customer's token to the customer's id,
  ``{"3f9a…": "ada", "b71c…": "bob"}``. A customer places orders, and sees and cancels only their own
  (another's order is a 404, as if it did not exist);
- ``ORDERS_ADMIN_TOKEN``: a token that sees and cancels every order (it places none).

With neither, there is no API: :func:`examples.orders.api.create_app` refuses to build one and ``serve``
exits naming these variables. A token is at least :data:`MIN_TOKEN_LENGTH` printable ASCII characters
without spaces. Tokens are held as SHA-256 digests and a request's token is looked up by its digest, so
how long a comparison takes says nothing about any token.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

TOKENS_VARIABLE = "ORDERS_API_TOKENS"
ADMIN_VARIABLE = "ORDERS_ADMIN_TOKEN"
MIN_TOKEN_LENGTH = 16
"""The shortest token accepted: shorter ones are guessable."""
MAX_CUSTOMER_ID_LENGTH = 100


class AccessConfigurationError(ValueError):
    """The API's tokens are missing or malformed; the message names the variable to set."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request: a customer (by id), or an admin."""

    customer_id: str | None
    is_admin: bool = False

    def may_see(self, owner: str) -> bool:
        """Whether this caller may see, and cancel, an order placed by customer ``owner``."""
        return self.is_admin or (self.customer_id is not None and self.customer_id == owner)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def _check_token(token: object, where: str) -> str:
    if not isinstance(token, str):
        raise AccessConfigurationError(f"{where}: a token is a string, not {type(token).__name__}")
    if len(token) < MIN_TOKEN_LENGTH or not token.isascii() or not token.isprintable() or " " in token:
        raise AccessConfigurationError(
            f"{where}: each token must be at least {MIN_TOKEN_LENGTH} printable ASCII characters, no spaces"
        )
    return token


def _check_customer(customer: object, where: str) -> str:
    if (
        not isinstance(customer, str)
        or not customer.strip()
        or not customer.isprintable()
        or len(customer) > MAX_CUSTOMER_ID_LENGTH
    ):
        raise AccessConfigurationError(
            f"{where}: a customer id is printable text of 1 to {MAX_CUSTOMER_ID_LENGTH} characters, "
            f"not {customer!r}"
        )
    return customer


class ApiAccess:
    """The tokens the API accepts, and whose each is."""

    def __init__(self, customers: Mapping[str, str] | None = None, admin_tokens: Iterable[str] = ()) -> None:
        self._callers: dict[bytes, Caller] = {}
        for token, customer in (customers or {}).items():
            where = f"{TOKENS_VARIABLE} (customer {customer!r})"
            self._add(_check_token(token, where), Caller(_check_customer(customer, where)))
        for token in admin_tokens:
            self._add(_check_token(token, ADMIN_VARIABLE), Caller(None, is_admin=True))

    def _add(self, token: str, caller: Caller) -> None:
        digest = _digest(token)
        if digest in self._callers:
            raise AccessConfigurationError(
                f"a token is given twice (in {TOKENS_VARIABLE} or {ADMIN_VARIABLE})"
            )
        self._callers[digest] = caller

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ApiAccess:
        """The tokens in ``$ORDERS_API_TOKENS`` and ``$ORDERS_ADMIN_TOKEN`` (see the module's doc)."""
        env = os.environ if environ is None else environ
        customers: dict[str, str] = {}
        text = env.get(TOKENS_VARIABLE, "").strip()
        if text:
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise AccessConfigurationError(
                    f"{TOKENS_VARIABLE} must be a JSON object from token to customer id: {exc}"
                ) from None
            if not isinstance(parsed, dict):
                raise AccessConfigurationError(
                    f"{TOKENS_VARIABLE} must be a JSON object from token to customer id"
                )
            customers = parsed
        admin = env.get(ADMIN_VARIABLE, "").strip()
        return cls(customers, [admin] if admin else [])

    def __len__(self) -> int:
        return len(self._callers)

    def require_tokens(self) -> None:
        """Raise :class:`AccessConfigurationError` when no token is configured: a door with no lock."""
        if not self._callers:
            raise AccessConfigurationError(
                f"the order API needs tokens: set {TOKENS_VARIABLE} (a JSON object from each customer's "
                f"token to their id) and/or {ADMIN_VARIABLE}; every request must carry one"
            )

    def caller(self, authorization: str | None) -> Caller | None:
        """Who an ``Authorization: Bearer <token>`` header belongs to; None if nobody's."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self._callers.get(_digest(token.strip()))
