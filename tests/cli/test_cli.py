"""The ``conveyor`` command: migrate, status, and clear errors for bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor import Conveyor, Flow, NonRetryableError, SqliteBackend, run_durable_workflow, task
from conveyor.cli import main
from postgres_support import PostgresDatabase


@task
def greet(name: str) -> str:
    return f"hello {name}"


def test_status_prints_a_run_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`conveyor status ID` prints the run's state, output and steps."""
    database = tmp_path / "c.db"
    with SqliteBackend(database) as backend:
        run_durable_workflow(Flow("greet").then(greet).build(), "g-1", "ada", backend)
    assert main(["status", "g-1", "--backend", f"sqlite:///{database}"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["state"] == "completed"
    assert printed["output"] == "hello ada"
    assert [step["name"] for step in printed["steps"]] == ["greet"]


def test_status_of_an_unknown_run_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown workflow_id exits 1 with a message naming it."""
    assert main(["status", "nope", "--backend", f"sqlite:///{tmp_path / 'c.db'}"]) == 1
    assert "no run 'nope'" in capsys.readouterr().err


def test_an_unknown_backend_url_exits_2_naming_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    """A backend URL of an unknown kind is refused before anything happens."""
    assert main(["status", "x", "--backend", "mysql://db"]) == 2
    assert "unknown backend URL 'mysql://db'" in capsys.readouterr().err


def test_migrate_creates_the_schema_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`conveyor migrate` on a new SQLite file creates it, and says the schema is up to date."""
    database = tmp_path / "new.db"
    assert main(["migrate", "--backend", f"sqlite:///{database}"]) == 0
    assert database.exists()
    assert "schema is up to date" in capsys.readouterr().out


def test_migrate_creates_the_schema_on_postgres(
    empty_postgres_database: PostgresDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    """`conveyor migrate` on an empty PostgreSQL database creates conveyor's tables."""
    import psycopg

    assert main(["migrate", "--backend", empty_postgres_database.url]) == 0
    with psycopg.connect(empty_postgres_database.url) as connection:
        tables = {row[0] for row in connection.execute("SELECT tablename FROM pg_tables")}
    assert {"conveyor_runs", "conveyor_migrations"} <= tables


def test_a_worker_needs_an_app_with_workflows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`conveyor worker` with no --app, an --app that is not a runtime, or no workflows: one line."""
    monkeypatch.delenv("CONVEYOR_APP", raising=False)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["worker", "--backend", url]) == 2
    assert "conveyor worker needs --app MODULE:ATTRIBUTE" in capsys.readouterr().err
    assert main(["worker", "--backend", url, "--app", "json:dumps"]) == 2
    assert "json:dumps must be a conveyor.Conveyor, but is function" in capsys.readouterr().err
    (tmp_path / "empty_app.py").write_text("from conveyor import Conveyor\napp = Conveyor()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["worker", "--backend", url, "--app", "empty_app"]) == 1
    assert "no workflows registered" in capsys.readouterr().err


def test_start_by_name_then_a_worker_runs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`conveyor start NAME` records a run; `conveyor worker --until-idle` runs it; `--wait` reports it."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "integration"))
    monkeypatch.setenv("WORKER_LOG", str(tmp_path / "steps.log"))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    common = ["--backend", url, "--app", "worker_app"]
    assert main(["start", "orders", *common, "--input", '{"id": "o-1"}', "--workflow-id", "cli-1"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "pending"
    assert main(["worker", *common, "--until-idle"]) == 0
    assert main(["start", "orders", *common, "--workflow-id", "cli-1", "--wait", "--timeout", "5"]) == 0
    finished = json.loads(capsys.readouterr().out)
    assert finished["state"] == "completed"
    assert finished["output"] == "confirmed o-1"


def test_start_of_an_unknown_workflow_names_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown workflow name exits 1, listing the workflows that were found."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "integration"))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["start", "nope", "--backend", url, "--app", "worker_app"]) == 1
    error = capsys.readouterr().err
    assert "no workflow 'nope' is registered" in error
    assert "default/orders (1)" in error


def test_start_with_input_that_is_not_json_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--input must be JSON; otherwise the error names the argument and nothing is recorded."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "integration"))
    url = f"sqlite:///{tmp_path / 'c.db'}"
    common = ["--backend", url, "--app", "worker_app"]
    with pytest.raises(SystemExit) as refused:
        main(["start", "orders", *common, "--input", "{oops", "--workflow-id", "bad-1"])
    assert refused.value.code == 2
    assert "argument --input: is not JSON" in capsys.readouterr().err
    assert main(["status", "bad-1", "--backend", url]) == 1
    assert "no run 'bad-1'" in capsys.readouterr().err


@task
def refuse(name: str) -> str:
    raise NonRetryableError(f"no greeting for {name}")


def test_runs_list_prints_a_table_newest_first_and_the_next_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`conveyor runs list` shows id, workflow@version, state and error; `more: --page T` leads on."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with Conveyor(url) as app:
        for number in range(3):
            app.run(Flow("greet").then(greet).build(), f"n{number}", workflow_id=f"g-{number}")
        app.run(Flow("refuse").then(refuse).build(), "bo", workflow_id="r-1")
    assert main(["runs", "list", "--backend", url, "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["WORKFLOW", "ID", "WORKFLOW", "STATE", "CREATED", "(UTC)", "ERROR"]
    assert lines[1].split()[:3] == ["r-1", "refuse@1", "failed"]
    assert lines[1].endswith("no greeting for bo")
    assert lines[2].split()[:3] == ["g-2", "greet@1", "completed"]
    token = lines[3].removeprefix("more: --page ")
    assert main(["runs", "list", "--backend", url, "--limit", "2", "--page", token, "--json"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert [run["workflow_id"] for run in page["runs"]] == ["g-1", "g-0"]
    assert page["next_page"] is None


def test_runs_list_filters_by_workflow_and_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--workflow and --state (repeatable) keep only the runs asked for; none left says so."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with Conveyor(url) as app:
        app.run(Flow("greet").then(greet).build(), "a", workflow_id="g-1")
        app.run(Flow("refuse").then(refuse).build(), "b", workflow_id="r-1")
    assert main(["runs", "list", "--backend", url, "--state", "failed", "--state", "compensated"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["r-1"]
    assert main(["runs", "list", "--backend", url, "--workflow", "greet", "--state", "failed"]) == 0
    assert capsys.readouterr().out.strip() == "no runs"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--state", "finished"], "'finished' is not a run state"),
        (["--limit", "0"], "must be a whole number from 1 to 1000"),
        (["--page", "zzz"], "'zzz' is not a page token"),
    ],
)
def test_runs_list_refuses_bad_arguments_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    """A bad state, limit or page token: one line naming it, and a non-zero exit."""
    try:  # argparse refuses a bad option by exiting; the runtime's refusals come back as the exit code
        code = main(["runs", "list", "--backend", f"sqlite:///{tmp_path / 'x.db'}", *arguments])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    assert code != 0
    error = capsys.readouterr().err.strip()
    assert message in error
    assert len(error.splitlines()) == 1


def test_signal_sends_a_payload_a_waiting_run_receives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`conveyor signal ID NAME --payload JSON` from the command line resumes a run waiting for it."""
    from conveyor import Flow, SqliteBackend, start_workflow
    from conveyor.engine.worker import Worker

    waiting = Flow("cli_wait").wait_for_signal("approved").build()
    database = tmp_path / "s.db"
    backend = SqliteBackend(database)
    start_workflow(waiting, "sig-1", None, backend)
    Worker(backend, [waiting]).run(until_idle=True)
    url = f"sqlite:///{database}"
    assert main(["signal", "sig-1", "approved", "--payload", '{"by": "cli"}', "--backend", url]) == 0
    assert "signal 'approved' sent to run 'sig-1'" in capsys.readouterr().out
    Worker(backend, [waiting]).run(until_idle=True)
    assert main(["status", "sig-1", "--backend", url]) == 0
    assert json.loads(capsys.readouterr().out)["output"] == {"by": "cli"}
    assert main(["signal", "sig-1", "approved", "--backend", url]) == 1
    assert "has ended" in capsys.readouterr().err
    assert main(["signal", "nobody", "approved", "--backend", url]) == 1
    backend.close()


@pytest.mark.parametrize("where", ["sqlite", "postgres"])
def test_runs_history_prints_a_runs_events_in_order_as_a_table_or_json(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    """`conveyor runs history ID` prints every event of the run, oldest first; --after reads on."""
    if where == "sqlite":
        url = f"sqlite:///{tmp_path / 'c.db'}"
    else:
        url = request.getfixturevalue("postgres_database").url
    with Conveyor(url, workflows=[Flow("greet").then(greet).build()]) as app:
        app.run("greet", "ada", workflow_id="g-1", correlation_id="req-1")
    assert main(["runs", "history", "g-1", "--backend", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["SEQ", "AT", "(UTC)", "EVENT", "STEP", "WORKER", "DETAILS"]
    assert [line.split()[3] for line in lines[1:]] == [
        "run.started",
        "step.started",
        "step.completed",
        "run.completed",
    ]
    assert "took=" in lines[3]
    assert main(["runs", "history", "g-1", "--backend", url, "--after", "2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [(event["seq"], event["kind"]) for event in printed] == [
        (3, "step.completed"),
        (4, "run.completed"),
    ]
    assert {event["correlation_id"] for event in printed} == {"req-1"}
    assert printed[0]["id"] == "g-1#3"
    assert main(["runs", "history", "nope", "--backend", url]) == 1
    assert "no run 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main(["runs", "history", "g-1", "--backend", url, "--after", "-1"])
    assert refused.value.code == 2
    assert "--after: must be a whole number" in capsys.readouterr().err
