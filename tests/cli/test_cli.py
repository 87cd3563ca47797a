"""The ``conveyor`` command on SQLite and PostgreSQL: each command's table, its ``--json`` document, and
its errors (one line on stderr, exit 2 for usage, 1 for a failure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import Cli


def lines_of(table: str) -> list[list[str]]:
    """A printed table's rows, split on blanks, without its header's underline."""
    return [line.split() for line in table.splitlines() if line.strip() and set(line.strip()) != {"─"}]


def test_migrate_says_what_it_applied(cli: Cli) -> None:
    """Once migrated (by the fixture), `conveyor migrate` applies nothing more, and says so."""
    done = cli("migrate")
    assert done.code == 0
    assert done.out.strip().endswith("schema is up to date (nothing to apply)")
    assert cli("migrate", "--json").json()["applied"] == []


def test_start_a_worker_and_runs_show_on_the_run(cli: Cli) -> None:
    """start records a run; worker --until-idle runs it; runs show (and status) print it and its steps."""
    started = cli(
        "start", "greet", "--input", '"ada"', "--workflow-id", "g-1", "--correlation-id", "req-1", app=True
    )
    assert started.code == 0, started.err
    assert started.out.splitlines()[2].split() == ["state", "pending"]
    worked = cli("worker", "--until-idle", "--json", app=True)
    assert worked.code == 0, worked.err
    assert {key: worked.json()[key] for key in ("claimed", "finished", "errors")} == {
        "claimed": 1,
        "finished": 1,
        "errors": 0,
    }
    shown = cli("runs", "show", "g-1")
    assert shown.code == 0, shown.err
    rows = lines_of(shown.out)
    assert ["state", "completed"] in rows
    assert ["correlation", "id", "req-1"] in rows
    assert ["output", '"hello', 'ada"'] in rows
    step = next(row for row in rows if row[0] == "greet")
    assert step[:3] == ["greet", "completed", "1"]
    assert step[-2:] == ['"hello', 'ada"']
    printed = cli("runs", "show", "g-1", "--json").json()
    assert (printed["state"], printed["correlation_id"], printed["output"]) == (
        "completed",
        "req-1",
        "hello ada",
    )
    [greet] = printed["steps"]
    assert (greet["name"], greet["state"], greet["attempts"], greet["result"]) == (
        "greet",
        "completed",
        1,
        "hello ada",
    )
    assert greet["duration_seconds"] >= 0
    assert greet["error"] is None
    assert printed["created_at"].endswith("+00:00")
    assert cli("status", "g-1", "--json").json() == printed  # status is another name for runs show


def test_start_wait_prints_the_ended_run_and_a_failed_one_exits_1(cli: Cli, tmp_path: Path) -> None:
    """start --wait with a worker done: the run as it ended; a declined order shows its error, exit 1."""
    (tmp_path / "declines").write_text("")
    assert cli("start", "order", "--input", "{}", "--workflow-id", "o-1", app=True).code == 0
    assert cli("worker", "--until-idle", app=True).code == 0
    waited = cli("start", "order", "--workflow-id", "o-1", "--wait", "--timeout", "5", "--json", app=True)
    assert waited.code == 1
    assert waited.json()["state"] == "failed"
    assert waited.json()["error"]["message"] == "card declined"
    shown = cli("runs", "show", "o-1")
    assert shown.code == 1
    assert "error           step charge, attempt 1: NonRetryableError: card declined" in shown.out
    assert [row[:2] for row in lines_of(shown.out) if row[0] in ("reserve", "charge", "ship")] == [
        ["reserve", "completed"],
        ["charge", "failed"],
        ["ship", "pending"],
    ]


def test_start_wait_that_times_out_exits_3_with_one_line(cli: Cli) -> None:
    """No worker: --wait --timeout says the run is still pending, on one line; stdout stays empty."""
    done = cli(
        "start",
        "greet",
        "--input",
        '"x"',
        "--workflow-id",
        "slow",
        "--wait",
        "--timeout",
        "0.05",
        "--json",
        app=True,
    )
    assert done.code == 3
    assert done.out == ""
    assert done.err.count("\n") == 1
    assert "run 'slow' is still pending" in done.err


def test_runs_list_prints_a_table_newest_first_and_the_next_page(cli: Cli) -> None:
    """`conveyor runs list` shows id, workflow@version, state, correlation id; `more: --page T` leads on."""
    for number in range(3):
        cli("start", "greet", "--input", f'"n{number}"', "--workflow-id", f"g-{number}", app=True)
    done = cli("runs", "list", "--limit", "2")
    assert done.code == 0, done.err
    rows = lines_of(done.out)
    assert rows[0] == [
        "WORKFLOW",
        "ID",
        "WORKFLOW",
        "STATE",
        "CORRELATION",
        "ID",
        "CREATED",
        "(UTC)",
        "ERROR",
    ]
    assert [row[:3] for row in rows[1:3]] == [["g-2", "greet@1", "pending"], ["g-1", "greet@1", "pending"]]
    token = rows[3][-1]
    assert rows[3][:2] == ["more:", "--page"]
    page = cli("runs", "list", "--limit", "2", "--page", token, "--json").json()
    assert [run["workflow_id"] for run in page["runs"]] == ["g-0"]
    assert page["next_page"] is None


def test_runs_list_filters_by_workflow_and_state(cli: Cli, tmp_path: Path) -> None:
    """--workflow and --state (repeatable) keep only the runs asked for; none left says so."""
    (tmp_path / "declines").write_text("")
    cli("start", "greet", "--input", '"a"', "--workflow-id", "g-1", app=True)
    cli("start", "order", "--input", "{}", "--workflow-id", "o-1", app=True)
    cli("worker", "--until-idle", app=True)
    done = cli("runs", "list", "--state", "failed", "--state", "compensated")
    assert [row[0] for row in lines_of(done.out)[1:]] == ["o-1"]
    assert lines_of(done.out)[1][-2:] == ["card", "declined"]
    assert cli("runs", "list", "--workflow", "greet", "--state", "failed").out.strip() == "no runs"
    assert cli("runs", "list", "--workflow", "greet", "--json").json()["runs"][0]["state"] == "completed"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--state", "finished"], "'finished' is not a run state"),
        (["--limit", "0"], "must be a whole number from 1 to 1000"),
        (["--page", "zzz"], "'zzz' is not a page token"),
    ],
)
def test_runs_list_refuses_bad_arguments_in_one_line(cli: Cli, arguments: list[str], message: str) -> None:
    """A bad state, limit or page token: one line naming it, and a non-zero exit."""
    done = cli("runs", "list", *arguments)
    assert done.code in (1, 2)
    assert message in done.err
    assert len(done.err.strip().splitlines()) == 1
    assert done.out == ""


def test_runs_history_prints_a_runs_events_in_order_as_a_table_or_json(cli: Cli) -> None:
    """`conveyor runs history ID` prints every event of the run, oldest first; --after reads on."""
    cli("start", "greet", "--input", '"ada"', "--workflow-id", "g-1", "--correlation-id", "req-1", app=True)
    cli("worker", "--until-idle", app=True)
    done = cli("runs", "history", "g-1")
    assert done.code == 0, done.err
    rows = lines_of(done.out)
    assert rows[0] == ["SEQ", "AT", "(UTC)", "EVENT", "STEP", "WORKER", "DETAILS"]
    kinds = [row[3] for row in rows[1:]]
    assert kinds[0] == "run.started"
    assert kinds[-3:] == ["step.started", "step.completed", "run.completed"]
    assert any(part.startswith("took=") for part in rows[-2])
    seq = len(kinds) - 2
    printed = cli("runs", "history", "g-1", "--after", str(seq), "--json").json()
    assert [(event["seq"], event["kind"]) for event in printed] == [
        (seq + 1, "step.completed"),
        (seq + 2, "run.completed"),
    ]
    assert {event["correlation_id"] for event in printed} == {"req-1"}
    assert printed[0]["id"] == f"g-1#{seq + 1}"
    missing = cli("runs", "history", "nope")
    assert (missing.code, missing.out) == (1, "")
    assert "no run 'nope'" in missing.err
    refused = cli("runs", "history", "g-1", "--after", "-1")
    assert refused.code == 2
    assert "--after: must be a whole number" in refused.err


def test_signal_sends_a_payload_a_waiting_run_receives(cli: Cli) -> None:
    """`conveyor signal ID NAME --payload JSON` resumes a run waiting for it; an ended run refuses one."""
    cli("start", "approval", "--workflow-id", "a-1", app=True)
    cli("worker", "--until-idle", app=True)
    sent = cli("signal", "a-1", "approved", "--payload", '{"by": "cli"}')
    assert sent.code == 0, sent.err
    assert "signal 'approved' sent to run 'a-1'" in sent.out
    cli("worker", "--until-idle", app=True)
    assert cli("runs", "show", "a-1", "--json").json()["output"] == {"by": "cli"}
    again = cli("signal", "a-1", "approved", "--json")
    assert (again.code, again.out) == (1, "")
    assert "has ended" in again.err
    assert cli("signal", "nobody", "approved").code == 1


def test_signal_json_names_the_signal_it_kept(cli: Cli) -> None:
    """--json: the run, the signal's name and its id."""
    cli("start", "approval", "--workflow-id", "a-2", app=True)
    printed = cli("signal", "a-2", "approved", "--json").json()
    assert printed["workflow_id"] == "a-2"
    assert printed["signal"] == "approved"
    assert isinstance(printed["signal_id"], int)


def test_pause_then_resume_lets_a_worker_go_on(cli: Cli) -> None:
    """pause holds a run (a worker leaves it); resume lifts the pause, logged, and a worker finishes it."""
    cli("start", "greet", "--input", '"ada"', "--workflow-id", "p-1", app=True)
    paused = cli("pause", "p-1", "--by", "ops", "--reason", "hold on", "--json")
    assert paused.code == 0, paused.err
    assert paused.json()["paused"] is True
    assert "pending (paused)" in cli("runs", "show", "p-1").out
    cli("worker", "--until-idle", app=True)
    assert cli("runs", "show", "p-1", "--json").json()["state"] == "pending"
    resumed = cli("resume", "p-1", "--by", "ops", "--reason", "go", "--json")  # no --app: nothing runs here
    assert resumed.code == 0, resumed.err
    assert resumed.json()["paused"] is False
    assert [(a["action"], a["reason"]) for a in resumed.json()["operator_actions"]] == [
        ("pause", "hold on"),
        ("unpause", "go"),
    ]
    cli("worker", "--until-idle", app=True)
    assert cli("runs", "show", "p-1", "--json").json()["output"] == "hello ada"


def test_unpause_is_resume_and_resume_here_drives_the_run_here(cli: Cli) -> None:
    """unpause is another name for resume; resume --here (with --app) drives a paused run to its end."""
    cli("start", "greet", "--input", '"bo"', "--workflow-id", "p-2", app=True)
    cli("start", "greet", "--input", '"cy"', "--workflow-id", "p-3", app=True)
    cli("pause", "p-2")
    cli("pause", "p-3")
    assert cli("unpause", "p-2", "--json").json()["paused"] is False
    here = cli("resume", "p-3", "--here", "--json", app=True)
    assert here.code == 0, here.err
    assert (here.json()["state"], here.json()["output"]) == ("completed", "hello cy")
    needs_app = cli("resume", "p-2")  # not paused: resuming drives it here, which needs the workflows
    assert needs_app.code == 1
    assert "register it (conveyor --app)" in needs_app.err


def test_cancel_and_compensate_print_the_run_they_ended(cli: Cli) -> None:
    """cancel ends a pending run cancelled with its reason; compensate undoes a completed one."""
    cli("start", "greet", "--input", '"a"', "--workflow-id", "c-1", app=True)
    cancelled = cli("cancel", "c-1", "--reason", "customer asked", "--json", app=True)
    assert cancelled.code == 0, cancelled.err
    assert (cancelled.json()["state"], cancelled.json()["cancel_reason"]) == ("cancelled", "customer asked")
    cli("start", "greet", "--input", '"b"', "--workflow-id", "c-2", app=True)
    cli("worker", "--until-idle", app=True)
    undone = cli("compensate", "c-2", "--reason", "returned", app=True)
    assert undone.code == 0, undone.err
    assert ["state", "cancelled"] in lines_of(undone.out)
    assert cli("cancel", "c-2").code == 0  # cancelling a cancelled run is harmless
    cli("start", "greet", "--input", '"c"', "--workflow-id", "c-3", app=True)
    cli("worker", "--until-idle", app=True)
    ended = cli("cancel", "c-3", "--json")
    assert (ended.code, ended.out) == (1, "")
    assert "run 'c-3' has already ended (completed)" in ended.err
    assert ended.err.count("\n") == 1


def test_skip_retry_from_a_step_and_complete(cli: Cli, tmp_path: Path) -> None:
    """A declined charge is skipped with a result; the run is retried from ship; another is completed by
    hand; every action is in the printed operator log, with --by and --reason."""
    declines = tmp_path / "declines"
    declines.write_text("")
    cli("start", "order", "--input", "{}", "--workflow-id", "o-1", app=True)
    failed = cli("resume", "o-1", "--by", "ops", app=True)  # nobody drives it: resume drives it here
    assert failed.code == 1
    assert ["state", "failed"] in lines_of(failed.out)
    skipped = cli(
        "skip",
        "o-1",
        "charge",
        "--result",
        '"paid by phone"',
        "--by",
        "ops",
        "--reason",
        "x",
        "--json",
        app=True,
    )
    assert skipped.code == 0, skipped.err
    assert skipped.json()["output"] == "shipped after paid by phone"
    declines.unlink()
    retried = cli(
        "retry", "o-1", "--from-step", "ship", "--by", "ops", "--reason", "resend", "--json", app=True
    )
    assert retried.code == 0, retried.err
    assert [(a["action"], a["step"]) for a in retried.json()["operator_actions"]] == [
        ("resume", None),
        ("skip", "charge"),
        ("retry", "ship"),
    ]
    cli("start", "order", "--input", "{}", "--workflow-id", "o-2", app=True)
    completed = cli("complete", "o-2", "--output", '{"by": "hand"}', "--reason", "shipped by courier")
    assert completed.code == 0, completed.err
    done_by_hand = lines_of(completed.out.split("DONE BY HAND")[1])
    assert [row[0] for row in done_by_hand[1:]] == ["complete"]
    assert done_by_hand[1][-3:] == ["shipped", "by", "courier"]
    shown = cli("runs", "show", "o-2", "--json").json()
    assert (shown["state"], shown["output"]) == ("completed", {"by": "hand"})
    not_failed = cli("retry", "o-2", "--json", app=True)
    assert (not_failed.code, not_failed.out) == (1, "")
    assert "only a failed" in not_failed.err


def test_retry_and_skip_need_an_app(cli: Cli) -> None:
    """retry and skip drive the run here: without --app, one line saying so, exit 2."""
    for arguments in (("retry", "o-1"), ("skip", "o-1", "charge")):
        done = cli(*arguments)
        assert done.code == 2
        assert f"conveyor {arguments[0]} needs --app MODULE:ATTRIBUTE" in done.err


def test_stats_shows_performance_and_bottlenecks_over_the_window(cli: Cli, tmp_path: Path) -> None:
    """stats: each workflow's finished runs and rates, the steps worst first; --json both reports."""
    cli("start", "greet", "--input", '"a"', "--workflow-id", "g-1", app=True)
    cli("start", "greet", "--input", '"b"', "--workflow-id", "g-2", app=True)
    (tmp_path / "declines").write_text("")
    cli("start", "order", "--input", "{}", "--workflow-id", "o-1", app=True)
    cli("worker", "--until-idle", app=True)
    done = cli("stats", "--since", "1h", app=True)
    assert done.code == 0, done.err
    rows = lines_of(done.out)
    assert rows[0][:3] == ["runs", "finished", "from"]
    assert rows[1] == [
        "WORKFLOW",
        "FINISHED",
        "SUCCESS",
        "FAILURE",
        "PER",
        "MIN",
        "P50",
        "P95",
        "P99",
        "HEALTH",
    ]
    greet = next(row for row in rows if row[0] == "greet")
    assert greet[1:4] == ["2", "100.0%", "0.0%"]
    order = next(row for row in rows if row[0] == "order")
    assert order[1:4] == ["1", "0.0%", "100.0%"]
    assert any(row[:2] == ["RANK", "WORKFLOW"] for row in rows)
    printed = cli("stats", "--since", "1h", "--workflow", "order", "--json", app=True).json()
    assert printed["performance"]["window"]["seconds"] == 3600
    assert [found["workflow"] for found in printed["performance"]["workflows"]] == ["order"]
    steps = {(step["step"], step["failed"]) for step in printed["bottlenecks"]["steps"]}
    assert steps == {("reserve", 0), ("charge", 1)}
    assert cli("stats", "--since", "soon").code == 2


def test_stats_with_no_run_finished_says_so(cli: Cli) -> None:
    """An empty window: a sentence per report, not empty tables; --json says finished 0."""
    done = cli("stats")
    assert done.code == 0, done.err
    assert "no run finished in the window" in done.out
    assert "no step ran in the window" in done.out
    assert cli("stats", "--json").json()["performance"]["finished"] == 0


def test_an_unknown_run_is_one_line_and_exit_1_for_every_command_on_a_run(cli: Cli) -> None:
    """runs show, status, history, signal, cancel, pause, resume, compensate, complete: 'no run', exit 1."""
    for arguments in (
        ("runs", "show", "nope"),
        ("status", "nope"),
        ("runs", "history", "nope"),
        ("signal", "nope", "approved"),
        ("cancel", "nope"),
        ("pause", "nope"),
        ("resume", "nope"),
        ("compensate", "nope"),
        ("complete", "nope"),
        ("retry", "nope"),
    ):
        done = cli(*arguments, "--json", app=arguments[0] == "retry")
        assert done.code == 1, (arguments, done.err)
        assert done.out == "", arguments
        assert done.err.startswith("conveyor: "), done.err
        assert done.err.count("\n") == 1, done.err
        assert "'nope'" in done.err, done.err
