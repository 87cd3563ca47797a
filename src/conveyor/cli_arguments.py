"""The ``conveyor`` command's argument types: each turns the text typed into a value, or says what is wrong.

argparse calls a ``type=`` function on each argument's text; an :class:`argparse.ArgumentTypeError` it raises
becomes one line on stderr naming the option (``conveyor worker: argument --lease-seconds: must be a
positive, finite number of seconds, not 'nan'``) and exit status 2, printed by :class:`OneLineParser`.
Nothing typed reaches conveyor unchecked: numbers are finite and in range, counts are whole numbers, text
holds no control characters, NUL or lone surrogates (bytes that are not UTF-8 arrive as those), and
``--input`` is JSON that a checkpoint can hold exactly, nested at most :data:`MAX_INPUT_DEPTH` deep.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from typing import Any, NoReturn

from conveyor.core.states import RunState
from conveyor.engine.checks import check_workflow_id
from conveyor.errors import InvalidArgumentError

LONGEST_SECONDS = 366 * 24 * 3600.0
"""The longest duration an option takes (a year): longer is a typo, and overflows clocks downstream."""
MAX_INPUT_DEPTH = 100
"""How deeply ``--input`` may nest lists and objects."""
MAX_TEXT_LENGTH = 1_000
"""The longest text option (a name, a version, an import path, a URL)."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose every error is one line on stderr (``prog: message``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` on one line and exit 2 (argparse's own prints the whole usage first)."""
        self.exit(2, f"{self.prog}: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text: object) -> str:
    """``text`` on one line: its lines joined with ``; `` and surrounding blanks dropped."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _seconds(text: str, *, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    low_ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) and low_ok and value <= LONGEST_SECONDS):
        kind = "non-negative" if allow_zero else "positive"
        raise argparse.ArgumentTypeError(
            f"must be a {kind}, finite number of seconds (at most {LONGEST_SECONDS:.0f}), not {text!r}"
        )
    return value


def positive_seconds(text: str) -> float:
    """A duration more than zero, finite, at most a year (``--lease-seconds``, ``--timeout``)."""
    return _seconds(text, allow_zero=False)


def non_negative_seconds(text: str) -> float:
    """A duration of zero or more, finite, at most a year (``--grace-seconds``)."""
    return _seconds(text, allow_zero=True)


def age(text: str) -> float:
    """How old something is, in seconds, from text such as ``30d``, ``12h``, ``90m`` or ``1h30m``
    (``prune --older-than``): positive, with its unit (a bare number could mean days or seconds)."""
    from conveyor.runtime.retention import age_seconds

    try:
        if not any(character.isalpha() for character in text):
            raise InvalidArgumentError("no unit")
        return age_seconds(text)
    except InvalidArgumentError:
        raise argparse.ArgumentTypeError(
            f"must be a positive duration with its unit, such as 30d, 12h, 90m or 1h30m, not {text!r}"
        ) from None


def whole_number(minimum: int, maximum: int) -> Callable[[str], int]:
    """The type of an option taking a whole number from ``minimum`` to ``maximum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {minimum} to {maximum}, not {text!r}"
            )
        return value

    parse.__name__ = "whole number"
    return parse


def text(value: str) -> str:
    """Text a person typed: not blank, printable (no control characters, NUL or lone surrogates)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be blank")
    if len(value) > MAX_TEXT_LENGTH:
        raise argparse.ArgumentTypeError(f"is {len(value)} characters long; the limit is {MAX_TEXT_LENGTH}")
    if not value.isprintable():
        bad = next(character for character in value if not character.isprintable())
        raise argparse.ArgumentTypeError(f"must be printable text, but holds {_describe(bad)} (in {value!r})")
    return value


def workflow_id(value: str) -> str:
    """A run's id: printable text within conveyor's length limit."""
    value = text(value)
    try:
        return check_workflow_id(value)
    except InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def run_state(value: str) -> RunState:
    """A run state by its name (``failed``, ``completed``, ...)."""
    try:
        return RunState(value)
    except ValueError:
        known = ", ".join(state.value for state in RunState)
        raise argparse.ArgumentTypeError(f"{value!r} is not a run state; the states are {known}") from None


def json_input(value: str) -> Any:
    """``--input``: JSON, held exactly by a checkpoint (no NaN or infinity, no NUL or lone surrogate)."""
    try:
        parsed = json.loads(value, parse_constant=_refuse_constant)
    except RecursionError:
        raise argparse.ArgumentTypeError(
            f"is nested too deeply; at most {MAX_INPUT_DEPTH} levels of lists and objects"
        ) from None
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"is not JSON: {exc}") from None
    except ValueError as exc:  # _refuse_constant
        raise argparse.ArgumentTypeError(str(exc)) from None
    _check_value(parsed)
    return parsed


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"holds {name}, which a checkpoint cannot store exactly")


def _check_value(value: Any) -> None:
    """Walk ``value`` without recursion: depth, and text that a database cannot hold."""
    pending: list[tuple[Any, str, int]] = [(value, "input", 0)]
    while pending:
        item, path, depth = pending.pop()
        if isinstance(item, str):
            _check_stored_text(item, path)
        elif isinstance(item, list | dict):
            if depth >= MAX_INPUT_DEPTH:
                raise argparse.ArgumentTypeError(
                    f"is nested too deeply at {path}; at most {MAX_INPUT_DEPTH} levels of lists and objects"
                )
            if isinstance(item, list):
                pending.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item))
            else:
                for key, child in item.items():
                    _check_stored_text(key, f"{path} (a key)")
                    pending.append((child, f"{path}.{key}", depth + 1))


def _check_stored_text(value: str, path: str) -> None:
    for character in value:
        if character == "\x00" or "\ud800" <= character <= "\udfff":
            raise argparse.ArgumentTypeError(f"{path} holds {_describe(character)}, which cannot be stored")


def _describe(character: str) -> str:
    if character == "\x00":
        return "NUL"
    if "\ud800" <= character <= "\udfff":
        return f"a lone surrogate (U+{ord(character):04X}: bytes that are not UTF-8?)"
    return f"the control character U+{ord(character):04X}"
