"""The real ``conveyor`` command, as a subprocess: each bad argument is one line on stderr, a non-zero exit.

Each case is a value a person (or a script) could type: a number that is not finite, a negative count, an id
that is not text, JSON nested past any sense, a timeout that passes, a file that is not a database. None may
print a traceback, and none may be accepted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

APP = """
from conveyor import Conveyor, Flow, task


@task
def greet(name: str) -> str:
    return f"hello {name}"


app = Conveyor(workflows=[Flow("greet").then(greet).build()])
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder holding a runtime module ``cli_app`` (one workflow, ``greet``) and a conveyor database."""
    (tmp_path / "cli_app.py").write_text(APP)
    (tmp_path / "not-a-database.db").write_text("these are not the bytes of a SQLite file\n" * 20)
    return tmp_path


def conveyor(folder: Path, *arguments: str | bytes) -> subprocess.CompletedProcess[str]:
    """Run ``python -m conveyor.cli ARGUMENTS`` in ``folder`` (its own database); the finished process."""
    env = {**os.environ, "CONVEYOR_BACKEND": f"sqlite:///{folder / 'conveyor.db'}"}
    env.pop("CONVEYOR_APP", None)
    return subprocess.run(
        [sys.executable.encode(), b"-m", b"conveyor.cli", *(os.fsencode(part) for part in arguments)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=30,
        check=False,
    )


def assert_refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    """A non-zero exit, and stderr one line, naming ``words``, with no traceback."""
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


WORKER = ("worker", "--app", "cli_app", "--until-idle")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--lease-seconds", "nan"),
        ("--lease-seconds", "inf"),
        ("--lease-seconds", "0"),
        ("--lease-seconds", "-1"),
        ("--poll-interval-seconds", "-5"),
        ("--poll-interval-seconds", "nan"),
        ("--poll-interval-seconds", "0"),
        ("--grace-seconds", "-1"),
        ("--grace-seconds", "nan"),
        ("--max-recoveries", "-1"),
        ("--max-recoveries", "1.5"),
        ("--concurrency", "0"),
        ("--concurrency", "-3"),
        ("--concurrency", "many"),
        ("--concurrency", "100000000"),
    ],
)
def test_a_worker_refuses_a_number_out_of_range(folder: Path, option: str, value: str) -> None:
    """Every numeric option of the worker is checked at the door, naming the option and the value."""
    assert_refused(conveyor(folder, *WORKER, option, value), option, value)


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf", "soon"])
def test_start_refuses_a_timeout_that_is_not_a_positive_number(folder: Path, value: str) -> None:
    """``start --timeout`` must be a positive, finite number of seconds."""
    assert_refused(conveyor(folder, "start", "greet", "--app", "cli_app", "--timeout", value), "--timeout")


def test_a_lone_surrogate_in_a_run_id_is_refused(folder: Path) -> None:
    """Bytes that are not UTF-8 in a workflow id (a lone surrogate to Python) are named, not a traceback."""
    assert_refused(conveyor(folder, "status", b"order-\xed\xa0\x80"), "workflow_id")
    assert_refused(
        conveyor(folder, "start", "greet", "--app", "cli_app", "--workflow-id", b"\xff"), "--workflow-id"
    )


@pytest.mark.parametrize("text", ["order\x01one", "tab\there", " "])
def test_a_run_id_with_control_characters_or_blank_is_refused(folder: Path, text: str) -> None:
    """Control characters and blank ids are refused where the id is typed."""
    assert_refused(conveyor(folder, "status", text), "workflow_id")


def test_text_options_refuse_bytes_that_are_not_text(folder: Path) -> None:
    """The workflow name, the version, the worker's name, --app and --backend are all text."""
    assert_refused(conveyor(folder, "start", b"gr\xffeet", "--app", "cli_app"), "name")
    assert_refused(conveyor(folder, "start", "greet", "--app", "cli_app", "--version", b"1\xff"), "--version")
    assert_refused(conveyor(folder, *WORKER, "--name", b"w\xff"), "--name")
    assert_refused(conveyor(folder, "status", "x", "--app", b"cli\xffapp"), "--app")
    assert_refused(conveyor(folder, "status", "x", "--backend", b"sqlite:///\xff.db"), "--backend")


def test_input_nested_ten_thousand_deep_is_refused(folder: Path) -> None:
    """A 10,000-deep ``--input`` is refused as too deep, and nothing is recorded."""
    deep = "[" * 10_000 + "]" * 10_000
    done = conveyor(folder, "start", "greet", "--app", "cli_app", "--input", deep, "--workflow-id", "deep-1")
    assert_refused(done, "--input", "deep")
    assert_refused(conveyor(folder, "status", "deep-1"), "no SQLite database at", "conveyor.db")
    assert not (folder / "conveyor.db").exists()


@pytest.mark.parametrize("text", ["NaN", '{"x": Infinity}', "{oops", '"\\ud800"'])
def test_input_that_json_cannot_hold_exactly_is_refused(folder: Path, text: str) -> None:
    """NaN, infinity, text that is not JSON, and a lone surrogate escaped in JSON: one line each."""
    assert_refused(conveyor(folder, "start", "greet", "--app", "cli_app", "--input", text), "input")


def test_start_wait_with_a_timeout_that_passes_says_the_run_is_still_going(folder: Path) -> None:
    """No worker runs it: after ``--timeout`` the command says so on one line and exits non-zero."""
    done = conveyor(
        folder, "start", "greet", "--app", "cli_app", "--input", '"ada"', "--workflow-id", "slow-1",
        "--wait", "--timeout", "0.01",
    )  # fmt: skip
    assert_refused(done, "slow-1", "0.01")
    assert "pending" in conveyor(folder, "status", "slow-1").stdout


@pytest.mark.parametrize("command", [("status", "x"), ("migrate",), ("start", "greet", "--app", "cli_app")])
def test_a_sqlite_url_to_a_file_that_is_not_a_database_is_named(
    folder: Path, command: tuple[str, ...]
) -> None:
    """Every command, pointed at a file that is not a SQLite database, names the file."""
    url = f"sqlite:///{folder / 'not-a-database.db'}"
    assert_refused(conveyor(folder, *command, "--backend", url), "not-a-database.db", "not a database")


def test_an_app_that_fails_to_import_is_one_line(folder: Path) -> None:
    """An --app module that raises on import is named with its error, not a traceback."""
    (folder / "broken_app.py").write_text("raise RuntimeError('the settings are missing')\n")
    assert_refused(
        conveyor(folder, *WORKER[:1], "--app", "broken_app"), "broken_app", "the settings are missing"
    )


def test_a_good_command_still_works(folder: Path) -> None:
    """The checks refuse nothing good: a run started, run by a worker, and read back."""
    assert (
        conveyor(
            folder, "start", "greet", "--app", "cli_app", "--input", '"ada"', "--workflow-id", "g-1"
        ).returncode
        == 0
    )
    assert conveyor(folder, *WORKER, "--lease-seconds", "5", "--max-recoveries", "0").returncode == 0
    done = conveyor(folder, "status", "g-1", "--json")
    assert done.returncode == 0, done.stderr
    assert '"output": "hello ada"' in done.stdout


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (("resume", "r-1"), ("no run 'r-1'",)),
        (("retry", "r-1", "--from-step", "charge"), ("needs --app",)),
        (("skip", "r-1", "charge"), ("needs --app",)),
        (("skip", "r-1", "--app", "cli_app"), ("step",)),
        (("skip", "r-1", "greet", "--app", "cli_app", "--result", "{oops"), ("--result", "JSON")),
        (("complete", "r-1", "--output", "NaN"), ("--output",)),
        (("complete", "r-1", "--by", " "), ("--by", "blank")),
        (("complete", "r-1", "--by", "eve\x01"), ("--by", "printable")),
        (("complete", "r-1", "--reason", "a\x02b"), ("--reason",)),
        (("retry", "r-1", "--app", "cli_app", "--from-step", " "), ("--from-step",)),
        (("complete", "no-such-run"), ("no run",)),
        (("resume", "no-such-run", "--app", "cli_app"), ("no run",)),
    ],
)
def test_operator_commands_refuse_bad_arguments_and_unknown_runs(
    folder: Path, arguments: tuple[str, ...], words: tuple[str, ...]
) -> None:
    """resume, retry and skip need the app (they drive the run here); every option is checked; an unknown
    run is one line."""
    assert_refused(conveyor(folder, *arguments), *words)
