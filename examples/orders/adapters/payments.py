"""A payment gateway simulator that behaves like a real card provider, with its state in its own tables.

What a real provider does, and this one too:

- **Idempotency keys.** A charge or refund carries a key. The same key again replays the stored outcome
  (the charge, or the same decline) without charging twice; the same key with different parameters is
  refused with :class:`IdempotencyKeyReusedError`.
- **Tokens, not card numbers.** :meth:`PaymentGateway.tokenize_card` takes a card number and returns a
  :class:`CardToken` (``tok_…``, the brand and the last four digits); charges take the token. The vault
  (``gateway_cards``) keeps what the token stands for, never the number; :meth:`PaymentGateway.charge`
  refuses anything that is not a token (:class:`NotACardTokenError`), so a card number cannot reach a
  table by that road either.
- **Test cards.** The numbers in :data:`TEST_CARDS` behave as a provider's test cards do: ``4242 4242
  4242 4242`` and ``5555 5555 5555 4444`` succeed, ``4000 0000 0000 0002`` (and the insufficient-funds
  and expired ones) are declined. The fixed tokens ``tok_visa`` and ``tok_mastercard`` succeed;
  ``tok_chargeDeclined``, ``tok_chargeDeclinedInsufficientFunds`` and ``tok_chargeDeclinedExpiredCard``
  are declined (:class:`CardDeclinedError`, not worth retrying). A token the gateway never issued is
  declined as ``invalid_token``.
- **Faults**, set by :class:`GatewayBehaviour`: latency on every call, transient errors before anything
  happens (:class:`GatewayUnavailableError`), and responses lost after the charge or refund was made
  (:class:`ResponseLostError`): the caller cannot tell whether it went through, and must retry with the
  same key to find out.
- **Refunds** never exceed what a charge captured (a conditional update, and a ``CHECK`` behind it).

The state lives in ``gateway_charges`` and ``gateway_refunds``, so it outlives the process that made it:
a worker that dies mid-charge leaves the charge there for the next worker's retry to find.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import string
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from examples.orders.adapters.db import Database, Row, Transaction
from examples.orders.domain import Cents, is_card_token

DECLINING_CARDS = {
    "tok_chargeDeclined": "generic_decline",
    "tok_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "tok_chargeDeclinedExpiredCard": "expired_card",
}
"""Test card tokens the gateway declines, with the decline code it gives."""
ACCEPTED_TEST_TOKENS = frozenset({"tok_visa", "tok_mastercard"})
"""Fixed test tokens the gateway accepts (a provider's documented test tokens)."""
TEST_CARDS = {
    "4242424242424242": None,
    "5555555555554444": None,
    "4000000000000002": "generic_decline",
    "4000000000009995": "insufficient_funds",
    "4000000000000069": "expired_card",
}
"""Test card numbers and how their charges end: ``None`` succeeds, else the decline code."""


class GatewayError(Exception):
    """The payment gateway refused or failed a request."""


class CardDeclinedError(GatewayError):
    """The card was declined; retrying will not help."""

    def __init__(self, code: str, charge_id: str) -> None:
        self.code = code
        self.charge_id = charge_id
        super().__init__(f"card declined ({code}), charge {charge_id}")


class GatewayUnavailableError(GatewayError):
    """The gateway answered 503: nothing was done; try again later."""


class ResponseLostError(GatewayError):
    """The request timed out: it may or may not have been carried out. Retry with the same key."""


class IdempotencyKeyReusedError(GatewayError):
    """This idempotency key was used before with different parameters."""


class ChargeAlreadyRefundedError(GatewayError):
    """The charge has nothing left to refund."""


class RefundExceedsChargeError(GatewayError):
    """The refund is larger than what is left of the charge."""


class UnknownChargeError(GatewayError, LookupError):
    """No charge has this id."""


class NotACardTokenError(GatewayError, ValueError):
    """A charge was given something that is not a card token (a card number, say); nothing was charged."""


class InvalidCardNumberError(GatewayError, ValueError):
    """The card number is not one (not 12 to 19 digits, or its check digit is wrong)."""


@dataclass(frozen=True, slots=True)
class CardToken:
    """What a card is known by once it was tokenised: the token, its brand and its last four digits."""

    token: str
    brand: str
    last4: str


def check_card_number(number: str) -> str:
    """``number`` without spaces or dashes, if it is a card number (12-19 digits, Luhn check digit).

    The error never repeats the number.
    """
    digits = number.replace(" ", "").replace("-", "")
    if not (digits.isascii() and digits.isdigit() and 12 <= len(digits) <= 19):
        raise InvalidCardNumberError("a card number is 12 to 19 digits (spaces and dashes allowed)")
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    if total % 10:
        raise InvalidCardNumberError("the card number's check digit is wrong (a typo?)")
    return digits


def card_brand(digits: str) -> str:
    """The card's brand from its first digits (``visa``, ``mastercard``, ``amex``, else ``unknown``)."""
    if digits.startswith("4"):
        return "visa"
    if digits[:2] in {"51", "52", "53", "54", "55"} or 2221 <= int(digits[:4]) <= 2720:
        return "mastercard"
    if digits[:2] in {"34", "37"}:
        return "amex"
    return "unknown"


@dataclass(frozen=True, slots=True)
class GatewayBehaviour:
    """How the simulator misbehaves: latency (uniform, in seconds) and the rates of each fault."""

    latency_seconds: tuple[float, float] = (0.0, 0.0)
    transient_error_rate: float = 0.0
    lost_response_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class Charge:
    """A charge as the gateway keeps it."""

    id: str
    reference: str
    amount_cents: Cents
    currency: str
    status: Literal["succeeded", "declined"]
    decline_code: str | None
    refunded_cents: Cents

    @property
    def refundable_cents(self) -> Cents:
        """What is left to refund (nothing for a declined charge)."""
        return self.amount_cents - self.refunded_cents if self.status == "succeeded" else 0


@dataclass(frozen=True, slots=True)
class Refund:
    """A refund of part or all of a charge."""

    id: str
    charge_id: str
    amount_cents: Cents


_INSERT_CARD = (
    "INSERT INTO gateway_cards (token, brand, last4, decline_code, created_at) VALUES (?, ?, ?, ?, ?)"
)
_CARD_BY_TOKEN = "SELECT decline_code FROM gateway_cards WHERE token = ?"
_CHARGE_COLUMNS = "id, reference, amount_cents, currency, status, decline_code, refunded_cents, fingerprint"
_CHARGE_BY_KEY = f"SELECT {_CHARGE_COLUMNS} FROM gateway_charges WHERE idempotency_key = ?"
_CHARGE_BY_ID = f"SELECT {_CHARGE_COLUMNS} FROM gateway_charges WHERE id = ?"
_CHARGES_FOR = f"SELECT {_CHARGE_COLUMNS} FROM gateway_charges WHERE reference = ? ORDER BY created_at"
_INSERT_CHARGE = (
    "INSERT INTO gateway_charges (id, idempotency_key, fingerprint, reference, amount_cents, currency, "
    "card_token, status, decline_code, refunded_cents, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) "
    "ON CONFLICT DO NOTHING"
)
_REFUND_BY_KEY = (
    "SELECT id, charge_id, amount_cents, fingerprint FROM gateway_refunds WHERE idempotency_key = ?"
)
_INSERT_REFUND = (
    "INSERT INTO gateway_refunds (id, idempotency_key, fingerprint, charge_id, amount_cents, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_TAKE_REFUND = (
    "UPDATE gateway_charges SET refunded_cents = refunded_cents + ? "
    "WHERE id = ? AND status = 'succeeded' AND refunded_cents + ? <= amount_cents"
)


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


def _charge(row: Row) -> Charge:
    return Charge(
        id=row[0],
        reference=row[1],
        amount_cents=int(row[2]),
        currency=row[3],
        status=row[4],
        decline_code=row[5],
        refunded_cents=int(row[6]),
    )


class PaymentGateway:
    """The simulated provider, keeping its state in ``db``; ``rng`` decides when faults happen."""

    def __init__(
        self, db: Database, behaviour: GatewayBehaviour | None = None, rng: random.Random | None = None
    ) -> None:
        self.db = db
        self.behaviour = behaviour or GatewayBehaviour()
        self.rng = rng or random.Random()

    def _network(self, *, may_fail: bool = True) -> None:
        low, high = self.behaviour.latency_seconds
        if high > 0:
            time.sleep(self.rng.uniform(low, high))  # the simulated round trip to the provider
        if may_fail and self.rng.random() < self.behaviour.transient_error_rate:
            raise GatewayUnavailableError("503 Service Unavailable: the gateway is overloaded; try again")

    def _lose_response(self, what: str) -> None:
        if self.rng.random() < self.behaviour.lost_response_rate:
            raise ResponseLostError(
                f"timed out waiting for the gateway's answer ({what} may have gone through)"
            )

    def tokenize_card(self, number: str) -> CardToken:
        """Keep the card in the vault and return its token (a new one each time); the number is not kept.

        Raises :class:`InvalidCardNumberError` (which never repeats the number).
        """
        digits = check_card_number(number)
        self._network(may_fail=False)
        random_letters = "".join(secrets.choice(string.ascii_letters) for _ in range(24))  # no digit runs
        card = CardToken(token=f"tok_{random_letters}", brand=card_brand(digits), last4=digits[-4:])
        decline = TEST_CARDS.get(digits)
        with self.db.transaction() as tx:
            tx.execute(_INSERT_CARD, (card.token, card.brand, card.last4, decline, time.time()))
        return card

    def _decline_code(self, tx: Transaction, card_token: str) -> str | None:
        if card_token in ACCEPTED_TEST_TOKENS:
            return None
        if card_token in DECLINING_CARDS:
            return DECLINING_CARDS[card_token]
        row = tx.one(_CARD_BY_TOKEN, (card_token,))
        return "invalid_token" if row is None else row[0]

    def charge(
        self, *, amount_cents: Cents, currency: str, card_token: str, reference: str, idempotency_key: str
    ) -> Charge:
        """Charge ``amount_cents`` to the card ``card_token``; one ``idempotency_key`` never charges twice.

        Raises :class:`NotACardTokenError` for anything but a token (nothing is stored then),
        :class:`CardDeclinedError` (also when replaying a declined key, and for a token the gateway never
        issued), the transient :class:`GatewayUnavailableError` and :class:`ResponseLostError`, or
        :class:`IdempotencyKeyReusedError`.
        """
        if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0:
            raise ValueError(f"amount_cents must be a positive integer, not {amount_cents!r}")
        if not idempotency_key:
            raise ValueError("an idempotency key is required")
        if not is_card_token(card_token):
            raise NotACardTokenError("charge takes a card token (tok_...), never a card number")
        self._network()
        fingerprint = _fingerprint("charge", amount_cents, currency, card_token, reference)
        created = False
        with self.db.transaction() as tx:
            row = tx.one(_CHARGE_BY_KEY, (idempotency_key,))
            if row is None:
                decline = self._decline_code(tx, card_token)
                charge_id = f"ch_{uuid.uuid4().hex[:24]}"
                status = "declined" if decline else "succeeded"
                created = bool(
                    tx.execute(
                        _INSERT_CHARGE,
                        (
                            *(charge_id, idempotency_key, fingerprint, reference, amount_cents, currency),
                            *(card_token, status, decline, time.time()),
                        ),
                    )
                )
                row = tx.one(_CHARGE_BY_KEY, (idempotency_key,))
                assert row is not None
        if row[7] != fingerprint:
            raise IdempotencyKeyReusedError(
                f"idempotency key {idempotency_key!r} was used for a different charge "
                f"(amount, currency, card or reference differ); use a new key for a new charge"
            )
        charge = _charge(row)
        if created:
            self._lose_response("the charge")
        if charge.status == "declined":
            raise CardDeclinedError(charge.decline_code or "generic_decline", charge.id)
        return charge

    def refund(self, *, charge_id: str, amount_cents: Cents | None, idempotency_key: str) -> Refund:
        """Refund ``amount_cents`` of the charge (``None``: all that is left); once per ``idempotency_key``.

        Raises :class:`ChargeAlreadyRefundedError` when nothing is left, :class:`RefundExceedsChargeError`,
        :class:`UnknownChargeError`, :class:`IdempotencyKeyReusedError`, or the transient errors.
        """
        if not idempotency_key:
            raise ValueError("an idempotency key is required")
        self._network()
        fingerprint = _fingerprint("refund", charge_id, "rest" if amount_cents is None else amount_cents)
        made: Refund | None = None
        with self.db.transaction() as tx:
            stored = tx.one(_REFUND_BY_KEY, (idempotency_key,))
            if stored is None:
                made = self._new_refund(tx, charge_id, amount_cents, idempotency_key, fingerprint)
                if made is None:  # a concurrent request with this key made it first: replay that one
                    stored = tx.one(_REFUND_BY_KEY, (idempotency_key,))
        if made is not None:
            self._lose_response("the refund")
            return made
        assert stored is not None
        if stored[3] != fingerprint:
            raise IdempotencyKeyReusedError(
                f"idempotency key {idempotency_key!r} was used for a different refund; use a new key"
            )
        return Refund(id=stored[0], charge_id=stored[1], amount_cents=int(stored[2]))

    def _new_refund(
        self, tx: Transaction, charge_id: str, amount_cents: Cents | None, key: str, fingerprint: str
    ) -> Refund | None:
        row = tx.one(_CHARGE_BY_ID, (charge_id,))
        if row is None:
            raise UnknownChargeError(f"no charge {charge_id!r}")
        charge = _charge(row)
        left = charge.refundable_cents
        if charge.status != "succeeded":
            raise RefundExceedsChargeError(f"charge {charge_id} was declined; there is nothing to refund")
        if left == 0:
            raise ChargeAlreadyRefundedError(f"charge {charge_id} is refunded in full already")
        amount = left if amount_cents is None else amount_cents
        if amount <= 0 or amount > left:
            raise RefundExceedsChargeError(
                f"cannot refund {amount} cents of charge {charge_id}: {left} cents are left"
            )
        refund = Refund(id=f"re_{uuid.uuid4().hex[:24]}", charge_id=charge_id, amount_cents=amount)
        if not tx.execute(_INSERT_REFUND, (refund.id, key, fingerprint, charge_id, amount, time.time())):
            return None
        if tx.execute(_TAKE_REFUND, (amount, charge_id, amount)) != 1:
            raise RefundExceedsChargeError(
                f"charge {charge_id} was refunded meanwhile; {amount} cents is too much"
            )
        return refund

    def get_charge(self, charge_id: str) -> Charge:
        """The charge ``charge_id`` as it stands."""
        self._network(may_fail=False)
        with self.db.transaction(readonly=True) as tx:
            row = tx.one(_CHARGE_BY_ID, (charge_id,))
        if row is None:
            raise UnknownChargeError(f"no charge {charge_id!r}")
        return _charge(row)

    def charges_for(self, reference: str) -> list[Charge]:
        """Every charge made with ``reference`` (a provider's search by metadata), oldest first."""
        self._network(may_fail=False)
        with self.db.transaction(readonly=True) as tx:
            return [_charge(row) for row in tx.all(_CHARGES_FOR, (reference,))]
