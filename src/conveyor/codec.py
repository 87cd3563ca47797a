"""The checkpoint codec: values cross a checkpoint as JSON text, and nothing else.

Encoding takes dicts, lists, strings, numbers, booleans, ``None``, dataclasses, pydantic models, datetimes,
dates, times, decimals, UUIDs, enums, sets and tuples. Decoding gives plain JSON values back, or, when the
reader declares a type, that type (through a pydantic ``TypeAdapter`` built once, when the step is declared).
Nothing is ever pickled: reading a checkpoint can never execute code.

A value is stored exactly or not at all: what would come back changed (NaN, infinity, integer dict keys),
and any value marked secret, is refused with an :class:`EncodingError` naming the path to it. The hot path
is one ``orjson.dumps``; only a value orjson refuses, or whose JSON holds ``null`` (which is how orjson
writes NaN), is walked, and a pydantic model only if its class can hold a secret at all.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import typing
import uuid
from typing import Any

import orjson
import pydantic

from conveyor.errors import EncodingError
from conveyor.unstorable import Fault, find_fault, find_secret, has_non_finite, model_may_hold_secret

DEFAULT_MAX_VALUE_BYTES = 64 * 1024 * 1024
"""The largest value stored by default: 64 MiB of JSON.

Well under every backend's own limit (PostgreSQL keeps a run's step results in one ``jsonb`` value, whose
strings stop at 255 MiB, and text at 1 GB; SQLite's strings stop at 1 GB), and far past what a checkpoint
should carry: every read of a run reads all its results. A backend with a lower limit says so with a
``max_value_bytes`` attribute (see :func:`max_value_bytes`).
"""


def max_value_bytes(backend: object) -> int:
    """The most bytes of JSON one value may take in ``backend``: its ``max_value_bytes``, or the default."""
    limit: int = getattr(backend, "max_value_bytes", DEFAULT_MAX_VALUE_BYTES)
    return limit


def _encode_other(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        # pydantic would write a secret as "**********"; only models that can hold one are looked into.
        if model_may_hold_secret(type(value)) and find_secret(value, "") is not None:
            raise TypeError("a secret")  # named, with its path, by find_fault
        return value.model_dump(mode="json")
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise TypeError("a decimal that is not finite")
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, tuple):  # namedtuples reach here
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-encodable")


def encode(value: Any, *, what: str = "value", max_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> str:
    """Return ``value`` as JSON text, or raise :class:`EncodingError` naming what in it cannot be stored.

    ``what`` names the value in the error, and starts every path in it (``input.lines[2].price``). Refused:
    anything JSON cannot hold, NaN and infinity, dict keys that would come back as another type (see
    :mod:`conveyor.unstorable`), secrets (pydantic's ``SecretStr``, ``SecretBytes`` and ``Secret``,
    anywhere in the value, models' fields included), and JSON longer than ``max_bytes`` (the error says the
    size and the limit). The error never shows a secret's value; it carries ``what``, and ``path`` (the
    part at fault) or ``size`` and ``limit`` (in bytes).
    """
    try:
        data = orjson.dumps(value, default=_encode_other)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        data = _encode_refused(value, what, exc)
        text = data.decode()
    else:
        text = data.decode()
        # orjson writes NaN and infinity as null: only then can a value hold one.
        if "null" in text and has_non_finite(value):
            fault = find_fault(value, what)
            if fault is not None:
                raise _refusal(what, fault) from None
    if len(data) > max_bytes:
        raise EncodingError(
            f"{what} is {len(data):,} bytes as JSON; the limit is {max_bytes:,} bytes "
            f"({_mebibytes(max_bytes)}). Store large data elsewhere (a file or an object store) and pass "
            "a reference to it",
            what=what,
            size=len(data),
            limit=max_bytes,
        )
    return text


def _encode_refused(value: Any, what: str, exc: TypeError) -> bytes:
    """Name what orjson refused in ``value``, or encode it if all it refused were keys the codec keeps."""
    fault = find_fault(value, what)
    if fault is not None:
        if fault.secret:
            raise _refusal(what, fault) from None  # nothing of the secret in the chain of causes
        raise _refusal(what, fault) from exc
    try:  # only keys kept as their text (UUIDs, datetimes, enums of text, str subclasses) remain
        return orjson.dumps(value, default=_encode_other, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as again:
        raise EncodingError(
            f"{what} cannot be stored as JSON: {again}. Return dicts, lists, strings, numbers, "
            "dataclasses, pydantic models, datetimes, decimals or UUIDs.",
            what=what,
        ) from again


def _refusal(what: str, fault: Fault) -> EncodingError:
    return EncodingError(f"{what} cannot be stored as JSON: {fault}", what=what, path=fault.path)


def _mebibytes(size: int) -> str:
    return f"{size / (1024 * 1024):.3g} MiB"


def decode(text: str | bytes) -> Any:
    """Return the plain JSON value stored as ``text``."""
    return orjson.loads(text)


_PASS_THROUGH: tuple[Any, ...] = (Any, object, dict, list, str, int, bool, type(None))


def needs_adapter(annotation: Any) -> bool:
    """Say whether values of ``annotation`` need converting after plain JSON decoding."""
    if any(annotation is plain for plain in _PASS_THROUGH):
        return False
    if typing.get_origin(annotation) in (dict, list):
        return any(needs_adapter(arg) for arg in typing.get_args(annotation))
    return True


class TypedCodec:
    """Decodes JSON text into one declared type; built once per annotated parameter or return value."""

    __slots__ = ("_adapter", "annotation")

    def __init__(self, annotation: Any) -> None:
        self.annotation = annotation
        self._adapter: pydantic.TypeAdapter[Any] | None = (
            pydantic.TypeAdapter(annotation) if needs_adapter(annotation) else None
        )

    @property
    def converts(self) -> bool:
        """Whether decoding goes beyond plain JSON values (and so may fail to fit the declared type)."""
        return self._adapter is not None

    def decode(self, text: str) -> Any:
        """Decode ``text`` into the declared type; raises ``pydantic.ValidationError`` if it does not fit."""
        if self._adapter is None:
            return orjson.loads(text)
        return self._adapter.validate_json(text)

    def convert(self, value: Any) -> Any:
        """Convert an already decoded JSON value into the declared type."""
        if self._adapter is None:
            return value
        return self._adapter.validate_python(value)


# Types the codec round-trips; listed so documentation and tests can name them.
SUPPORTED_TYPES: tuple[type, ...] = (
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
)
__all__ = [
    "DEFAULT_MAX_VALUE_BYTES",
    "SUPPORTED_TYPES",
    "TypedCodec",
    "decode",
    "encode",
    "max_value_bytes",
    "needs_adapter",
]
