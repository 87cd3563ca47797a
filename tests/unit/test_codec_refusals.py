"""What the codec refuses rather than store changed: NaN and infinity, keys that change type, and the path."""

import dataclasses
import datetime as dt
import decimal
import enum
import math
import uuid
from typing import Any

import pydantic
import pytest

from conveyor import EncodingError
from conveyor.codec import TypedCodec, decode, encode

NAN = math.nan
INF = math.inf


class Colour(enum.Enum):
    RED = "red"


class Shade(enum.StrEnum):
    DARK = "dark"


class Level(enum.IntEnum):
    LOW = 1


class Code(str):
    """A str subclass, as some libraries return."""


@dataclasses.dataclass
class Line:
    sku: str
    price: float


class Reading(pydantic.BaseModel):
    sensor: str
    value: float


class Batch(pydantic.BaseModel):
    readings: list[Reading]


def refusal(value: Any, what: str = "input") -> str:
    """The message of the EncodingError that encoding ``value`` raises."""
    with pytest.raises(EncodingError) as raised:
        encode(value, what=what)
    return str(raised.value)


# --- NaN and infinity ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("number", "shown"), [(NAN, "NaN"), (INF, "inf"), (-INF, "-inf")])
def test_a_non_finite_float_in_an_input_is_refused_naming_its_path(number, shown):
    """NaN, inf and -inf would be stored as null; they are refused, naming input.x."""
    message = refusal({"x": number})
    assert message.startswith("input cannot be stored as JSON: input.x is " + shown)


def test_a_non_finite_float_deep_in_a_result_is_named_by_its_full_path():
    """The path goes through dict keys and list indexes: result of step 'charge'.lines[2].price."""
    result = {"lines": [{"price": 1.0}, {"price": 2.0}, {"price": NAN}]}
    message = refusal(result, what="result of step 'charge'")
    assert "result of step 'charge'.lines[2].price is NaN" in message


def test_a_top_level_non_finite_float_is_refused():
    """A bare NaN names the value itself."""
    assert "input is NaN" in refusal(NAN)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ((1.0, INF), "input[1]"),
        ([[0.5, [NAN]]], "input[0][1][0]"),
        ({"a b": NAN}, "input['a b']"),
        (Line("A-1", NAN), "input.price"),
        (Reading(sensor="t", value=INF), "input.value"),
        (
            Batch(readings=[Reading(sensor="t", value=1.0), Reading(sensor="u", value=NAN)]),
            "input.readings[1].value",
        ),
        ({"lines": [Line("A", 1.0), Line("B", -INF)]}, "input.lines[1].price"),
        ({frozenset({NAN})}, "input[0][0]"),
    ],
)
def test_non_finite_floats_are_found_in_tuples_lists_dataclasses_models_and_sets(value, path):
    """Wherever a NaN or infinity hides, the refusal names the path to it."""
    message = refusal(value)
    assert f" {path} is " in message, message


def test_none_is_still_stored_as_null():
    """A real None is not a NaN: values holding None (and the text 'null') still encode."""
    assert encode({"a": None, "b": [None, 1.5], "c": "null"}) == '{"a":null,"b":[null,1.5],"c":"null"}'


def test_finite_floats_at_the_edge_of_the_range_are_kept():
    """The largest and smallest finite floats are not refused."""
    assert decode(encode([1.7976931348623157e308, -5e-324, 0.0, -0.0])) == [
        1.7976931348623157e308,
        -5e-324,
        0.0,
        -0.0,
    ]


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_a_decimal_that_is_not_finite_is_refused(text):
    """Decimal('NaN') would be stored as text a typed reader refuses; it is refused at the door instead."""
    assert f"input.total is Decimal({text!r}); only finite decimals are stored" in refusal(
        {"total": decimal.Decimal(text)}
    )


# --- keys ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "shown"),
    [(1, "1"), (-7, "-7"), (1.5, "1.5"), (True, "True"), (None, "None"), (Level.LOW, "<Level.LOW: 1>")],
    ids=["int", "negative int", "float", "bool", "None", "IntEnum"],
)
def test_a_key_that_would_come_back_as_a_string_is_refused_naming_the_dict(key, shown):
    """Int, float, bool, None and int-enum keys would silently become strings: refused, naming the dict."""
    message = refusal({"counts": {key: "x"}})
    assert message.startswith(f"input cannot be stored as JSON: input.counts has the key {shown} ("), message
    assert "keys are strings" in message


def test_a_refused_key_at_the_top_level_names_the_value():
    """A dict with integer keys at the top names the value itself."""
    assert "input has the key 1 (int)" in refusal({1: "one", 2: "two"})


@pytest.mark.parametrize(
    ("key", "text"),
    [
        (Code("abc"), "abc"),
        (Shade.DARK, "dark"),
        (Colour.RED, "red"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "2024-01-02T03:04:05+00:00"),
        (dt.date(2024, 1, 2), "2024-01-02"),
        (dt.time(3, 4, 5), "03:04:05"),
    ],
    ids=["str subclass", "str enum", "enum of text", "UUID", "datetime", "date", "time"],
)
def test_keys_stored_as_the_text_they_are_stored_as_anywhere_are_kept(key, text):
    """Keys whose JSON text is what the same object becomes as a value (text, enums of text, UUIDs,
    datetimes) are kept, as that text."""
    assert decode(encode({key: 1, "other": 2})) == {text: 1, "other": 2}


def test_typed_decoding_brings_uuid_and_date_keys_back():
    """A declared dict[UUID, ...] or dict[date, ...] converts the stored keys back."""
    ids = {uuid.UUID(int=1): 1}
    days = {dt.date(2024, 1, 2): "tuesday"}
    assert TypedCodec(dict[uuid.UUID, int]).decode(encode(ids)) == ids
    assert TypedCodec(dict[dt.date, str]).decode(encode(days)) == days


def test_two_keys_stored_as_the_same_text_are_refused():
    """A UUID key and its own text would be written twice into one JSON object: refused, naming the text."""
    key = uuid.UUID(int=1)
    message = refusal({"by_id": {key: 1, str(key): 2}})
    assert "input.by_id has two keys stored as '00000000-0000-0000-0000-000000000001'" in message


@pytest.mark.parametrize(
    "key", [decimal.Decimal("1.5"), (1, 2), frozenset({1})], ids=["Decimal", "tuple", "frozenset"]
)
def test_keys_json_has_no_text_for_are_refused_naming_the_dict(key):
    """Decimal, tuple and frozenset keys are refused with the path of their dict."""
    assert refusal({"m": {key: 1}}).startswith("input cannot be stored as JSON: input.m has the key ")


def test_a_refused_key_inside_a_dataclass_or_model_field_is_named():
    """Keys are checked in the dicts that dataclasses and models hold too."""

    @dataclasses.dataclass
    class Tally:
        counts: dict[Any, int]

    class Stock(pydantic.BaseModel):
        counts: dict[Any, int]

    assert "input.tally.counts has the key 3 (int)" in refusal({"tally": Tally({3: 1})})
    # pydantic writes a model's keys itself, as text, and a declared type converts them back.
    assert decode(encode(Stock(counts={3: 1}))) == {"counts": {"3": 1}}


# --- other values JSON cannot hold, now named by path ------------------------------------------------------


def test_an_unencodable_object_is_named_by_its_path():
    """An object JSON cannot hold is named with its path and type."""
    message = refusal({"order": {"when": object()}})
    assert message.startswith("input cannot be stored as JSON: input.order.when is an object, ")


def test_an_integer_beyond_64_bits_is_named_by_its_path():
    """JSON numbers are kept to 64 bits; a bigger integer is refused with its path."""
    assert "input.n is an integer beyond 64 bits" in refusal({"n": 2**64})


def test_a_lone_surrogate_in_text_is_named_by_its_path():
    """Text holding a lone surrogate is not UTF-8; it is refused naming the path (key or value)."""
    assert "input.name holds a lone surrogate" in refusal({"name": "a\ud800b"})
    assert "input has a key holding a lone surrogate" in refusal({"a\udc00": 1})


def test_a_value_nested_too_deep_is_refused_with_a_clear_message():
    """A value nested deeper than JSON's limit here (254 levels) is refused, not a RecursionError."""
    deep: Any = 1
    for _ in range(10_000):
        deep = [deep]
    assert "nests deeper than" in refusal(deep)


def test_a_value_that_holds_itself_is_refused():
    """A list that contains itself is refused as too deep, not looped on."""
    looped: list[Any] = []
    looped.append(looped)
    assert "nests deeper than" in refusal(looped)
