"""Who may call the order API: every request carries a bearer token, a customer's or an admin's.

The tokens come from the environment of ``python -m examples.orders serve``:

- ``ORDERS_API_TOKENS``: a JSON object from each customer's token to the customer's id,
  ``{"3f9a…": "ada", "b71c…": "bob"}``. A customer places orders, and sees and cancels only their own
  (another's order is a 404, as if it did not exist);
- ``ORDERS_ADMIN_TOKEN``: a token that sees and cancels every order (it places none).

With neither, there is no API: :func:`examples.orders.api.create_app` refuses to build one and ``serve``
exits naming these variables. A token is at least :data:`MIN_TOKEN_LENGTH` printable ASCII characters
without spaces. This is conveyor's own token scheme (:mod:`conveyor.web.tokens`, the one its REST API and
dashboard use): tokens are held as SHA-256 digests, and a request's token is compared with every one of
them in constant time, so how long a check takes says nothing about any token.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from conveyor.errors import ConfigurationError
from conveyor.web.tokens import MIN_TOKEN_LENGTH, TokenTable

TOKENS_VARIABLE = "ORDERS_API_TOKENS"
ADMIN_VARIABLE = "ORDERS_ADMIN_TOKEN"
__all__ = ["MIN_TOKEN_LENGTH", "AccessConfigurationError", "ApiAccess", "Caller"]
MAX_CUSTOMER_ID_LENGTH = 100


class AccessConfigurationError(ConfigurationError, ValueError):
    """The API's tokens are missing or malformed; the message names the variable to set."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request: a customer (by id), or an admin."""

    customer_id: str | None
    is_admin: bool = False

    def may_see(self, owner: str) -> bool:
        """Whether this caller may see, and cancel, an order placed by customer ``owner``."""
        return self.is_admin or (self.customer_id is not None and self.customer_id == owner)


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
        grants: list[tuple[str, Caller]] = []
        for token, customer in (customers or {}).items():
            where = f"{TOKENS_VARIABLE} (customer {customer!r})"
            grants.append((token, Caller(_check_customer(customer, where))))
        grants.extend((token, Caller(None, is_admin=True)) for token in admin_tokens)
        try:
            self._callers = TokenTable(grants, where=f"{TOKENS_VARIABLE} or {ADMIN_VARIABLE}")
        except ConfigurationError as exc:
            raise AccessConfigurationError(str(exc)) from None

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
        return self._callers.find_bearer(authorization)
