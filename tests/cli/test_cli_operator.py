"""``conveyor retry --from-step``, ``skip``, ``complete``, ``pause --by``: done by hand, logged, printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor.cli import main

APP = """
import os
from pathlib import Path

from conveyor import Conveyor, Flow, NonRetryableError, task

FLAG = Path(os.environ["OPERATOR_CLI_FLAG"])


@task
def reserve(order: dict) -> str:
    return "r1"


@task
def charge(reservation: str) -> str:
    if FLAG.exists():
        raise NonRetryableError("card declined")
    return "c1"


@task
def ship(charge_id: str) -> str:
    return f"shipped after {charge_id}"


app = Conveyor(workflows=[Flow("order").then(reserve).then(charge).then(ship).build()])
"""


@pytest.fixture
def run_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """``conveyor ARGS --app operator_cli_app --backend sqlite:///...``: exit code and printed JSON."""
    (tmp_path / "operator_cli_app.py").write_text(APP)
    flag = tmp_path / "declines"
    flag.write_text("")
    monkeypatch.setenv("OPERATOR_CLI_FLAG", str(flag))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    backend = f"sqlite:///{tmp_path / 'c.db'}"

    def run(*arguments: str) -> tuple[int, dict[str, object]]:
        code = main([*arguments, "--app", "operator_cli_app", "--backend", backend])
        out = capsys.readouterr()
        return code, (json.loads(out.out) if out.out.strip() else {"stderr": out.err})

    run.flag = flag
    return run


def test_skip_retry_from_a_step_and_complete_from_the_command_line(run_command) -> None:
    """A declined charge is skipped with a result; the run is retried from ship; another is completed;
    every action is in the printed operator log, with --by and --reason."""
    code, _ = run_command("start", "order", "--workflow-id", "o-1", "--wait", "--timeout", "0.01")
    assert code == 3  # no worker runs it: drive it through the operator commands instead
    code, resumed = run_command("resume", "o-1", "--by", "ops")
    assert code == 1
    assert resumed["state"] == "failed"
    code, skipped = run_command(
        "skip", "o-1", "charge", "--result", '"paid by phone"', "--by", "ops", "--reason", "x"
    )
    assert code == 0
    assert skipped["state"] == "completed"
    assert skipped["output"] == "shipped after paid by phone"
    run_command.flag.unlink()
    code, retried = run_command("retry", "o-1", "--from-step", "ship", "--by", "ops", "--reason", "resend")
    assert code == 0
    assert [(a["action"], a["step"]) for a in retried["operator_actions"]] == [
        ("resume", None),
        ("skip", "charge"),
        ("retry", "ship"),
    ]
    code, _ = run_command("start", "order", "--workflow-id", "o-2")
    code, paused = run_command("pause", "o-2", "--by", "ops", "--reason", "hold")
    assert paused["operator_actions"][0]["reason"] == "hold"
    code, completed = run_command(
        "complete", "o-2", "--output", '{"by": "hand"}', "--reason", "shipped by courier"
    )
    assert code == 0
    assert completed["state"] == "completed"
    assert completed["output"] == {"by": "hand"}
    assert [a["action"] for a in completed["operator_actions"]] == ["pause", "complete"]
