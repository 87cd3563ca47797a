"""A value marked secret (pydantic's SecretStr, SecretBytes, Secret) never reaches a checkpoint or message."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import traceback
from pathlib import Path
from typing import Any

import pydantic
import pytest

from conveyor import (
    EncodingError,
    Flow,
    InMemoryBackend,
    RetryPolicy,
    RunState,
    SqliteBackend,
    run_durable_workflow,
    start_workflow,
    task,
)
from conveyor.cli import main
from conveyor.codec import encode

CARD = "4242424242424242"
TOKEN_ADVICE = "exchange the secret for a token"


class Payment(pydantic.BaseModel):
    amount_cents: int
    card: pydantic.SecretStr


class MaybePayment(pydantic.BaseModel):
    amount_cents: int
    card: pydantic.SecretStr | None = None


class Checkout(pydantic.BaseModel):
    order_id: str
    payment: Payment


class Loose(pydantic.BaseModel):
    extra: Any = None
    fields: dict[str, Any] = {}


class Open(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    order_id: str


class Plain(pydantic.BaseModel):
    order_id: str
    amount_cents: int


class Pin(pydantic.BaseModel):
    pin: pydantic.Secret[int]


class Wallet(pydantic.BaseModel):
    cards: list[dict[str, pydantic.SecretBytes]] = []


class Masked(pydantic.BaseModel):
    order_id: str

    @pydantic.field_serializer("order_id")
    def _mask(self, value: str) -> str:
        return value.upper()


class Stored(pydantic.BaseModel):
    order_id: str

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def card(self) -> pydantic.SecretStr:
        return pydantic.SecretStr(CARD)


@dataclasses.dataclass
class CardOnFile:
    holder: str
    number: pydantic.SecretStr


def refused(value: Any, what: str = "input") -> EncodingError:
    """The EncodingError encoding ``value`` raises; it never shows the card number."""
    with pytest.raises(EncodingError) as raised:
        encode(value, what=what)
    error = raised.value
    shown = str(error) + repr(error) + "".join(traceback.format_exception(error))
    assert CARD not in shown
    assert TOKEN_ADVICE in str(error)
    return error


# --- the codec ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path", "kind"),
    [
        (pydantic.SecretStr(CARD), "input", "SecretStr"),
        (pydantic.SecretBytes(CARD.encode()), "input", "SecretBytes"),
        (pydantic.Secret[str](CARD), "input", "Secret"),
        ({"card": pydantic.SecretStr(CARD)}, "input.card", "SecretStr"),
        ({"cards": ["x", pydantic.SecretStr(CARD)]}, "input.cards[1]", "SecretStr"),
        ((1, pydantic.SecretStr(CARD)), "input[1]", "SecretStr"),
        (CardOnFile("ada", pydantic.SecretStr(CARD)), "input.number", "SecretStr"),
    ],
    ids=["SecretStr", "SecretBytes", "Secret[str]", "in a dict", "in a list", "in a tuple", "in a dataclass"],
)
def test_a_secret_anywhere_in_a_value_is_refused_naming_its_path(value, path, kind):
    """A secret at the top, in a dict, list, tuple or dataclass is refused, named by path and type."""
    error = refused(value)
    assert str(error).startswith(f"input cannot be stored as JSON: {path} is a secret ({kind}); ")
    assert error.path == path


def test_a_secret_field_of_a_pydantic_model_is_refused_not_written_as_stars():
    """pydantic's JSON dump writes '**********' for a SecretStr; the codec refuses the model instead."""
    assert Payment(amount_cents=100, card=CARD).model_dump(mode="json")["card"] == "**********"
    error = refused(Payment(amount_cents=100, card=CARD))
    assert "input.card is a secret (SecretStr)" in str(error)


@pytest.mark.parametrize(
    ("model", "path", "kind"),
    [
        (Pin(pin=4242), "input.pin", "Secret"),
        (Wallet(cards=[{"visa": CARD.encode()}]), "input.cards[0].visa", "SecretBytes"),
    ],
    ids=["Secret[int]", "SecretBytes in a list of dicts"],
)
def test_generic_secrets_and_secrets_inside_containers_of_a_model_are_refused(model, path, kind):
    """A Secret[int] field, and SecretBytes inside a list of dicts, are found."""
    assert f"{path} is a secret ({kind})" in str(refused(model))


def test_a_model_with_a_serializer_of_its_own_is_still_encoded():
    """A model whose field has its own serializer may hold anything, so it is looked into, then stored."""
    assert encode(Masked(order_id="o-1")) == '{"order_id":"O-1"}'


def test_a_secret_in_a_nested_model_is_named_by_its_full_path():
    """The path goes through the models that hold the secret."""
    value = {"checkout": Checkout(order_id="o-1", payment=Payment(amount_cents=1, card=CARD))}
    assert "input.checkout.payment.card is a secret" in str(refused(value))


@pytest.mark.parametrize(
    ("model", "path"),
    [
        (Loose(extra=pydantic.SecretStr(CARD)), "input.extra"),
        (Loose(fields={"card": pydantic.SecretStr(CARD)}), "input.fields.card"),
        (Loose(extra=CardOnFile("ada", pydantic.SecretStr(CARD))), "input.extra.number"),
        (Open(order_id="o-1", card=pydantic.SecretStr(CARD)), "input.card"),
        (Stored(order_id="o-1"), "input.card"),
    ],
    ids=["Any field", "dict[str, Any] field", "dataclass in an Any field", "extra field", "computed field"],
)
def test_a_secret_hidden_in_a_models_loose_fields_is_refused(model, path):
    """Secrets in Any-typed fields, in dicts of Any, in extra fields and computed fields are found too."""
    assert f"{path} is a secret" in str(refused(model))


def test_a_secret_used_as_a_key_is_refused_as_a_secret():
    """A secret as a dict key is named as a secret, not shown."""
    assert "input has a secret (SecretStr) as a key" in str(refused({pydantic.SecretStr(CARD): 1}))


def test_a_model_whose_secret_field_is_empty_is_stored():
    """A model that declares a secret but holds none (None) is stored as usual."""
    assert encode(MaybePayment(amount_cents=5)) == '{"amount_cents":5,"card":null}'


def test_models_that_cannot_hold_a_secret_are_encoded_as_before():
    """Models without secret or loose fields are dumped as before."""
    assert encode(Plain(order_id="o-1", amount_cents=5)) == '{"order_id":"o-1","amount_cents":5}'
    assert encode(Loose(extra={"a": 1}, fields={"b": [2]})) == '{"extra":{"a":1},"fields":{"b":[2]}}'


# --- the engine: nothing stored, nothing shown ----------------------------------------------------------


@task
def charge(payment: dict[str, Any]) -> dict[str, Any]:
    return {"charged": payment["amount_cents"]}


def test_an_input_holding_a_secret_is_refused_before_anything_is_stored():
    """run_durable_workflow and start_workflow refuse an input holding a secret; no run is recorded."""
    backend = InMemoryBackend()
    workflow = Flow("pay").then(charge).build()
    payment = {"amount_cents": 100, "card": pydantic.SecretStr(CARD)}
    with pytest.raises(EncodingError, match=r"^input cannot be stored as JSON: input\.card is a secret"):
        run_durable_workflow(workflow, "p-1", payment, backend)
    with pytest.raises(EncodingError, match=TOKEN_ADVICE):
        start_workflow(workflow, "p-1", payment, backend)
    assert backend.load_run("p-1") is None


def test_an_input_schema_with_a_secret_field_refuses_the_card_at_the_door():
    """An input validated into a model with a SecretStr field is refused, and the error hides the number."""
    backend = InMemoryBackend()
    workflow = Flow("pay-typed", input_schema=Payment).then(charge).build()
    with pytest.raises(EncodingError) as raised:
        run_durable_workflow(workflow, "p-2", {"amount_cents": 100, "card": CARD}, backend)
    assert "input.card is a secret (SecretStr)" in str(raised.value)
    assert CARD not in "".join(traceback.format_exception(raised.value))
    assert backend.load_run("p-2") is None


def _stored_text(database: Path) -> str:
    """Every value stored in the SQLite file, as one text."""
    with sqlite3.connect(database) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(
            repr(row) for table in tables for row in connection.execute(f"SELECT * FROM {table}")
        )


def test_a_step_returning_a_secret_fails_and_the_secret_is_never_stored_shown_or_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The step fails at once; its stored failure, the status, the log and `conveyor status` lack the card."""

    @task(retries=RetryPolicy(max_retries=3))
    def tokenize(_: Any) -> Any:
        return {"token": "tok_1", "card": pydantic.SecretStr(CARD)}

    database = tmp_path / "c.db"
    caplog.set_level(logging.DEBUG)
    with SqliteBackend(database) as backend:
        status = run_durable_workflow(Flow("tok").then(tokenize).build(), "t-1", {}, backend)
    assert status.state is RunState.FAILED
    step = status.step("tokenize")
    assert step.attempts == 1
    assert step.error is not None
    assert "result of step 'tokenize'.card is a secret (SecretStr)" in step.error.message
    assert CARD not in step.error.message + step.error.traceback + repr(status)
    assert CARD not in _stored_text(database)
    assert CARD not in caplog.text
    assert main(["status", "t-1", "--backend", f"sqlite:///{database}"]) == 1  # 1: the run failed
    printed = capsys.readouterr()
    assert "is a secret" in printed.out
    assert CARD not in printed.out + printed.err
