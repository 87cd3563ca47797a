"""The order API's request and answer bodies, checked strictly at the door.

Every body is strict: a JSON string is never turned into a number or a boolean (``"quantity": "3"`` is a
422 naming ``items.0.quantity``), and unknown fields are refused. Text fields hold printable text only:
NUL, control characters and lone surrogates are refused naming the field, before anything reaches a
database (PostgreSQL refuses NUL in text, and would answer 500). A card arrives as ``card_number``, held
as a :class:`~pydantic.SecretStr` so that no log, error or repr shows it, and is tokenised by the API
before anything is stored; or as ``card_token``, a token a client-side tokeniser already made.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from examples.orders.adapters.payments import InvalidCardNumberError, check_card_number
from examples.orders.domain import CardToken

EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
ORDER_ID = r"^[A-Za-z0-9_.:-]{1,200}$"
"""What an order id in a path may look like (the API's are 32 hex digits; the YAML checkout's are run ids)."""


def _describe(character: str) -> str:
    if character == "\x00":
        return "NUL"
    if "\ud800" <= character <= "\udfff":
        return "a lone surrogate"
    return f"the control character U+{ord(character):04X}"


def printable(value: str) -> str:
    """``value`` if it holds printable text only; else ``ValueError`` naming what it holds (not where)."""
    for character in value:
        if not character.isprintable():
            raise ValueError(f"must be printable text, but holds {_describe(character)}")
    return value


Text = Annotated[str, AfterValidator(printable)]
"""A string of printable text: no NUL, no control characters, no lone surrogates."""


def _card_number(value: SecretStr) -> SecretStr:
    try:
        check_card_number(value.get_secret_value())
    except InvalidCardNumberError as exc:
        raise ValueError(str(exc)) from None  # the message never repeats the number
    return value


CardNumber = Annotated[SecretStr, AfterValidator(_card_number)]
"""A card number: 12 to 19 digits with a valid check digit, kept secret (shown as ``**********``)."""


class ItemIn(BaseModel):
    """One line of an order as submitted."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sku: Text = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0, le=1_000)


class OrderIn(BaseModel):
    """An order as submitted to ``POST /orders``: pay with ``card_number`` or with ``card_token``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    customer_email: Text = Field(pattern=EMAIL, max_length=254)
    card_number: CardNumber | None = None
    """The card, tokenised by the API at once: only its token and last four digits are kept."""
    card_token: CardToken | None = Field(default=None, max_length=68)
    """A token for the card that a client-side tokeniser made (``tok_…``); never a card number."""
    shipping_address: Text = Field(min_length=1, max_length=500)
    items: list[ItemIn] = Field(min_length=1, max_length=50)
    allow_partial: bool = False
    """Ship what is on the shelf and drop the rest (seed 000's partial fulfilment), instead of failing."""

    @model_validator(mode="after")
    def _one_card(self) -> OrderIn:
        if (self.card_number is None) == (self.card_token is None):
            raise ValueError("give card_number or card_token (exactly one)")
        return self


class OrderAccepted(BaseModel):
    """The answer to ``POST /orders``."""

    order_id: str
    workflow_id: str
    status: str
    status_url: str
