"""Reading YAML workflow templates with line numbers, and errors that say where a template is wrong."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from conveyor.errors import DefinitionError


class TemplateError(DefinitionError):
    """A YAML workflow template is invalid."""


# -- reading YAML with line numbers ---------------------------------------------------------------


class Located(dict[Any, Any]):
    """A YAML mapping that remembers its line and the line of each key."""

    line: int = 0
    key_lines: dict[str, int]


class TemplateLoader(yaml.SafeLoader):
    """PyYAML's safe loader, keeping line numbers and refusing duplicate keys."""


def _construct_mapping(loader: TemplateLoader, node: yaml.MappingNode) -> Iterator[Located]:
    mapping = Located()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    yield mapping
    seen: set[str] = set()
    for key_node, _value in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key {key_node.value!r} twice",
                    key_node.start_mark,
                )
            seen.add(key_node.value)
    mapping.update(loader.construct_mapping(node))
    for key_node, _value in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            mapping.key_lines.setdefault(str(key_node.value), key_node.start_mark.line + 1)


TemplateLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


@dataclass(frozen=True, slots=True)
class Place:
    """Where in which file a value was read, for error messages."""

    source: str
    line: int | None = None
    step: str | None = None
    field: str | None = None

    def error(self, message: str) -> TemplateError:
        """The error to raise for ``message`` at this place."""
        location = self.source if self.line is None else f"{self.source}:{self.line}"
        subject = ", ".join(
            part
            for part in (
                None if self.step is None else f"step {self.step!r}",
                None if self.field is None else f"field {self.field!r}",
            )
            if part
        )
        return TemplateError(
            f"{location}: {subject + ': ' if subject else ''}{message}",
            file=self.source,
            line=self.line,
            step_name=self.step,
            field=self.field,
        )


def place_of(
    mapping: Mapping[str, Any], source: str, key: str | None = None, step: str | None = None
) -> Place:
    """Where ``key`` of ``mapping`` (read from ``source``) is, for an error message."""
    lines = getattr(mapping, "key_lines", {})
    line = lines.get(key) if key is not None else None
    return Place(source, line if line is not None else getattr(mapping, "line", None), step, key)


def text_field(
    mapping: Mapping[str, Any], key: str, source: str, step: str | None = None, *, required: bool = False
) -> str | None:
    """The non-empty string at ``key``, or None when absent (an error when ``required``)."""
    value = mapping.get(key)
    if value is None:
        if required:
            raise place_of(mapping, source, None, step).error(f"the field {key!r} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise place_of(mapping, source, key, step).error(f"must be a non-empty string, not {value!r}")
    return value


def check_fields(mapping: Any, known: Sequence[str], place: Place, what: str) -> Mapping[str, Any]:
    """Check ``mapping`` is a mapping holding only ``known`` fields; return it."""
    if not isinstance(mapping, Mapping):
        raise place.error(f"{what} must be a mapping, not {type(mapping).__name__}")
    for key in mapping:
        if key not in known:
            raise place_of(mapping, place.source, str(key), place.step).error(
                f"unknown field in {what}; the known fields are {', '.join(known)}"
            )
    return mapping
