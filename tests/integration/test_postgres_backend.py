"""What only the PostgreSQL backend promises: lost connections come back, migrations, NOTIFY, clean errors.

The backend contract itself runs on PostgreSQL in ``tests/contract``; these tests kill sessions with
``pg_terminate_backend`` (a server restart is not possible here), race migrations and check messages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

import postgres_support
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres_sql import apply_migrations, migrations
from conveyor.core.records import Checkpoint, Failure, NewRun, StepRecord
from conveyor.core.states import RunState, StepState
from conveyor.errors import BackendError, InvalidArgumentError
from postgres_support import PostgresDatabase, terminate_sessions

T0 = 1_700_000_000.25
DEADLINE_SECONDS = 10.0

OpenBackend = Callable[..., PostgresBackend]


def new_run(workflow_id: str = "run-1") -> NewRun:
    """A run of a three-step workflow."""
    return NewRun(
        workflow_id=workflow_id,
        workflow_name="orders",
        workflow_version="1",
        input='{"x": 1}',
        correlation_id=f"corr-{workflow_id}",
        step_names=("a", "b", "c"),
    )


def complete_a(workflow_id: str = "run-1", epoch: int = 1) -> Checkpoint:
    """The checkpoint of step a completing."""
    step = StepRecord("a", StepState.COMPLETED, attempts=1, result='"ok"', completion_order=1)
    return Checkpoint(workflow_id, epoch, (step,), RunState.RUNNING, None, None, None, at=T0 + 1)


def query(url: str, sql: Any, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on a short-lived connection of the test's own (not tagged "conveyor")."""
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(sql, params).fetchall()


def conveyor_sessions(database: PostgresDatabase, condition: str = "true") -> int:
    """How many sessions tagged "conveyor" are on the test's database (and meet ``condition``)."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = 'conveyor' AND "
        + condition
    )
    return int(query(database.server, sql, (database.name,))[0][0])


def chain_text(error: BaseException | None) -> str:
    """The messages of ``error`` and of every exception chained to it."""
    texts = []
    while error is not None:
        texts.append(f"{type(error).__name__}: {error} {error.args!r}")
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return "\n".join(texts)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (a query) until it holds, failing after the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting until {what}"


@pytest.fixture
def open_backend() -> Iterator[OpenBackend]:
    """Open PostgresBackend objects; every one is closed after the test."""
    opened: list[PostgresBackend] = []

    def open_one(url: str, **options: Any) -> PostgresBackend:
        backend = PostgresBackend(url, **options)
        opened.append(backend)
        return backend

    yield open_one
    for backend in opened:
        backend.close()


# --- lost connections ------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_next_call_after_every_session_was_terminated_succeeds(
    postgres_database: PostgresDatabase, open_backend: OpenBackend
) -> None:
    """After pg_terminate_backend of all the backend's sessions, the next calls get fresh connections."""
    backend = open_backend(postgres_database.url, min_connections=2)
    backend.start_run(new_run(), owner="inline", now=T0)
    assert conveyor_sessions(postgres_database) >= 1

    assert terminate_sessions(postgres_database.server, postgres_database.name) >= 1

    backend.record_checkpoint(complete_a())
    loaded = backend.load_run("run-1")
    assert loaded is not None
    assert loaded.steps["a"].state is StepState.COMPLETED
    assert backend.submit_run(new_run("run-2"), now=T0)[1] is True


@pytest.mark.postgres
def test_call_whose_connection_dies_mid_flight_raises_backend_error_and_a_retry_works(
    postgres_database: PostgresDatabase, open_backend: OpenBackend
) -> None:
    """A checkpoint waiting on a row lock when its session is killed raises BackendError; a retry succeeds."""
    backend = open_backend(postgres_database.url)
    backend.start_run(new_run(), owner="inline", now=T0)
    with ThreadPoolExecutor(max_workers=1) as pool, psycopg.connect(postgres_database.url) as locker:
        locker.execute("SELECT 1 FROM conveyor_runs WHERE workflow_id = 'run-1' FOR UPDATE")
        pending = pool.submit(backend.record_checkpoint, complete_a())
        wait_until(
            lambda: conveyor_sessions(postgres_database, "wait_event_type = 'Lock'") == 1,
            "the checkpoint waits for the row lock",
        )

        terminate_sessions(postgres_database.server, postgres_database.name)

        with pytest.raises(BackendError, match="failed to record a checkpoint") as raised:
            pending.result(timeout=DEADLINE_SECONDS)
        assert isinstance(raised.value.__cause__, psycopg.OperationalError)
        locker.rollback()

    backend.record_checkpoint(complete_a())
    loaded = backend.load_run("run-1")
    assert loaded is not None
    assert loaded.steps["a"].state is StepState.COMPLETED


@pytest.mark.postgres
def test_listening_connection_recovers_after_being_terminated(
    postgres_database: PostgresDatabase, open_backend: OpenBackend
) -> None:
    """wait_for_work reconnects and LISTENs again after its session was killed, and then wakes on work."""
    backend = open_backend(postgres_database.url)
    assert backend.wait_for_work(0.05) is False
    assert backend.now() > 0
    assert terminate_sessions(postgres_database.server, postgres_database.name) >= 2  # pool + listener

    woken = threading.Event()

    def submit_until_woken() -> None:
        for n in range(100_000):
            if woken.is_set():
                return
            backend.submit_run(new_run(f"run-{n}"), now=T0)

    submitter = threading.Thread(target=submit_until_woken)
    submitter.start()
    try:
        result = backend.wait_for_work(DEADLINE_SECONDS)
    finally:
        woken.set()
        submitter.join(timeout=30)

    assert result is True


@pytest.mark.postgres
def test_a_submit_through_another_backend_wakes_a_worker_that_claimed_nothing(
    postgres_database: PostgresDatabase, open_backend: OpenBackend
) -> None:
    """A worker that found nothing to claim is woken by a submit made after its claim, from elsewhere."""
    worker = open_backend(postgres_database.url)
    client = open_backend(postgres_database.url)
    assert worker.claim_runs(owner="worker-1", limit=10, lease_seconds=60, max_recoveries=3) == []

    client.submit_run(new_run(), now=T0)
    started = time.monotonic()

    assert worker.wait_for_work(DEADLINE_SECONDS) is True
    assert time.monotonic() - started < 2
    claimed = worker.claim_runs(owner="worker-1", limit=1, lease_seconds=60, max_recoveries=3)
    assert [record.workflow_id for record in claimed] == ["run-1"]


# --- migrations ------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_migrations_run_once_when_two_backends_migrate_a_fresh_database_at_once(
    empty_postgres_database: PostgresDatabase, open_backend: OpenBackend
) -> None:
    """Two backends migrating one empty database together: one applies every version, the other nothing."""
    backends = [open_backend(empty_postgres_database.url) for _ in range(2)]
    barrier = threading.Barrier(2, timeout=DEADLINE_SECONDS)

    def migrate(backend: PostgresBackend) -> list[int]:
        barrier.wait()
        return backend.migrate()

    with ThreadPoolExecutor(max_workers=2) as pool:
        applied = list(pool.map(migrate, backends))

    assert sorted(applied) == [[], [migration.version for migration in migrations()]]
    assert query(
        empty_postgres_database.url, "SELECT version, name FROM conveyor_migrations ORDER BY version"
    ) == [
        (1, "initial"),
        (2, "ready_queue_order"),
        (3, "steps_in_the_run_row"),
        (4, "definition_hash"),
        (5, "runs_listed_newest_first"),
        (6, "signals"),
        (7, "steering"),
        (9, "operator_log_and_annotations"),
        (10, "child_runs"),
        (11, "held_runs_by_lease_end"),
        (12, "event_history"),
        (13, "trace_context"),
        (14, "finished_runs"),
        (15, "event_cursor_leases"),
        (16, "analytics_hours"),
        (17, "runs_by_correlation_id"),
    ]


@pytest.mark.postgres
def test_first_use_migrates_a_fresh_database_also_from_two_backends_at_once(
    empty_postgres_database: PostgresDatabase, open_backend: OpenBackend
) -> None:
    """Without migrate(), the first calls of two backends on an empty database both work."""
    backends = [open_backend(empty_postgres_database.url) for _ in range(2)]
    barrier = threading.Barrier(2, timeout=DEADLINE_SECONDS)

    def start(index: int) -> bool:
        barrier.wait()
        return backends[index].start_run(new_run(f"run-{index}"), owner="inline", now=T0)[1]

    with ThreadPoolExecutor(max_workers=2) as pool:
        created = list(pool.map(start, range(2)))

    assert created == [True, True]
    assert query(empty_postgres_database.url, "SELECT version FROM conveyor_migrations ORDER BY 1") == [
        (migration.version,) for migration in migrations()
    ]
    assert backends[0].migrate() == []


@pytest.mark.postgres
def test_a_database_at_schema_1_is_brought_up_to_date_with_its_runs_and_steps_kept(
    empty_postgres_database: PostgresDatabase, open_backend: OpenBackend
) -> None:
    """A database an earlier conveyor made (schema 1: steps in their own table) is migrated in place: its
    runs keep every step column, the claim-order index exists, and the runs can be claimed and driven on."""
    url = empty_postgres_database.url
    with psycopg.connect(url, autocommit=True) as connection:
        apply_migrations(connection, up_to=1)
        connection.execute(
            "INSERT INTO conveyor_runs (workflow_id, workflow_name, workflow_version, state, input, "
            "correlation_id, step_names, created_at, updated_at, epoch, recoveries) VALUES ('run-1', "
            "'orders', '1', 'pending', '{\"x\": 1}', 'corr', '[\"a\", \"b\", \"c\"]', %s, %s, 0, 0)",
            (T0, T0),
        )
        error = '{"step_name": "b", "error_type": "E", "message": "m", "attempts": 1}'
        connection.execute(
            "INSERT INTO conveyor_steps VALUES "
            "('run-1', 'a', 'completed', 2, '\"ok\"', NULL, NULL, %s, %s, 1, 0, NULL), "
            "('run-1', 'b', 'failed', 1, NULL, %s, %s, %s, %s, NULL, 0, NULL)",
            (T0, T0 + 1, error, T0 + 9, T0 + 2, T0 + 3),
        )

    backend = open_backend(url)
    assert backend.migrate() == [migration.version for migration in migrations()][1:]

    record = backend.load_run("run-1")
    assert record is not None
    a, b, c = (record.steps[name] for name in ("a", "b", "c"))
    assert (a.state, a.attempts, a.result, a.started_at, a.finished_at, a.completion_order) == (
        StepState.COMPLETED,
        2,
        '"ok"',
        T0,
        T0 + 1,
        1,
    )
    assert b.state is StepState.FAILED
    assert b.error is not None
    assert b.error.message == "m"
    assert (b.next_attempt_at, b.started_at, b.finished_at) == (T0 + 9, T0 + 2, T0 + 3)
    assert c.state is StepState.PENDING
    [(definition,)] = query(url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'conveyor_runs_queue'")
    assert "COALESCE(wake_at, created_at)" in definition
    assert query(url, "SELECT to_regclass('conveyor_steps') IS NULL") == [(True,)]
    [claimed] = backend.claim_runs(owner="w", limit=5, lease_seconds=30, max_recoveries=5)
    assert claimed.steps == record.steps
    backend.record_checkpoint(complete_a(epoch=claimed.epoch))
    reread = backend.load_run("run-1")
    assert reread is not None
    assert reread.steps["a"].attempts == 1  # the checkpoint replaced step a, and left b as it was
    assert reread.steps["b"] == b


@pytest.mark.postgres
def test_a_claim_walks_the_claim_order_index_even_before_the_table_is_analyzed(
    postgres_database: PostgresDatabase, open_backend: OpenBackend
) -> None:
    """With a backlog in a table never analyzed, a claim reads the runs in order and stops at its limit
    (the planner would otherwise sort every ready run on each claim until autovacuum analyzed the table)."""
    backend = open_backend(postgres_database.url)
    for number in range(300):
        backend.submit_run(new_run(f"run-{number:03}"), now=T0 + number)
    [(analyzed,)] = query(
        postgres_database.url, "SELECT reltuples FROM pg_class WHERE relname = 'conveyor_runs'"
    )
    assert analyzed < 0  # never analyzed, as in a new database

    params = {
        "owner": "w",
        "limit": 1,
        "lease_seconds": 30.0,
        "max_recoveries": 5,
        "workflow_names": ["orders"],
        "reclaim_own": False,
        "exclude": ["run-000"],  # a run the claiming worker's own slot holds
        "history": True,
    }
    with backend._claim_pool.connection() as connection:  # EXPLAIN alone plans, and changes nothing
        plan = "\n".join(
            row[0] for row in connection.execute("EXPLAIN " + backend._queries["claim_runs"], params)
        )
    assert "Index Scan using conveyor_runs_queue" in plan
    assert "Sort" not in plan
    [claimed] = backend.claim_runs(owner="w", limit=1, lease_seconds=30, max_recoveries=5)
    assert claimed.workflow_id == "run-000"


@pytest.mark.postgres
def test_the_urls_own_options_are_kept_on_every_connection(
    postgres_database: PostgresDatabase, open_backend: OpenBackend
) -> None:
    """options= in the URL reach the server on the claim connections too, beside conveyor's own."""
    url = psycopg.conninfo.make_conninfo(postgres_database.url, options="-c statement_timeout=12345")
    backend = open_backend(url)
    backend.submit_run(new_run(), now=T0)  # opens the pools

    for pool in (backend._pool, backend._claim_pool):
        with pool.connection() as connection:
            assert connection.execute("SHOW statement_timeout").fetchone() == ("12345ms",)
            sort = connection.execute("SHOW enable_sort").fetchone()
            assert sort == (("off",) if pool is backend._claim_pool else ("on",))


@pytest.mark.postgres
def test_schema_has_the_partial_index_for_ready_runs(postgres_database: PostgresDatabase) -> None:
    """The ready-runs index covers only runs that are not final."""
    [(definition,)] = query(
        postgres_database.url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'conveyor_runs_ready'"
    )

    assert "WHERE (state = ANY (ARRAY['pending'::text, 'running'::text, 'compensating'::text]))" in definition


# --- durability ---------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_non_durable_start_turns_synchronous_commit_off_for_its_own_transaction_only(
    postgres_database: PostgresDatabase, open_backend: OpenBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """durable=False sets synchronous_commit off local to its one statement; the connection stays "on"."""
    backend = open_backend(postgres_database.url, min_connections=1, max_connections=1)
    statements: list[str] = []
    execute = psycopg.Cursor.execute

    def recording_execute(cursor: psycopg.Cursor[Any], statement: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(str(statement))
        return execute(cursor, statement, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", recording_execute)

    backend.start_run(new_run("durable"), owner="inline", now=T0)
    durable_statements, statements[:] = list(statements), []
    backend.start_run(new_run("relaxed"), owner="inline", now=T0, durable=False)

    relaxing = "set_config('synchronous_commit', 'off', true)"
    assert not any(relaxing in statement for statement in durable_statements)
    assert [relaxing in statement for statement in statements if statement] == [True]
    with backend._pool.connection() as connection:  # the only connection: the one that ran both
        assert connection.execute("SHOW synchronous_commit").fetchone() == ("on",)
    assert backend.load_run("relaxed") is not None


@pytest.mark.postgres
def test_a_dead_lettered_run_whose_error_is_not_yet_written_reads_with_the_derived_error(
    postgres_database: PostgresDatabase, open_backend: OpenBackend
) -> None:
    """The claim that sets a run aside and the write of its error are two statements: a reader in between
    (or after a crash in between) sees the same DeadLettered error the second statement writes."""
    backend = open_backend(postgres_database.url)
    backend.submit_run(new_run(), now=T0)
    [claimed] = backend.claim_runs(owner="w1", limit=1, lease_seconds=0.01, max_recoveries=0)
    backend.record_checkpoint(complete_a(epoch=claimed.epoch))
    time.sleep(0.05)  # the lease ends: w1 "died"
    assert backend.claim_runs(owner="w2", limit=1, lease_seconds=30, max_recoveries=0) == []
    [(written,)] = query(postgres_database.url, "SELECT error FROM conveyor_runs")
    query(postgres_database.url, "UPDATE conveyor_runs SET error = NULL RETURNING 1")

    record = backend.load_run("run-1")

    assert record is not None
    assert record.state is RunState.DEAD_LETTERED
    assert record.error is not None
    assert record.error.error_type == "DeadLettered"
    assert record.error.step_name == "b"  # the first step not completed
    assert record.error.to_dict() == Failure.from_dict(json.loads(written)).to_dict()


# --- errors and lifetime -----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_errors_name_the_database_and_what_failed_but_never_the_password(
    postgres_database: PostgresDatabase, open_backend: OpenBackend
) -> None:
    """A database that does not exist raises BackendError naming it; the URL's password appears nowhere."""
    url = psycopg.conninfo.make_conninfo(
        postgres_database.server, dbname="conveyor_test_missing", password="s3cret-pw"
    )
    backend = open_backend(url, connect_timeout_seconds=3)

    with pytest.raises(BackendError) as raised:
        backend.load_run("run-1")

    message = str(raised.value)
    assert "conveyor_test_missing" in message
    assert "apply schema migrations" in message
    assert isinstance(raised.value.__cause__, psycopg.Error)
    assert "s3cret-pw" not in chain_text(raised.value)
    assert "s3cret-pw" not in repr(backend)


def test_a_url_that_is_not_a_conninfo_raises_invalid_argument_without_echoing_it() -> None:
    """An unparseable URL raises InvalidArgumentError, and the URL (password and all) is not repeated."""
    with pytest.raises(InvalidArgumentError) as raised:
        PostgresBackend("host=x password=s3cret-pw dbname")

    assert "s3cret-pw" not in chain_text(raised.value)
    assert raised.value.__suppress_context__ is True


@pytest.mark.postgres
def test_close_releases_every_session_and_later_calls_raise_backend_error(
    postgres_database: PostgresDatabase,
) -> None:
    """After close() the backend's sessions go away and its calls raise BackendError."""
    backend = PostgresBackend(postgres_database.url, min_connections=2)
    backend.start_run(new_run(), owner="inline", now=T0)
    backend.wait_for_work(0.01)

    backend.close()

    wait_until(lambda: conveyor_sessions(postgres_database) == 0, "the closed backend's sessions are gone")
    with pytest.raises(BackendError):
        backend.load_run("run-1")
    assert backend.wait_for_work(0.01) is False


def test_a_missing_server_skips_the_test_but_fails_it_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CONVEYOR_TEST_POSTGRES_URL PostgreSQL tests skip, except under CI=true, where they fail."""
    monkeypatch.delenv(postgres_support.URL_VARIABLE, raising=False)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match=postgres_support.URL_VARIABLE):
        postgres_support.server_url()

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cannot run in CI"):
        postgres_support.server_url()


def test_constructing_without_psycopg_says_which_extra_to_install() -> None:
    """Where psycopg cannot be imported, `import conveyor` works and PostgresBackend names the extra."""
    script = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "sys.modules['psycopg_pool'] = None\n"
        "import conveyor\n"
        "from conveyor import ConfigurationError, PostgresBackend\n"
        "try:\n"
        "    PostgresBackend('postgresql://localhost/x')\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )

    assert done.returncode == 0, done.stderr
    assert 'pip install "conveyor[postgres]"' in done.stdout


@pytest.mark.postgres
def test_a_dead_idle_connection_is_found_without_poll_as_on_windows(
    postgres_database: PostgresDatabase, open_backend: OpenBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without select.poll (Windows), the check falls back to select() and still finds a dead connection."""
    monkeypatch.delattr("select.poll")
    backend = open_backend(postgres_database.url, min_connections=1, max_connections=2)
    backend.start_run(new_run(), owner="inline", now=T0)
    terminate_sessions(postgres_database.server, postgres_database.name)

    assert backend.load_run("run-1") is not None


def test_a_batch_of_checkpoints_chosen_as_a_deadlock_victim_is_written_on_its_next_try(
    postgres_database: PostgresDatabase, open_backend: OpenBackend
) -> None:
    """Another session holds run-2's row and then waits for run-1's, which the batch locked first: a real
    deadlock. The batch's session detects it first (the other waits 30 s before it looks), so the server
    aborts the batch; it wrote nothing, and it is tried again and written once the other session is gone."""
    backend = open_backend(postgres_database.url)
    backend.migrate()
    for workflow_id in ("run-1", "run-2"):
        backend.start_run(new_run(workflow_id), owner="inline", now=T0)
    with psycopg.connect(postgres_database.url) as other:
        other.execute("SET deadlock_timeout = '30s'")
        other.execute("SELECT 1 FROM conveyor_runs WHERE workflow_id = 'run-2' FOR UPDATE")
        with ThreadPoolExecutor(1) as pool:
            batch = pool.submit(backend.record_checkpoints, [complete_a("run-1"), complete_a("run-2")])
            deadline = time.monotonic() + DEADLINE_SECONDS
            while not query(  # the batch holds run-1 and waits for run-2
                postgres_database.url,
                "SELECT 1 FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'",
            ):
                assert time.monotonic() < deadline, "the batch never waited for run-2's row"
                time.sleep(0.01)
            # waits for run-1 until the batch is aborted as the deadlock's victim (after its 1 s timeout)
            other.execute("SELECT 1 FROM conveyor_runs WHERE workflow_id = 'run-1' FOR UPDATE")
            other.rollback()
            assert batch.result(timeout=DEADLINE_SECONDS) == set()
    for workflow_id in ("run-1", "run-2"):
        record = backend.load_run(workflow_id)
        assert record is not None
        assert record.steps["a"].state is StepState.COMPLETED
