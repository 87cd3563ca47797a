"""conveyor's own server beside the order API: mounted at /conveyor for the admin token (the same token
scheme), and served over the demo's database by ``demo --serve`` until interrupted."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from examples.orders.access import ApiAccess
from examples.orders.api import create_app
from examples.orders.system import OrderSystem
from examples.orders.workflows import shop_runtime
from fastapi.testclient import TestClient

from conveyor import SqliteBackend
from conveyor.web.tokens import ApiTokens

ADMIN = "admin-token-0123456789"
ADA = "ada-token-0123456789"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def api(shop: OrderSystem, backend: SqliteBackend) -> Iterator[TestClient]:
    access = ApiAccess({ADA: "ada"}, admin_tokens=[ADMIN])
    with shop_runtime(backend, system=shop) as runtime:
        app = create_app(runtime, access, operations=ApiTokens(admin=[ADMIN]))
        with TestClient(app) as client:
            yield client


def test_the_admin_token_opens_conveyors_server_at_conveyor_and_a_customers_does_not(api: TestClient) -> None:
    placed = api.post(
        "/orders",
        json={
            "customer_email": "ada@example.com",
            "card_number": "4242 4242 4242 4242",
            "shipping_address": "1 Tea St",
            "items": [{"sku": "mug", "quantity": 1}],
        },
        headers={"Authorization": f"Bearer {ADA}"},
    )
    assert placed.status_code == 202
    runs = api.get("/conveyor/api/runs", headers={"Authorization": f"Bearer {ADMIN}"})
    assert runs.status_code == 200
    assert [run["workflow_id"] for run in runs.json()["runs"]] == [placed.json()["workflow_id"]]
    assert api.get("/conveyor/api/runs", headers={"Authorization": f"Bearer {ADA}"}).status_code == 401
    assert api.get("/conveyor/api/runs").status_code == 401
    assert api.get("/conveyor/healthz").status_code == 200


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.timeout(240)
def test_demo_serve_keeps_the_dashboard_up_over_the_demos_runs_until_interrupted(tmp_path: Path) -> None:
    port, url = _free_port(), f"sqlite:///{tmp_path / 'demo.db'}"
    command = [sys.executable, "-m", "examples.orders", "demo", "--orders", "12", "--db", url]
    command += ["--serve", "--port", str(port)]
    environment = {**os.environ, "CONVEYOR_ADMIN_TOKENS": ADMIN}
    demo = subprocess.Popen(
        command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 200
        while True:
            assert demo.poll() is None, demo.stdout.read().decode() if demo.stdout else ""
            assert time.monotonic() < deadline, "the demo's server never answered"
            try:
                if httpx2.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                time.sleep(0.2)
        listed = httpx2.get(f"{base}/api/runs?limit=100", headers={"Authorization": f"Bearer {ADMIN}"})
        assert listed.status_code == 200
        states = {run["state"] for run in listed.json()["runs"]}
        assert "completed" in states
        assert httpx2.get(f"{base}/api/runs").status_code == 401
    finally:
        demo.send_signal(signal.SIGINT)
        output = demo.communicate(timeout=60)[0].decode()
    assert demo.returncode == 0, output
    assert f"http://127.0.0.1:{port}/" in output
    assert ADMIN not in output  # a token given by the environment is never printed
