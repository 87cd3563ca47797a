"""Operator actions on runs whose process was killed (SIGKILL), done from other processes; the annotations
a run's steps record survive the kill exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import operator_app
import pytest
from worker_support import HERE

from conveyor import RunAlreadyRunningError, RunState, get_workflow_status, resume_workflow
from conveyor.backends.urls import open_backend

APP = Path(operator_app.__file__)


def launch(url: str, log: Path, mode: str, **env: str) -> subprocess.Popen[str]:
    """The operator app in a process of its own."""
    return subprocess.Popen(
        [sys.executable, str(APP), url, "ship-1", mode],
        env={**os.environ, "STEP_LOG": str(log), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def steps_run(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def kill_in_pack(url: str, log: Path) -> None:
    """Run the workflow in a process, and SIGKILL it while its second step runs."""
    victim = launch(url, log, "run", HANG_IN_PACK="1")
    deadline = time.monotonic() + 30
    while "pack:hanging" not in steps_run(log):
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the run never reached pack"
        time.sleep(0.02)
    backend = open_backend(url)
    try:  # while it lives, its run is its own: resuming it elsewhere is refused
        with pytest.raises(RunAlreadyRunningError, match="being driven by"):
            resume_workflow(operator_app.SHIPPING, "ship-1", backend)
    finally:
        backend.close()
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL


def test_a_run_killed_mid_step_is_resumed_in_a_new_process_with_resume_workflow(
    database_url: str, tmp_path: Path
) -> None:
    """SIGKILL in pack; a new process's resume_workflow runs pack again and ship once, never reserve."""
    log = tmp_path / "steps.log"
    kill_in_pack(database_url, log)
    backend = open_backend(database_url)
    killed = get_workflow_status("ship-1", backend)
    assert killed.state is RunState.RUNNING
    assert [annotation.name for annotation in killed.annotations] == ["reserved"]  # pack's died with it
    resumer = launch(database_url, log, "resume")
    out, err = resumer.communicate(timeout=60)
    assert resumer.returncode == 0, err
    shown = json.loads(out)
    assert shown["state"] == "completed"
    assert shown["output"] == "shipped p1"
    assert [action for action, _ in shown["actions"]] == ["resume"]
    assert shown["notes"][0] == ["reserved", {"order": 1}]
    assert [name for name, _ in shown["notes"]] == ["reserved", "packed", "checkout_completed"]
    assert shown["notes"][1][1]["pid"] == resumer.pid  # the attempt that completed pack, once
    assert steps_run(log) == ["reserve", "pack", "pack:hanging", "pack", "ship"]
    status = get_workflow_status("ship-1", backend)
    assert status.is_completed()
    assert status.operator_actions[0].action == "resume"
    backend.close()


def test_conveyor_resume_drives_a_killed_run_and_conveyor_status_prints_who_resumed_it(
    database_url: str, tmp_path: Path
) -> None:
    """``conveyor resume --by --reason`` from the command line finishes the run; ``conveyor status`` shows
    the operator log."""
    log = tmp_path / "steps.log"
    kill_in_pack(database_url, log)
    environment = {**os.environ, "PYTHONPATH": str(HERE), "STEP_LOG": str(log)}

    def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "conveyor.cli", *arguments, "--backend", database_url],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    resumed = cli(
        "resume", "ship-1", "--app", "operator_app:app", "--by", "oncall", "--reason", "host died", "--json"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["state"] == "completed"
    shown = cli("status", "ship-1", "--json")
    assert shown.returncode == 0, shown.stderr
    [action] = json.loads(shown.stdout)["operator_actions"]
    assert (action["action"], action["by"], action["reason"]) == ("resume", "oncall", "host died")
    assert steps_run(log).count("ship") == 1
