"""Names no backend can store (control characters, lone surrogates) are refused when a workflow is built."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conveyor import DefinitionError, Flow, Saga, TemplateError, load_template, step, task
from conveyor.definition.names import check_name
from conveyor.definition.registry import Registry

BAD = [
    pytest.param("a\x00b", "'\\x00'", id="NUL"),
    pytest.param("a\nb", "'\\n'", id="newline"),
    pytest.param("tab\there", "'\\t'", id="tab"),
    pytest.param("esc\x1b[31m", "'\\x1b'", id="escape"),
    pytest.param("del\x7f", "'\\x7f'", id="DEL"),
    pytest.param("c1\x85", "'\\x85'", id="C1 control"),
    pytest.param("half\ud800", "'\\ud800'", id="lone surrogate"),
]
GOOD = ["charge", "charge card", "order:42", "50%", "café", "注文", "🚚", "a.b-c_d/e"]


def echo(value: Any) -> Any:
    return value


@pytest.mark.parametrize(("name", "shown"), BAD)
def test_check_name_refuses_control_characters_and_lone_surrogates_naming_both(name, shown):
    """The error names what was being named, the name itself, and the character at fault."""
    with pytest.raises(DefinitionError) as raised:
        check_name(name, "a step name")
    message = str(raised.value)
    assert message.startswith(f"a step name may not hold the character {shown}: {name!r}")


@pytest.mark.parametrize("name", GOOD)
def test_check_name_keeps_any_other_text(name):
    """Spaces, punctuation, ':' and '%', accents, other scripts and emoji are all fine."""
    assert check_name(name, "a step name") == name


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_check_name_refuses_empty_and_non_text_names(name):
    """An empty or non-string name is refused as before."""
    with pytest.raises(DefinitionError, match="must be a non-empty string"):
        check_name(name, "a step name")


# --- every front end ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "shown"), BAD)
def test_a_flow_name_with_a_control_character_is_refused_by_flow(name, shown):
    """Flow(name) refuses the name at once."""
    with pytest.raises(DefinitionError, match=re.escape(f"a flow's name may not hold the character {shown}")):
        Flow(name)


@pytest.mark.parametrize(("name", "shown"), BAD)
def test_a_step_name_with_a_control_character_is_refused_by_then(name, shown):
    """then(fn, name=...) refuses the step name when the flow is extended."""
    with pytest.raises(DefinitionError, match=re.escape(f"a step name may not hold the character {shown}")):
        Flow("f").then(echo, name=name)


def test_a_task_name_with_a_control_character_is_refused_when_declared():
    """@task(name=...) refuses the name at declaration, and so does a function whose name has one."""
    with pytest.raises(DefinitionError, match="a task's name may not hold the character '\\\\x00'"):
        task(name="charge\x00")(echo)

    def renamed(value: Any) -> Any:
        return value

    renamed.__name__ = "charge\x00card"
    with pytest.raises(DefinitionError, match="may not hold the character"):
        Flow("f").then(renamed)


def test_a_branch_name_with_a_control_character_is_refused():
    """fork().branch(..., name=...) refuses the branch name."""
    with pytest.raises(DefinitionError, match="a branch name may not hold the character '\\\\n'"):
        Flow("f").then(echo).fork().branch(task(name="left")(echo), name="left\nside")


def test_a_version_with_a_control_character_is_refused_when_built():
    """The version of a flow is checked when the flow is built."""
    with pytest.raises(DefinitionError, match="the version of workflow 'f' may not hold the character"):
        Flow("f", version="1\x00").then(echo).build()


def test_a_namespace_or_registered_name_with_a_control_character_is_refused_by_the_registry():
    """Registry.register refuses a namespace or a name holding a control character."""
    workflow = Flow("f").then(echo).build()
    with pytest.raises(DefinitionError, match="a namespace may not hold the character '\\\\x00'"):
        Registry().register(workflow, namespace="shop\x00")
    with pytest.raises(DefinitionError, match="a workflow name may not hold the character"):
        Registry().register(workflow, name="f\x07")


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"workflow_name": "checkout\x00"}, "a workflow's name may not hold the character '\\\\x00'"),
        ({"namespace": "shop\n"}, "may not hold the character '\\\\n'"),
        ({"version": "2\x1b"}, "the version of workflow .* may not hold the character '\\\\x1b'"),
    ],
)
def test_a_saga_class_with_a_control_character_in_its_names_is_refused_when_defined(attributes, message):
    """A Saga class's workflow_name, namespace and version are checked when the class is defined."""
    with pytest.raises(DefinitionError, match=message):

        class Checkout(Saga):
            workflow_name = attributes.get("workflow_name")
            namespace = attributes.get("namespace", "default")
            version = attributes.get("version", "1")

            @step
            def total(self, cents: int) -> int:
                return cents


class Echo:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        return context


@pytest.mark.parametrize(
    ("field", "yaml_value", "line", "shown"),
    [
        ("name", '"order\\0processing"', 1, "'\\\\x00'"),
        ("namespace_name", '"shop\\t"', 2, "'\\\\t'"),
        ("version", '"1\\x07"', 3, "'\\\\x07'"),
        ("step name", '"charge\\e"', 5, "'\\\\x1b'"),
    ],
)
def test_a_yaml_template_with_a_control_character_in_a_name_is_refused_naming_the_line(
    tmp_path: Path, field: str, yaml_value: str, line: int, shown: str
) -> None:
    """YAML's escapes can spell any character; a name holding a control character is refused at load,
    naming the file, the line and the character."""
    values = {"name": '"checkout"', "namespace_name": '"shop"', "version": '"1"', "step name": '"charge"'}
    values[field] = yaml_value
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: {values["name"]}
            namespace_name: {values["namespace_name"]}
            version: {values["version"]}
            step_templates:
              - name: {values["step name"]}
                handler_class: handlers.Echo
            """
        )
    )
    with pytest.raises(TemplateError, match=f"^{path}:{line}: .*may not hold the character {shown}"):
        load_template(path, handlers={"handlers.Echo": Echo}, registry=Registry())
