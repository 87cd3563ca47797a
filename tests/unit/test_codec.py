"""The checkpoint codec: exact JSON text out, plain or typed values back, and what it refuses."""

import datetime as dt
import decimal
import enum
import typing
import uuid
from collections import namedtuple
from dataclasses import dataclass
from typing import Any

import pydantic
import pytest

from conveyor import EncodingError, InvalidArgumentError
from conveyor.codec import SUPPORTED_TYPES, TypedCodec, decode, encode, needs_adapter

UTC = dt.UTC
ORDER_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Point:
    x: int
    y: int


@dataclass
class Invoice:
    number: str
    total: decimal.Decimal
    issued: dt.date


class Item(pydantic.BaseModel):
    sku: str
    quantity: int


class Order(pydantic.BaseModel):
    id: uuid.UUID
    placed_at: dt.datetime
    amount: decimal.Decimal
    items: list[Item]
    colour: Colour = Colour.RED


Pair = namedtuple("Pair", "left right")


def make_order():
    return Order(
        id=ORDER_ID,
        placed_at=dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        amount=decimal.Decimal("19.90"),
        items=[Item(sku="A-1", quantity=2)],
    )


# --- encode: exact text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-12, "-12"),
        (1.5, "1.5"),
        ("text", '"text"'),
        ("", '""'),
        ("é", '"é"'),
        ([], "[]"),
        ({}, "{}"),
    ],
)
def test_encode_plain_json_values(value, text):
    """Plain JSON values encode to their compact JSON text."""
    assert encode(value) == text


def test_encode_nested_dict_is_compact_and_keeps_key_order():
    """Dicts encode compactly, in insertion order, nested values included."""
    assert (
        encode({"b": 1, "a": [1, "x", None], "c": {"d": True}}) == '{"b":1,"a":[1,"x",null],"c":{"d":true}}'
    )


def test_encode_dict_with_integer_keys_is_refused():
    """Integer keys would come back as strings, so they are refused (see test_codec_refusals.py)."""
    with pytest.raises(EncodingError, match="has the key 1 "):
        encode({1: "one", 2: "two"})


def test_encode_dataclass_gives_its_fields():
    """A dataclass encodes as an object of its fields."""
    assert encode(Point(1, 2)) == '{"x":1,"y":2}'


def test_encode_dataclass_with_decimal_and_date_fields():
    """Fields the codec converts are converted inside dataclasses too."""
    invoice = Invoice("INV-1", decimal.Decimal("10.50"), dt.date(2024, 1, 31))
    assert encode(invoice) == '{"number":"INV-1","total":"10.50","issued":"2024-01-31"}'


def test_encode_pydantic_model_uses_its_json_dump():
    """A pydantic model encodes as its JSON-mode dump."""
    assert encode(make_order()) == (
        '{"id":"12345678-1234-5678-1234-567812345678","placed_at":"2024-05-06T07:08:09Z",'
        '"amount":"19.90","items":[{"sku":"A-1","quantity":2}],"colour":"red"}'
    )


def test_encode_models_nested_in_a_list():
    """Models inside containers are encoded too."""
    assert encode({"items": [Item(sku="x", quantity=1)]}) == '{"items":[{"sku":"x","quantity":1}]}'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), '"2024-01-02T03:04:05+00:00"'),
        (dt.datetime(2024, 1, 2, 3, 4, 5, 123456), '"2024-01-02T03:04:05.123456"'),
        (
            dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            '"2024-01-02T03:04:05+02:00"',
        ),
        (dt.date(2024, 1, 2), '"2024-01-02"'),
        (dt.time(3, 4, 5), '"03:04:05"'),
        (dt.time(23, 59, 59, 500), '"23:59:59.000500"'),
    ],
)
def test_encode_dates_and_times_as_iso_text(value, text):
    """Datetimes, dates and times encode as ISO 8601 strings."""
    assert encode(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (decimal.Decimal("12.50"), '"12.50"'),
        (decimal.Decimal("-0.001"), '"-0.001"'),
        (decimal.Decimal("1E+3"), '"1E+3"'),
    ],
)
def test_encode_decimal_as_exact_text(value, text):
    """Decimals encode as strings so no precision is lost."""
    assert encode(value) == text


def test_encode_uuid_as_its_canonical_text():
    """A UUID encodes as its hyphenated string."""
    assert encode(ORDER_ID) == '"12345678-1234-5678-1234-567812345678"'


def test_encode_enums_as_their_values():
    """Enums encode as their values, text or integer."""
    assert encode([Colour.BLUE, Priority.HIGH]) == '["blue",2]'


def test_encode_set_as_a_sorted_list():
    """A set encodes as a list in a stable order."""
    assert encode({"b", "c", "a"}) == '["a","b","c"]'
    assert encode(frozenset({3, 1, 2})) == "[1,2,3]"


def test_encode_set_order_does_not_depend_on_insertion():
    """Two equal sets built in different orders encode identically."""
    assert encode({"x", "y", "z"}) == encode({"z", "y", "x"})


def test_encode_tuple_and_namedtuple_as_lists():
    """Tuples and namedtuples encode as JSON arrays."""
    assert encode((1, "a")) == '[1,"a"]'
    assert encode(Pair(1, 2)) == "[1,2]"


# --- encode: refusals --------------------------------------------------------------------------------------


def test_encode_of_an_object_raises_encoding_error_naming_what():
    """An arbitrary object is refused with an EncodingError whose message starts with ``what``."""
    with pytest.raises(EncodingError) as caught:
        encode(object(), what="the result of step 'charge'")
    error = caught.value
    assert str(error).startswith("the result of step 'charge' cannot be stored as JSON: ")
    assert "object" in str(error)
    assert error.what == "the result of step 'charge'"
    assert isinstance(error.__cause__, TypeError)


def test_encode_error_defaults_what_to_value():
    """Without what= the message speaks of 'value'."""
    with pytest.raises(EncodingError, match=r"^value cannot be stored as JSON"):
        encode(object())


def test_encode_error_inside_a_container_is_refused():
    """An unencodable value nested in a dict is refused too."""
    with pytest.raises(EncodingError, match=r"^the input cannot be stored as JSON"):
        encode({"ok": 1, "bad": object()}, what="the input")


def test_encoding_error_is_both_a_type_and_value_error():
    """EncodingError can be caught as TypeError, ValueError or InvalidArgumentError."""
    with pytest.raises(TypeError):
        encode(object())
    with pytest.raises(ValueError):
        encode(object())
    with pytest.raises(InvalidArgumentError):
        encode(object())


def test_encode_refuses_functions_and_bytes():
    """Functions and bytes are not JSON."""
    with pytest.raises(EncodingError):
        encode(make_order)
    with pytest.raises(EncodingError):
        encode(b"raw")


# --- decode: plain values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, True, 0, 3.25, "text", [1, [2, [3]]], {"a": {"b": [None, False]}}, {"": ""}],
)
def test_plain_values_round_trip(value):
    """Plain JSON values decode back to equal values."""
    assert decode(encode(value)) == value


def test_decode_accepts_bytes():
    """Decoding takes bytes as well as text."""
    assert decode(b'{"a":1}') == {"a": 1}


def test_rich_values_decode_to_their_plain_json_form():
    """Without a declared type, rich values come back as plain JSON values."""
    assert decode(encode(Point(1, 2))) == {"x": 1, "y": 2}
    assert decode(encode(dt.date(2024, 1, 2))) == "2024-01-02"
    assert decode(encode(decimal.Decimal("1.10"))) == "1.10"
    assert decode(encode(ORDER_ID)) == str(ORDER_ID)
    assert decode(encode(Colour.RED)) == "red"
    assert decode(encode({2, 1})) == [1, 2]
    assert decode(encode((1, 2))) == [1, 2]


# --- TypedCodec: typed values back -------------------------------------------------------------------------


def test_typed_codec_decodes_back_into_a_pydantic_model():
    """A model encoded and decoded with TypedCodec(Model) is equal to the original."""
    order = make_order()
    decoded = TypedCodec(Order).decode(encode(order))
    assert isinstance(decoded, Order)
    assert decoded == order
    assert isinstance(decoded.items[0], Item)
    assert decoded.amount == decimal.Decimal("19.90")


def test_typed_codec_decodes_back_into_a_dataclass():
    """A dataclass round-trips into an equal dataclass, nested types converted."""
    invoice = Invoice("INV-1", decimal.Decimal("10.50"), dt.date(2024, 1, 31))
    decoded = TypedCodec(Invoice).decode(encode(invoice))
    assert isinstance(decoded, Invoice)
    assert decoded == invoice


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
        dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    ],
)
def test_typed_codec_decodes_back_into_a_datetime(value):
    """A datetime round-trips exactly, with its time zone."""
    decoded = TypedCodec(dt.datetime).decode(encode(value))
    assert decoded == value
    assert decoded.utcoffset() == value.utcoffset()


def test_typed_codec_decodes_back_into_a_date_and_a_time():
    """Dates and times round-trip through their declared types."""
    assert TypedCodec(dt.date).decode(encode(dt.date(2024, 2, 29))) == dt.date(2024, 2, 29)
    assert TypedCodec(dt.time).decode(encode(dt.time(3, 4, 5, 6))) == dt.time(3, 4, 5, 6)


def test_typed_codec_decodes_back_into_a_decimal_keeping_its_digits():
    """A Decimal round-trips with its exact digits and exponent."""
    decoded = TypedCodec(decimal.Decimal).decode(encode(decimal.Decimal("12.50")))
    assert isinstance(decoded, decimal.Decimal)
    assert str(decoded) == "12.50"


def test_typed_codec_decodes_back_into_a_uuid():
    """A UUID round-trips into an equal UUID."""
    decoded = TypedCodec(uuid.UUID).decode(encode(ORDER_ID))
    assert isinstance(decoded, uuid.UUID)
    assert decoded == ORDER_ID


def test_typed_codec_decodes_back_into_an_enum_and_a_set():
    """Enums and sets come back as themselves when declared."""
    assert TypedCodec(Colour).decode(encode(Colour.BLUE)) is Colour.BLUE
    assert TypedCodec(Priority).decode(encode(Priority.HIGH)) is Priority.HIGH
    assert TypedCodec(set[int]).decode(encode({3, 1, 2})) == {1, 2, 3}


def test_typed_codec_decodes_a_list_of_models():
    """Generic containers of models are decoded element by element."""
    items = [Item(sku="a", quantity=1), Item(sku="b", quantity=2)]
    assert TypedCodec(list[Item]).decode(encode(items)) == items


def test_typed_codec_decodes_a_dict_of_datetimes():
    """A dict whose values are datetimes is converted when declared."""
    value = {"start": dt.datetime(2024, 1, 1, tzinfo=UTC)}
    assert TypedCodec(dict[str, dt.datetime]).decode(encode(value)) == value


def test_typed_codec_refuses_text_that_does_not_fit_the_type():
    """Text that does not fit the declared model raises pydantic's ValidationError."""
    with pytest.raises(pydantic.ValidationError):
        TypedCodec(Item).decode('{"sku":"a","quantity":"many"}')


def test_typed_codec_for_plain_types_returns_plain_json():
    """For pass-through annotations the codec gives back exactly what plain decoding gives."""
    assert TypedCodec(Any).decode('{"a":[1,2]}') == {"a": [1, 2]}
    assert TypedCodec(dict).decode('{"a":1}') == {"a": 1}
    assert TypedCodec(dict[str, Any]).decode('{"a":"2024-01-02"}') == {"a": "2024-01-02"}


def test_typed_codec_keeps_its_annotation():
    """The codec remembers the annotation it was built for."""
    assert TypedCodec(Order).annotation is Order
    assert TypedCodec(Any).annotation is Any


def test_typed_codec_convert_turns_plain_values_into_the_type():
    """convert() applies the declared type to an already decoded value."""
    assert TypedCodec(Item).convert({"sku": "a", "quantity": 3}) == Item(sku="a", quantity=3)
    assert TypedCodec(uuid.UUID).convert(str(ORDER_ID)) == ORDER_ID
    plain = {"k": [1]}
    assert TypedCodec(dict).convert(plain) is plain


# --- needs_adapter -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "annotation",
    [
        dict,
        list,
        Any,
        object,
        str,
        int,
        bool,
        type(None),
        dict[str, Any],
        dict[str, int],
        list[str],
        list[dict[str, Any]],
        typing.Dict[str, Any],  # noqa: UP006
        typing.List[int],  # noqa: UP006
    ],
    ids=repr,
)
def test_needs_adapter_is_false_for_plain_json_annotations(annotation):
    """Annotations plain JSON decoding already satisfies need no adapter."""
    assert needs_adapter(annotation) is False


@pytest.mark.parametrize(
    "annotation",
    [
        Order,
        Item,
        Point,
        dt.datetime,
        dt.date,
        dt.time,
        decimal.Decimal,
        uuid.UUID,
        Colour,
        set[int],
        tuple[int, int],
        list[Item],
        dict[str, dt.datetime],
        list[dict[str, uuid.UUID]],
        int | None,
    ],
    ids=repr,
)
def test_needs_adapter_is_true_for_types_needing_conversion(annotation):
    """Models, dataclasses, dates, decimals, UUIDs, enums and containers of them need an adapter."""
    assert needs_adapter(annotation) is True


def test_supported_types_lists_the_round_tripped_types():
    """SUPPORTED_TYPES names the kinds of value the codec round-trips."""
    assert set(SUPPORTED_TYPES) >= {
        dict,
        list,
        str,
        int,
        float,
        bool,
        dt.datetime,
        dt.date,
        dt.time,
        decimal.Decimal,
        uuid.UUID,
        enum.Enum,
        pydantic.BaseModel,
    }
