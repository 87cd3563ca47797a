"""Finding what in a value cannot be stored as JSON, and the path to it.

The codec encodes with orjson and comes here only when that fails, or when its output may hide a NaN
(orjson writes NaN and infinity as ``null``). :func:`find_fault` then walks the value the way the codec
encodes it and names the first thing it refuses, by its path (``input.lines[2].price``):

- a float that is NaN or infinite (JSON has neither; it would come back as ``None``);
- a dict key that would come back as a string of another type (``1``, ``1.5``, ``True``, ``None``, an
  integer enum), or that JSON has no text for; keys that are text, enums of text, UUIDs, datetimes, dates
  and times are kept, as the text they are stored as anywhere else;
- two keys of one dict stored as the same text;
- a secret (pydantic's ``SecretStr``, ``SecretBytes`` or ``Secret``), wherever it is;
- an integer beyond 64 bits, text holding a lone surrogate, nesting deeper than JSON allows here, and any
  object JSON cannot hold.

Messages never show a secret's value: a secret is named by its type and path only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import math
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import pydantic

SECRET_TYPES: tuple[type, ...] = (pydantic.SecretStr, pydantic.SecretBytes, pydantic.Secret)
"""The types that mark a value secret; the codec never stores one."""

MAX_DEPTH = 254
"""How deeply containers may nest (orjson refuses deeper values)."""

_INT_RANGE = (-(2**63), 2**64 - 1)  # orjson writes signed and unsigned 64-bit integers
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TEXT_KEY_TYPES = (uuid.UUID, dt.datetime, dt.date, dt.time)
_KEPT_TYPES = (dt.datetime, dt.date, dt.time, uuid.UUID)


@dataclass(frozen=True, slots=True)
class Fault:
    """Why a value cannot be stored: the path to the part at fault and what is wrong with it."""

    path: str
    problem: str
    secret: bool = False

    def __str__(self) -> str:
        return f"{self.path} {self.problem}"


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if _IDENTIFIER.match(key) else f"{path}[{key!r}]"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _article(name: str) -> str:
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def key_text(key: Any) -> str | None:
    """The JSON text a dict key is stored as, or ``None`` if the codec refuses that key."""
    if isinstance(key, str):
        return str.__str__(key)  # str subclasses and str enums: their text
    if isinstance(key, enum.Enum):
        return key.value if type(key.value) is str else None
    if isinstance(key, _TEXT_KEY_TYPES):
        text: str = orjson.loads(orjson.dumps(key))  # the text the same object is stored as as a value
        return text
    return None


def _key_fault(key: Any, path: str) -> Fault:
    if isinstance(key, SECRET_TYPES):
        return Fault(path, f"has a secret ({type(key).__name__}) as a key; {SECRET_ADVICE}", secret=True)
    kind = type(key).__name__
    if isinstance(key, bool | int | float) or key is None or isinstance(key, enum.Enum):
        return Fault(
            path,
            f"has the key {_short(key)} ({kind}); JSON object keys are strings, so it would come back as "
            "a string: use str keys",
        )
    return Fault(
        path,
        f"has the key {_short(key)} ({kind}); JSON object keys are strings and there is no text for this "
        "one: use str keys",
    )


SECRET_ADVICE = (
    "secrets are never stored in a checkpoint: exchange the secret for a token (a reference your vault "
    "or payment provider resolves) before starting the run, and pass the token"
)
"""What the codec's refusal of a secret tells the caller to do."""


def find_secret(value: Any, path: str, depth: int = 0) -> Fault | None:
    """The first secret held anywhere in ``value`` (models, dataclasses and containers included)."""
    if isinstance(value, SECRET_TYPES):
        return Fault(path, f"is a secret ({type(value).__name__}); {SECRET_ADVICE}", secret=True)
    if depth >= MAX_DEPTH or isinstance(value, str | int | float | type(None)):
        return None
    items: Any = ()
    if isinstance(value, pydantic.BaseModel):
        extra = value.__pydantic_extra__ or {}
        computed = {name: getattr(value, name) for name in type(value).model_computed_fields}
        fields = (*value.__dict__.items(), *extra.items(), *computed.items())
        items = ((_child(path, name), item) for name, item in fields)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = (
            (_child(path, field.name), getattr(value, field.name, None))
            for field in dataclasses.fields(value)
        )
    elif isinstance(value, dict):
        items = ((_child(path, str(key)), item) for key, item in value.items())
    elif isinstance(value, list | tuple | set | frozenset):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    for child, item in items:
        found = find_secret(item, child, depth + 1)
        if found is not None:
            return found
    return None


_MAY_HOLD_SECRET: dict[type, bool] = {}


def model_may_hold_secret(cls: type[pydantic.BaseModel]) -> bool:
    """Whether instances of ``cls`` can hold a secret, judged once per class from its pydantic schema.

    They can if the schema names a secret type, serializes anything with a function (as secret types do,
    and custom serializers may), takes ``Any`` anywhere, or allows extra fields. Models that cannot are
    never walked on the way to the checkpoint.
    """
    known = _MAY_HOLD_SECRET.get(cls)
    if known is None:
        known = _MAY_HOLD_SECRET[cls] = _schema_may_hold_secret(cls)
    return known


_FUNCTION_SERIALIZERS = ("function-plain", "function-wrap")


def _schema_may_hold_secret(cls: type[pydantic.BaseModel]) -> bool:
    try:
        stack: list[Any] = [cls.__pydantic_core_schema__]
    except Exception:  # a schema pydantic cannot give (yet): assume the worst
        return True
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        children: Iterable[Any]
        if isinstance(node, dict):
            if node.get("type") == "any" or node.get("extra_fields_behavior") == "allow":
                return True
            serialization = node.get("serialization")
            if isinstance(serialization, dict) and serialization.get("type") in _FUNCTION_SERIALIZERS:
                return True
            children = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        for child in children:
            if isinstance(child, type) and issubclass(child, SECRET_TYPES):
                return True
            if isinstance(child, dict | list | tuple):
                stack.append(child)
    return False


def has_non_finite(value: Any) -> bool:
    """Whether ``value`` may hold a NaN or an infinity: exact for plain JSON values, ``True`` when unsure.

    A quick look for the common case (dicts, lists, text, numbers); anything else leaves the answer to
    :func:`find_fault`. Only called on values orjson has already encoded, so it never recurses too deep.
    """
    kind = type(value)
    if kind is dict:
        items: Any = value.values()
    elif kind is list or kind is tuple:
        items = value
    elif kind is float:
        return bool(value - value != 0.0)  # NaN - NaN and inf - inf are NaN
    else:
        return not (kind is str or value is None or kind is int or kind is bool)
    for item in items:
        kind = type(item)
        if kind is str or item is None or kind is int or kind is bool:
            continue
        if kind is float:
            if item - item != 0.0:
                return True
        elif has_non_finite(item):
            return True
    return False


def find_fault(value: Any, path: str, depth: int = 0) -> Fault | None:
    """The first part of ``value`` the codec refuses, with its path, or ``None`` if it is all storable."""
    kind = type(value)
    if kind is str:
        return Fault(path, "holds a lone surrogate, which is not UTF-8") if _has_surrogate(value) else None
    if value is None or kind is bool:
        return None
    if kind is int:
        return _int_fault(value, path)
    if kind is float:
        return _float_fault(value, path)
    if isinstance(value, SECRET_TYPES):
        return find_secret(value, path)
    if depth >= MAX_DEPTH:
        return Fault(path, f"nests deeper than {MAX_DEPTH} levels, more than JSON allows here")
    if isinstance(value, enum.Enum):
        return find_fault(value.value, path, depth + 1)
    if isinstance(value, dict):
        return _dict_fault(value, path, depth)
    if isinstance(value, list | tuple):
        return _items_fault(value, path, depth)
    if isinstance(value, set | frozenset):
        return _items_fault(sorted(value, key=repr), path, depth)
    if isinstance(value, pydantic.BaseModel):
        return _model_fault(value, path, depth)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            found = find_fault(getattr(value, field.name, None), _child(path, field.name), depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(value, str):
        return find_fault(str.__str__(value), path, depth)
    if isinstance(value, int):
        return _int_fault(int(value), path)
    if isinstance(value, float):
        return _float_fault(float(value), path)
    if isinstance(value, decimal.Decimal):
        if value.is_finite():
            return None
        return Fault(path, f"is Decimal({str(value)!r}); only finite decimals are stored")
    if isinstance(value, _KEPT_TYPES):
        return None
    return Fault(
        path,
        f"is {_article(kind.__name__)}, which JSON cannot hold; return dicts, lists, strings, numbers, "
        "dataclasses, pydantic models, datetimes, decimals or UUIDs",
    )


def _int_fault(value: int, path: str) -> Fault | None:
    if _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        return None
    return Fault(path, "is an integer beyond 64 bits, which JSON numbers here cannot hold; store it as text")


def _float_fault(value: float, path: str) -> Fault | None:
    if math.isfinite(value):
        return None
    shown = "NaN" if math.isnan(value) else repr(value)
    return Fault(
        path,
        f"is {shown}; JSON has no NaN or infinity (it would be stored as null): use None, or a string",
    )


def _dict_fault(value: dict[Any, Any], path: str, depth: int) -> Fault | None:
    texts: set[str] = set()
    for key, item in value.items():
        text = key_text(key)
        if text is None:
            return _key_fault(key, path)
        if _has_surrogate(text):
            return Fault(path, "has a key holding a lone surrogate, which is not UTF-8")
        if text in texts:
            return Fault(path, f"has two keys stored as {text!r}; one would overwrite the other")
        texts.add(text)
        found = find_fault(item, _child(path, text), depth + 1)
        if found is not None:
            return found
    return None


def _items_fault(items: Any, path: str, depth: int) -> Fault | None:
    for index, item in enumerate(items):
        found = find_fault(item, f"{path}[{index}]", depth + 1)
        if found is not None:
            return found
    return None


def _model_fault(value: pydantic.BaseModel, path: str, depth: int) -> Fault | None:
    found = find_secret(value, path, depth)
    if found is not None:
        return found
    try:
        dumped = value.model_dump(mode="json")
    except Exception as exc:
        return Fault(path, f"cannot be written as JSON by pydantic: {exc}")
    return find_fault(dumped, path, depth + 1)
