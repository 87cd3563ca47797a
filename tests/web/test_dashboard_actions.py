"""The run page's actions, on real runs: retry, cancel, pause, unpause and signal, and their refusals."""

from __future__ import annotations

import html as html_text
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2
import pytest
from starlette.testclient import TestClient

from conveyor import Conveyor, RunState
from conveyor.web.dashboard import dashboard_app
from dashboard_support import (
    ADMIN_TOKEN,
    READ_TOKEN,
    Gateway,
    csrf_token,
    dashboard_tokens,
    drive_until_idle,
    make_app,
    sign_in,
)


@dataclass
class Scene:
    """A runtime with a failed order and a waiting approval, and a signed-in admin's client."""

    app: Conveyor
    gateway: Gateway
    client: TestClient

    def act(self, workflow_id: str, action: str, **fields: str) -> httpx2.Response:
        """Post ``action`` from the run's page, as its form does."""
        page = self.client.get(f"/runs/{workflow_id}")
        form = {"csrf_token": csrf_token(page.text), "action": action, **fields}
        return self.client.post(f"/runs/{workflow_id}", data=form, follow_redirects=False)


@pytest.fixture(params=["sqlite", "postgres"])
def scene(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Scene]:
    """``order-1`` compensated after its charge failed, ``approval-1`` waiting for its signal: on SQLite,
    then on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/actions.db"
    else:
        url = request.getfixturevalue("postgres_database").url
    app, gateway = make_app(url)
    app.run("checkout", {"id": 1}, workflow_id="order-1")
    app.start("approval", {"request": 1}, workflow_id="approval-1")
    drive_until_idle(app)
    assert app.status("approval-1").is_waiting()
    client = TestClient(dashboard_app(app, dashboard_tokens()))
    sign_in(client, ADMIN_TOKEN)
    yield Scene(app, gateway, client)
    app.close()


def test_retry_reopens_a_failed_run_and_leaves_it_to_a_worker(scene: Scene) -> None:
    """A retry from the page reopens the run and returns at once (the request drives nothing); a worker
    then runs the failed step again and the run completes."""
    scene.gateway.broken = False
    response = scene.act("order-1", "retry", reason="gateway fixed")
    assert response.status_code == 303
    assert response.headers["location"] == "/runs/order-1?done=retry"
    reopened = scene.app.status("order-1")
    assert reopened.state is RunState.RUNNING  # reopened, unowned: claimable by a worker
    assert reopened.step("charge").state.value == "pending"
    assert scene.gateway.charges == []
    page = scene.client.get("/runs/order-1?done=retry").text
    assert "Retry recorded" in page
    drive_until_idle(scene.app)
    status = scene.app.status("order-1")
    assert status.output() == "order 1 confirmed"
    assert [(done.action, done.by, done.reason) for done in status.operator_actions] == [
        ("retry", "dashboard", "gateway fixed")
    ]


def test_retry_from_a_named_step_runs_it_and_what_follows_again(scene: Scene) -> None:
    """Retrying from ``reserve`` runs the reservation again too."""
    scene.gateway.broken = False
    assert scene.act("order-1", "retry", from_step="reserve").status_code == 303
    drive_until_idle(scene.app)
    assert scene.app.status("order-1").step("reserve").attempts == 1
    assert "step.reset" in scene.client.get("/runs/order-1").text


def test_cancel_stops_a_waiting_run(scene: Scene) -> None:
    """Cancelling a run that waits for a signal stores the request and undoes nothing in the request; a
    worker then ends it cancelled, with the reason given."""
    response = scene.act("approval-1", "cancel", reason="customer changed their mind")
    assert response.status_code == 303
    assert scene.app.status("approval-1").state is RunState.RUNNING  # left to a worker
    assert "run.cancel_requested" in scene.client.get("/runs/approval-1").text
    drive_until_idle(scene.app)
    status = scene.app.status("approval-1")
    assert status.state is RunState.CANCELLED
    assert status.cancel_reason == "customer changed their mind"
    assert status.cancelled_by == "dashboard"
    page = scene.client.get("/runs/approval-1").text
    assert "Cancel recorded" not in page  # the notice shows only right after the action
    assert "customer changed their mind" in page


def test_pause_and_unpause_hold_and_free_a_run(scene: Scene) -> None:
    """Pause shows the run paused with an unpause button; unpause lifts it."""
    assert scene.act("approval-1", "pause", reason="checking stock").status_code == 303
    assert scene.app.status("approval-1").paused
    page = scene.client.get("/runs/approval-1").text
    assert '<span class="badge paused">paused</span>' in page
    assert 'value="unpause"' in page
    assert 'value="pause"' not in page
    assert scene.act("approval-1", "unpause").status_code == 303
    assert not scene.app.status("approval-1").paused


def test_a_signal_with_a_json_payload_wakes_the_waiting_run(scene: Scene) -> None:
    """The signal form sends the named signal with its JSON payload; a worker finishes the run with it."""
    response = scene.act("approval-1", "signal", signal="approved", payload='{"by": "ann"}')
    assert response.status_code == 303
    drive_until_idle(scene.app)
    assert scene.app.status("approval-1").output() == "shipped after {'by': 'ann'}"


def test_a_signal_whose_payload_is_not_json_is_refused_and_sends_nothing(scene: Scene) -> None:
    """A payload that is not JSON is a 400 saying so, and no signal reaches the run."""
    response = scene.act("approval-1", "signal", signal="approved", payload="{by: ann")
    assert response.status_code == 400
    assert "is not JSON" in response.text
    assert "signal.received" not in scene.client.get("/runs/approval-1").text


def test_an_action_on_an_ended_run_is_refused_with_the_runtimes_reason(scene: Scene) -> None:
    """Cancelling a run that has ended is a 409 that shows why, on the run's page."""
    response = scene.act("order-1", "cancel")
    assert response.status_code == 409
    text = html_text.unescape(response.text)
    assert 'role="alert"' in text
    assert "order-1" in text
    assert scene.app.status("order-1").state is RunState.COMPENSATED


def test_an_unknown_action_is_refused(scene: Scene) -> None:
    """An action the page does not offer is a 400."""
    assert scene.act("approval-1", "delete").status_code == 400
    assert scene.app.status("approval-1").state is RunState.RUNNING


def test_an_action_on_a_run_that_does_not_exist_is_404(scene: Scene) -> None:
    """Acting on an unknown run is a 404 page naming it."""
    page = scene.client.get("/runs/order-1")
    response = scene.client.post(
        "/runs/no-such-run", data={"csrf_token": csrf_token(page.text), "action": "pause"}
    )
    assert response.status_code == 404
    assert "no-such-run" in response.text


def test_a_script_with_an_admin_bearer_token_acts_without_a_session(scene: Scene) -> None:
    """Scripts send the admin token as a bearer header; they need no CSRF token."""
    response = TestClient(scene.client.app).post(
        "/runs/approval-1",
        data={"action": "cancel", "reason": "by script"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    drive_until_idle(scene.app)
    assert scene.app.status("approval-1").state is RunState.CANCELLED


def start_form(scene: Scene, **fields: str) -> dict[str, str]:
    """The definitions page's start form for ``checkout`` v1, with ``fields`` filled in."""
    page = scene.client.get("/definitions")
    return {
        "csrf_token": csrf_token(page.text),
        "namespace": "default",
        "name": "checkout",
        "version": "1",
    } | (fields)


def test_start_records_a_run_for_a_worker_and_opens_its_page(scene: Scene) -> None:
    """The start form records a run with the input, run id and correlation id given, and opens its page;
    a worker then runs it."""
    scene.gateway.broken = False
    form = start_form(scene, input='{"id": 5}', workflow_id="order-5", correlation_id="basket-9")
    response = scene.client.post("/start", data=form, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/runs/order-5?done=start"
    status = scene.app.status("order-5")
    assert status.state is RunState.PENDING
    assert status.correlation_id == "basket-9"
    assert "Run recorded" in scene.client.get(response.headers["location"]).text
    drive_until_idle(scene.app)
    assert scene.app.status("order-5").output() == "order 5 confirmed"


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"input": "{id: 5}"}, "the input is not JSON"),
        ({"input": "{}", "name": "no_such_flow"}, "no_such_flow"),
        ({"input": "{}", "workflow_id": "approval-1"}, "approval-1"),
    ],
)
def test_a_start_that_cannot_be_done_is_refused_and_records_nothing(
    scene: Scene, fields: dict[str, str], says: str
) -> None:
    """Input that is not JSON, a workflow that is not registered, or the id of another workflow's run: a
    400 on the definitions page that says why, and no run recorded."""
    before = [run.workflow_id for run in scene.app.runs()]
    response = scene.client.post("/start", data=start_form(scene, **fields))
    assert response.status_code == 400
    assert says in html_text.unescape(response.text)
    assert "<h1>Definitions</h1>" in response.text
    assert [run.workflow_id for run in scene.app.runs()] == before


def test_a_read_token_cannot_start_a_run(scene: Scene) -> None:
    """A read token's definitions page has no start form, and a start it posts is 403."""
    client = TestClient(scene.client.app)
    sign_in(client, READ_TOKEN)
    page = client.get("/definitions")
    assert "Start a run" not in page.text
    form = {"csrf_token": csrf_token(page.text), "name": "checkout", "input": "{}"}
    assert client.post("/start", data=form).status_code == 403
    assert len(scene.app.runs()) == 2
