"""The runtime object: registering, running, reading and retrying runs, resources, loading by path."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor import (
    Conveyor,
    DefinitionError,
    Flow,
    InMemoryBackend,
    InvalidArgumentError,
    RetryPolicy,
    RunNotFoundError,
    RunNotRetryableError,
    Saga,
    SqliteBackend,
    StepContext,
    UnknownResourceError,
    UnknownWorkflowError,
    get_workflow_status,
    resource,
    run_durable_workflow,
    run_durable_workflow_async,
    step,
    task,
)
from conveyor.errors import ConfigurationError
from conveyor.runtime.ownership import PROCESS, owner_is_dead


@task
def add_one(value: int) -> int:
    return value + 1


@task
def double(value: int) -> int:
    return value * 2


MATH = Flow("math").then(add_one).then(double).build()


class Greeting(Saga):
    @step
    def greet(self, name: str) -> str:
        return f"hello {name}"


def test_a_runtime_runs_a_workflow_given_as_object_by_name_or_as_class() -> None:
    """run() takes a built workflow, a registered name, or a workflow class, and returns the status."""
    app = Conveyor(InMemoryBackend(), workflows=[MATH, Greeting])
    assert app.run(MATH, 4, workflow_id="m-1").output() == 10
    assert app.run("math", 1, workflow_id="m-2").output() == 4
    assert app.run(Greeting, {"name": "ada"}).output() == {"greet": "hello ada"}
    assert app.status("m-1").output() == 10
    assert app.status("m-1").is_completed()


def test_running_an_unregistered_name_names_what_is_registered() -> None:
    """An unknown workflow name is a clear error listing the registered ones; nothing is stored."""
    backend = InMemoryBackend()
    app = Conveyor(backend, workflows=[MATH])
    with pytest.raises(UnknownWorkflowError, match=r"no workflow 'maths'.*default/math \(1\)"):
        app.run("maths", 1, workflow_id="x")
    assert backend.load_run("x") is None


def test_register_refuses_what_is_not_a_workflow() -> None:
    """register() names what it was given when it is neither a workflow nor a workflow class."""
    with pytest.raises(DefinitionError, match="only a built workflow or a workflow class can be registered"):
        Conveyor(InMemoryBackend()).register(add_one)


def test_register_is_a_class_decorator_that_returns_the_class() -> None:
    """@app.register above a workflow class registers it under its name and leaves the class as it was."""
    app = Conveyor(InMemoryBackend())

    @app.register
    class Shipping(Saga):
        @step
        def ship(self, order_id: str) -> str:
            return f"shipped {order_id}"

    assert Shipping.__name__ == "Shipping"
    assert app.workflow("Shipping") is Shipping.workflow
    assert app.run("Shipping", {"order_id": "o1"}).output() == {"ship": "shipped o1"}


def test_an_unknown_run_is_run_not_found() -> None:
    """status() of an id the backend does not have raises RunNotFoundError naming it."""
    with pytest.raises(RunNotFoundError, match="no run 'ghost'"):
        Conveyor(InMemoryBackend()).status("ghost")


def test_retry_finds_the_registered_workflow_the_run_recorded() -> None:
    """retry(id) reruns a failed run with the registered workflow; completed steps are not run again."""
    attempts: list[str] = []
    broken = {"on": True}

    @task
    def first(value: int) -> int:
        attempts.append("first")
        return value

    @task
    def second(value: int) -> int:
        attempts.append("second")
        if broken["on"]:
            raise RuntimeError("down")
        return value * 10

    app = Conveyor(InMemoryBackend(), workflows=[Flow("flaky").then(first).then(second).build()])
    assert app.run("flaky", 3, workflow_id="f-1").is_failed()
    broken["on"] = False
    status = app.retry("f-1")
    assert status.is_completed()
    assert status.output() == 30
    assert attempts == ["first", "second", "second"]
    with pytest.raises(RunNotRetryableError, match="completed"):
        app.retry("f-1")


def test_if_running_takes_only_wait_or_fail() -> None:
    """A misspelt if_running is refused before anything is stored."""
    backend = InMemoryBackend()
    with pytest.raises(InvalidArgumentError, match="if_running must be 'wait' or 'fail'"):
        Conveyor(backend).run(MATH, 1, workflow_id="m", if_running="skip")  # type: ignore[arg-type]
    assert backend.load_run("m") is None


def test_the_async_seed_spelling_takes_if_running_too() -> None:
    """run_durable_workflow_async forwards if_running: a misspelt one is a clear error, not a TypeError."""
    backend = InMemoryBackend()
    with pytest.raises(InvalidArgumentError, match="if_running must be 'wait' or 'fail'"):
        asyncio.run(run_durable_workflow_async(MATH, "m", 1, backend, if_running="skip"))  # type: ignore[arg-type]
    assert backend.load_run("m") is None


def test_async_twins_do_what_their_sync_methods_do() -> None:
    """run_async, status_async and wait_async give the same statuses as run, status and wait."""
    app = Conveyor(InMemoryBackend(), workflows=[MATH])

    async def main() -> tuple[Any, Any, Any]:
        ran = await app.run_async("math", 2, workflow_id="a-1")
        read = await app.status_async("a-1")
        waited = await app.wait_async("a-1", 1.0)
        return ran.output(), read.output(), waited.output()

    assert asyncio.run(main()) == (6, 6, 6)


def test_the_default_backend_is_one_for_every_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Conveyor() and the module functions given no backend all use $CONVEYOR_BACKEND."""
    url = f"sqlite:///{tmp_path / 'default.db'}"
    monkeypatch.setenv("CONVEYOR_BACKEND", url)
    with Conveyor() as app:
        app.run(MATH, 1, workflow_id="d-1")
    with SqliteBackend(tmp_path / "default.db") as backend:
        assert get_workflow_status("d-1", backend).output() == 4


def test_a_url_backend_is_opened_on_first_use_and_closed_with_the_runtime(tmp_path: Path) -> None:
    """A runtime given a URL opens the backend only when needed, and close() closes it."""
    path = tmp_path / "lazy.db"
    app = Conveyor(f"sqlite:///{path}")
    assert not path.exists()
    app.run(MATH, 1, workflow_id="l-1")
    assert path.exists()
    app.close()
    with SqliteBackend(path) as backend:
        assert get_workflow_status("l-1", backend).is_completed()


def test_using_another_backend_keeps_the_workflows_and_resources(tmp_path: Path) -> None:
    """using(url) gives a runtime with the same registry and resources over another backend."""
    app = Conveyor(InMemoryBackend(), workflows=[MATH], resources={"answer": 42})
    other = app.using(InMemoryBackend())
    assert other.workflow("math") is MATH
    assert other.resources["answer"] == 42
    assert other.run("math", 1, workflow_id="u-1").output() == 4
    with pytest.raises(RunNotFoundError):
        app.status("u-1")


class Gateway:
    """A resource that counts how often it was built and closed."""

    built = 0
    closed = 0

    def __init__(self) -> None:
        Gateway.built += 1

    def close(self) -> None:
        Gateway.closed += 1


def test_a_resource_factory_runs_once_on_first_use_and_is_closed_with_the_runtime() -> None:
    """@app.resource builds its value once, when first asked for; close() closes it; values are left alone."""
    Gateway.built = Gateway.closed = 0
    handed_in = Gateway()
    app = Conveyor(InMemoryBackend(), resources={"given": handed_in})
    app.resource("gateway")(Gateway)
    assert Gateway.built == 1  # only the one handed in
    first = app.resources["gateway"]
    assert app.resources["gateway"] is first
    assert Gateway.built == 2
    app.close()
    assert Gateway.closed == 1  # the built one, not the one handed in


def test_an_unknown_resource_names_the_known_ones() -> None:
    """Asking for a resource the runtime lacks is UnknownResourceError listing what it has."""
    app = Conveyor(InMemoryBackend(), resources={"db": object()})
    with pytest.raises(UnknownResourceError, match="no resource named 'gateway'; this runtime has: db"):
        app.resources["gateway"]


def test_a_resource_name_is_registered_once() -> None:
    """Two resources of one name are refused."""
    app = Conveyor(InMemoryBackend(), resources={"db": 1})
    with pytest.raises(InvalidArgumentError, match="already registered"):
        app.resources.add_factory("db", object)


def test_from_path_loads_the_runtime_a_module_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Conveyor.from_path("module:attr") imports the module; "module" alone means its `app`."""
    (tmp_path / "shop_app.py").write_text(
        textwrap.dedent(
            """
            from conveyor import Conveyor, InMemoryBackend
            app = Conveyor(InMemoryBackend())
            other = Conveyor(InMemoryBackend())
            not_an_app = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import shop_app

    assert Conveyor.from_path("shop_app") is shop_app.app
    assert Conveyor.from_path("shop_app:other") is shop_app.other
    with pytest.raises(
        ConfigurationError, match=r"shop_app:not_an_app must be a conveyor\.Conveyor, but is int"
    ):
        Conveyor.from_path("shop_app:not_an_app")
    with pytest.raises(ConfigurationError, match="cannot import 'no_such_module'"):
        Conveyor.from_path("no_such_module:app")


def test_a_runtimes_worker_runs_its_registered_workflows() -> None:
    """app.worker() drives runs started with app.start() until none is left."""
    app = Conveyor(InMemoryBackend(), workflows=[MATH])
    handles = [app.start("math", n, workflow_id=f"w-{n}") for n in range(5)]
    app.worker(concurrency=2).run(until_idle=True)
    assert [handle.status().output() for handle in handles] == [2, 4, 6, 8, 10]


def test_a_worker_needs_registered_workflows() -> None:
    """A runtime with nothing registered cannot make a worker, and says why."""
    with pytest.raises(ConfigurationError, match="no workflows registered"):
        Conveyor(InMemoryBackend()).worker()


def test_run_durable_workflow_is_the_runtime_over_its_backend() -> None:
    """The module function and the runtime over the same backend see the same runs."""
    backend = InMemoryBackend()
    run_durable_workflow(MATH, "s-1", 5, backend)
    assert Conveyor(backend).status("s-1").output() == 12


# -- who is alive -----------------------------------------------------------------------------------


def test_this_process_and_unknown_owners_are_never_dead() -> None:
    """Only a definite answer takes a run over: this process, foreign forms and other machines are alive."""
    assert not owner_is_dead(None)
    assert not owner_is_dead(PROCESS.new_owner())
    assert not owner_is_dead("worker-7")
    assert not owner_is_dead(f"another-host#{PROCESS.machine.split('#')[1]}:1:abc/1")


@pytest.mark.skipif(not os.path.exists("/proc/self/ns/pid"), reason="needs Linux PID namespaces")
def test_an_owner_whose_process_ended_is_dead_even_before_it_is_reaped() -> None:
    """A process of this machine that exited, or was killed and not yet reaped, is dead."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = f"{PROCESS.machine}:{child.pid}:feed/1"
    try:
        assert not owner_is_dead(owner)
        child.kill()
        deadline = 50
        while not owner_is_dead(owner) and deadline:  # a zombie until waited for
            deadline -= 1
            subprocess.run([sys.executable, "-c", "pass"], check=True)
        assert owner_is_dead(owner)
    finally:  # reaped whatever happened above, so no test leaves a process behind
        child.kill()
        child.wait()
    assert owner_is_dead(owner)


def test_steps_get_resources_as_declared_parameters_and_through_their_context() -> None:
    """A parameter declared = resource(name) and context.resource(name) both give the runtime's resource."""

    @task
    def charge(order: dict, gateway: Any = resource("gateway")) -> dict:
        return {**order, "charged_by": gateway["name"]}

    @task
    def notify(order: dict, ctx: StepContext) -> str:
        return f"{order['charged_by']} then {ctx.resource('mailer')}"

    flow = Flow("resourced").then(charge).then(notify).build()
    app = Conveyor(InMemoryBackend(), workflows=[flow], resources={"gateway": {"name": "gw"}})
    app.resources.add_factory("mailer", lambda: "mailer-1")
    assert app.run("resourced", {"id": 1}).output() == "gw then mailer-1"
    handle = app.start("resourced", {"id": 2})
    app.worker(concurrency=1).run(until_idle=True)
    assert handle.status().output() == "gw then mailer-1"


def test_a_missing_resource_fails_the_step_at_once_naming_what_there_is() -> None:
    """Asking for a resource the runtime lacks is a non-retryable step failure that names the known ones."""
    tries: list[int] = []

    @task(retries=RetryPolicy(max_retries=5))
    def charge(order: dict, gateway: Any = resource("gateway")) -> dict:
        tries.append(1)
        return order

    app = Conveyor(InMemoryBackend(), resources={"db": 1})
    status = app.run(Flow("missing").then(charge).build(), {})
    assert status.is_failed()
    assert tries == []
    failure = status.error()
    assert failure is not None
    assert failure.error_type == "UnknownResourceError"
    assert failure.attempts == 1
    assert "no resource named 'gateway'; this runtime has: db" in failure.message


def _heartbeats(owner: str = "") -> list[threading.Thread]:
    """The heartbeat threads alive now (of ``owner`` only, when given)."""
    name = f"conveyor-heartbeat-{owner}"
    return [
        thread
        for thread in threading.enumerate()
        if (thread.name == name if owner else thread.name.startswith(name))
    ]


def test_a_backend_the_seed_functions_used_is_freed_once_its_caller_drops_it() -> None:
    """The runtime kept for a backend (and its heartbeat thread) must not keep the backend alive."""
    import gc
    import weakref

    flow = Flow("freed").then(double).build()
    dropped = []
    for number in range(5):
        backend = InMemoryBackend()
        assert run_durable_workflow(flow, f"run-{number}", 2, backend).output() == 4
        dropped.append(weakref.ref(backend))
        backend.close()
        del backend
    gc.collect()
    assert [ref() for ref in dropped[:-1]] == [None] * 4  # the last one lookup may keep, no other


def test_an_idle_runtime_keeps_no_heartbeat_thread() -> None:
    flow = Flow("idle").then(double).build()
    app = Conveyor(InMemoryBackend(), workflows=[flow], lease_seconds=0.15)
    assert app.run("idle", 2).output() == 4
    deadline = time.monotonic() + 2
    while _heartbeats(app.owner) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _heartbeats(app.owner) == []  # (other tests' runtimes may keep theirs a while)
    assert app.run("idle", 3).output() == 6  # and a later run still runs (a new thread holds it)
    app.close()
