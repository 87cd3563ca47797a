"""The API mounted in another app at a prefix, the server that holds it with the dashboard, and
``conveyor serve`` in a real process on a free port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from web_support import ADMIN, ADMIN_TOKEN, READ, READ_TOKEN, WORKFLOWS

from conveyor import Conveyor, InMemoryBackend
from conveyor.web import ApiTokens, api_app, create_server

TOKENS = ApiTokens(admin=[ADMIN_TOKEN], read=[READ_TOKEN])


@pytest.fixture
def app() -> Iterator[Conveyor]:
    with Conveyor(InMemoryBackend(), workflows=WORKFLOWS) as runtime:
        yield runtime


def test_the_api_mounted_at_a_prefix_keeps_its_tokens_errors_and_schema(app: Conveyor) -> None:
    """Mounted at /tasker (as seed 002 mounts it): its routes, its 401s and problems, its OpenAPI; the
    host app's own routes are its own."""
    host = FastAPI()

    @host.get("/hello")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    host.mount("/tasker", api_app(app, TOKENS))
    client = TestClient(host)
    assert client.get("/hello").json() == {"hello": "world"}
    assert client.get("/tasker/healthz").json()["status"] == "ok"
    assert client.get("/tasker/runs").status_code == 401
    assert client.get("/tasker/runs", headers=READ).json() == {"runs": [], "next_page": None}
    missing = client.get("/tasker/runs/nope", headers=READ)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    started = client.post(
        "/tasker/runs",
        json={"workflow": "checkout", "input": {"order_id": "o-1", "quantity": 1}},
        headers=ADMIN,
    )
    assert started.status_code == 201
    assert client.get(f"/tasker/{started.headers['location']}", headers=READ).status_code == 200
    schema = client.get("/tasker/openapi.json", headers=READ).json()
    assert {"/runs", "/runs/{workflow_id}", "/workflows", "/analytics/bottlenecks", "/healthz"} <= set(
        schema["paths"]
    )
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert "security" not in schema["paths"]["/healthz"]["get"]
    assert schema["paths"]["/runs"]["get"]["security"] == [{"bearer": []}]
    assert client.get("/tasker/openapi.json").status_code == 401


def test_the_server_holds_the_api_at_api_and_healthz_at_its_top(app: Conveyor) -> None:
    """create_server: /healthz without a token, the API at /api with its tokens."""
    client = TestClient(create_server(app, TOKENS, dashboard=False))
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/api/healthz").status_code == 200
    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/workflows", headers=READ).status_code == 200
    assert client.get("/").status_code == 404


def test_the_server_mounts_the_dashboard_at_its_root_when_there_is_one(
    app: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a conveyor.web.dashboard module, its dashboard_app(app, tokens) answers at /; dashboard=False
    leaves it out."""
    given: list[Any] = []

    def dashboard_app(runtime: Conveyor, tokens: ApiTokens) -> FastAPI:
        given.append((runtime, tokens))
        board = FastAPI()

        @board.get("/")
        def home() -> dict[str, str]:
            return {"page": "runs"}

        return board

    module = types.ModuleType("conveyor.web.dashboard")
    module.dashboard_app = dashboard_app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "conveyor.web.dashboard", module)
    client = TestClient(create_server(app, TOKENS))
    assert client.get("/").json() == {"page": "runs"}
    assert given == [(app, TOKENS)]
    assert client.get("/api/runs", headers=READ).status_code == 200
    assert TestClient(create_server(app, TOKENS, dashboard=False)).get("/").status_code == 404


# -- conveyor serve ---------------------------------------------------------------------------------------

APP_MODULE = """
    from conveyor import Conveyor, Flow

    def double(x: int) -> int:
        return x * 2

    app = Conveyor(workflows=[Flow("double").then(double).build()])
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(tmp_path: Path, backend: str, *arguments: str, tokens: bool = True) -> subprocess.Popen[str]:
    (tmp_path / "served_app.py").write_text(textwrap.dedent(APP_MODULE))
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONVEYOR_")}
    if tokens:
        env.update(CONVEYOR_ADMIN_TOKENS=ADMIN_TOKEN, CONVEYOR_READ_TOKENS=READ_TOKEN)
    command = [sys.executable, "-m", "conveyor.cli", "serve", "--app", "served_app:app", "--backend", backend]
    return subprocess.Popen(
        [*command, *arguments],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_healthy(process: subprocess.Popen[str], base: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if httpx2.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("conveyor serve did not answer /healthz in 20 s")


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'served.db'}"
    return str(request.getfixturevalue("postgres_database").url)


def test_conveyor_serve_answers_on_its_port_and_its_worker_drives_the_runs_it_starts(
    tmp_path: Path, backend_url: str
) -> None:
    """`conveyor serve --worker 2` in a real process: health, tokens, a start driven to its end by the
    worker in the same process; SIGTERM stops it cleanly."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = serve(tmp_path, backend_url, "--port", str(port), "--worker", "2")
    try:
        wait_until_healthy(process, base)
        assert httpx2.get(f"{base}/api/runs", timeout=5).status_code == 401
        started = httpx2.post(
            f"{base}/api/runs", json={"workflow": "double", "input": 21}, headers=ADMIN, timeout=5
        )
        assert started.status_code == 201, started.text
        run_url = f"{base}/api/runs/{started.json()['workflow_id']}"
        deadline = time.monotonic() + 20
        while httpx2.get(run_url, headers=READ, timeout=5).json()["state"] != "completed":
            assert time.monotonic() < deadline, "the in-process worker did not drive the run"
            time.sleep(0.1)
        assert httpx2.get(run_url, headers=READ, timeout=5).json()["output"] == 42
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"the API at http://127.0.0.1:{port}/api" in err


def test_conveyor_serve_without_a_worker_leaves_runs_for_one(tmp_path: Path) -> None:
    """Off by default: a run started over HTTP stays pending until a worker takes it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = serve(tmp_path, f"sqlite:///{tmp_path / 'served.db'}", "--port", str(port), "--json")
    try:
        wait_until_healthy(process, base)
        started = httpx2.post(
            f"{base}/api/runs", json={"workflow": "double", "input": 1}, headers=ADMIN, timeout=5
        )
        time.sleep(0.5)
        run = httpx2.get(f"{base}/api/runs/{started.json()['workflow_id']}", headers=READ, timeout=5).json()
        assert run["state"] == "pending"
    finally:
        process.send_signal(signal.SIGTERM)
        out, _err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert json.loads(out) == {"dashboard": f"{base}/", "api": f"{base}/api", "health": f"{base}/healthz"}


def test_conveyor_serve_without_tokens_says_which_variable_to_set_in_one_line(tmp_path: Path) -> None:
    """No $CONVEYOR_ADMIN_TOKENS: one line naming it, a non-zero exit, nothing listening."""
    arguments = ("--port", str(free_port()), "--json")
    process = serve(tmp_path, f"sqlite:///{tmp_path / 'served.db'}", *arguments, tokens=False)
    out, err = process.communicate(timeout=30)
    assert process.returncode != 0
    assert out == ""  # nothing said of where it would have served
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("conveyor: ")
    assert "CONVEYOR_ADMIN_TOKENS" in lines[0]
