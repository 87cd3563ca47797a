"""The dashboard's reading pages, on real runs in SQLite and PostgreSQL: the runs list and its filters, a
run's graph, timeline and history, the definitions and the analytics."""

from __future__ import annotations

import html as html_text
import re
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from conveyor import Conveyor, EncodingError, Flow, task
from conveyor.definition.resources import resource
from conveyor.web.dashboard import dashboard_app, pages
from dashboard_support import (
    ADMIN_TOKEN,
    READ_TOKEN,
    confirm,
    dashboard_tokens,
    make_app,
    record_runs,
    reserve,
    running_worker,
    sign_in,
    wait_until,
)


@pytest.fixture(scope="module")
def sqlite_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Conveyor]:
    """A runtime on a SQLite file holding the runs of ``record_runs``."""
    runtime, _ = make_app(f"sqlite:///{tmp_path_factory.mktemp('dashboard-pages') / 'runs.db'}")
    record_runs(runtime)
    yield runtime
    runtime.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_app(request: pytest.FixtureRequest) -> Iterator[Conveyor]:
    """The runs of ``record_runs`` on SQLite, then on PostgreSQL."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_app")
        return
    database = request.getfixturevalue("postgres_database")
    runtime, _ = make_app(database.url)
    record_runs(runtime)
    yield runtime
    runtime.close()


def client_of(app: Conveyor, token: str = ADMIN_TOKEN) -> TestClient:
    """A signed-in client of a dashboard over ``app``."""
    client = TestClient(dashboard_app(app, dashboard_tokens()))
    sign_in(client, token)
    return client


def run_ids(page: str) -> list[str]:
    """The run ids a runs page lists, in order."""
    return re.findall(r'<td><a href="/runs/[^"]+">([^<]+)</a></td>', page)


def test_the_runs_list_shows_every_run_newest_first_with_its_state(any_app: Conveyor) -> None:
    """The list holds each run, newest first, with its workflow, state, correlation id and error."""
    page = client_of(any_app).get("/runs").text
    assert run_ids(page) == ["export-1", "approval-1", "order-1"]
    assert '<span class="badge state-compensated">compensated</span>' in page
    assert "payment gateway timed out" in page
    assert "basket-7" in page


def test_the_runs_list_filters_by_workflow_and_state(any_app: Conveyor) -> None:
    """The workflow and state filters keep only the runs that match both."""
    client = client_of(any_app)
    assert run_ids(client.get("/runs", params={"workflow": "checkout"}).text) == ["order-1"]
    assert run_ids(client.get("/runs", params={"state": "running"}).text) == ["approval-1"]
    assert run_ids(client.get("/runs", params={"state": "completed", "workflow": "approval"}).text) == []
    page = client.get("/runs", params={"state": "completed"}).text
    assert run_ids(page) == ["export-1"]
    assert '<option value="completed" selected>' in page


def test_an_unknown_state_is_a_clear_error(sqlite_app: Conveyor) -> None:
    """A state that does not exist is a 400 that names the states there are."""
    response = client_of(sqlite_app).get("/runs", params={"state": "finished"})
    assert response.status_code == 400
    assert "is not a run state" in html_text.unescape(response.text)


def test_searching_a_run_id_opens_its_page(any_app: Conveyor) -> None:
    """A search for a run's id goes straight to its page."""
    response = client_of(any_app).get("/runs", params={"q": "approval-1"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/runs/approval-1"


def test_searching_a_correlation_id_lists_its_runs(any_app: Conveyor) -> None:
    """A search for a correlation id lists the runs that carry it (within the filters)."""
    client = client_of(any_app)
    page = client.get("/runs", params={"q": "basket-7"}).text
    assert run_ids(page) == ["approval-1", "order-1"]
    assert "runs with that correlation id" in page
    assert run_ids(client.get("/runs", params={"q": "basket-7", "workflow": "checkout"}).text) == ["order-1"]
    assert run_ids(client.get("/runs", params={"q": "no-such-thing"}).text) == []


def test_the_runs_list_pages_with_the_cursor(sqlite_app: Conveyor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages follow one another by the cursor the runtime hands out, with no run twice or left out."""
    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    client = client_of(sqlite_app)
    first = client.get("/runs").text
    assert run_ids(first) == ["export-1", "approval-1"]
    older = re.search(r'<a rel="next" href="([^"]+)">', first)
    assert older is not None
    second = client.get(html_text.unescape(older.group(1))).text
    assert run_ids(second) == ["order-1"]
    assert 'rel="next"' not in second
    assert "data-refresh" not in second  # a page of older runs does not refresh itself
    assert 'data-refresh="3.0"' in first


def test_a_runs_page_shows_its_step_graph_from_the_definition(any_app: Conveyor) -> None:
    """The run's page draws each step of its workflow, its dependencies as arrows, coloured by state."""
    page = client_of(any_app).get("/runs/order-1").text
    assert '<g class="node state-compensated">' in page
    assert '<g class="node state-failed">' in page
    assert '<g class="node state-pending">' in page
    assert "<title>charge depends on reserve</title>" in page
    assert "<title>confirm depends on charge</title>" in page
    assert 'href="/definitions#wf-default-checkout-1"' in page


def test_the_timeline_shows_retries_compensations_timeouts_and_signals(sqlite_app: Conveyor) -> None:
    """Each attempt is a bar coloured by its outcome; undos and signals are marks."""
    client = client_of(sqlite_app)
    order = client.get("/runs/order-1").text
    assert "charge attempt 1: failed, retried" in order
    assert "charge attempt 2: failed for good" in order
    assert 'class="mark mark-undo"' in order
    assert 'class="attempt outcome-completed"' in order
    assert "step.retry_scheduled" in order
    export = client.get("/runs/export-1").text
    assert "export attempt 1: timed out" in export
    assert "step.timed_out" in export
    waiting = client.get("/runs/approval-1").text
    assert 'class="attempt outcome-waiting"' in waiting
    assert '<span class="badge waiting">waiting</span>' in waiting


def test_a_signal_shows_on_the_timeline(tmp_path: object) -> None:
    """A signal sent to a run is a mark on the run's lane, and its payload is never shown."""
    app, _ = make_app(f"sqlite:///{tmp_path}/signal.db")
    app.start("approval", {"request": 2}, workflow_id="approval-2")
    with running_worker(app):
        wait_until(lambda: app.status("approval-2").is_waiting(), what="the wait")
        app.send_signal("approval-2", "approved", {"pin": "4711-payload"})
        wait_until(lambda: app.status("approval-2").is_completed(), what="the run to complete")
    page = client_of(app).get("/runs/approval-2").text
    assert 'class="mark mark-signal"' in page
    assert "signal.received name=approved" in page
    history = page.split("<h2>History</h2>")[1]
    assert "4711-payload" not in history
    app.close()


def test_a_runs_page_shows_each_steps_result_error_and_the_runs_output(sqlite_app: Conveyor) -> None:
    """Each step shows its attempts and result or error; a completed run its output."""
    client = client_of(sqlite_app)
    order = client.get("/runs/order-1").text
    assert "<code>ConnectionError</code>: payment gateway timed out" in order
    assert "failed after 2 attempts" in order
    assert "res-1" in order  # reserve's result
    export = client.get("/runs/export-1").text
    assert "<h2>Output</h2>" in export


def test_an_unknown_run_is_404(sqlite_app: Conveyor) -> None:
    """A run that does not exist is a 404 page naming it."""
    response = client_of(sqlite_app).get("/runs/no-such-run")
    assert response.status_code == 404
    assert "no-such-run" in response.text


def test_everything_a_run_holds_is_escaped(tmp_path: object) -> None:
    """A correlation id, an input, a result and an error message holding markup are shown as text."""
    markup = '<script>alert("x")</script><img src=x onerror=alert(1)>'

    @task
    def echo(value: dict) -> dict:  # type: ignore[type-arg]
        """Fail with the markup once, after returning it in another step."""
        raise ValueError(markup)

    @task
    def keep(value: dict) -> dict:  # type: ignore[type-arg]
        """Return the input."""
        return value

    flow = Flow("markup").then(keep).then(echo).build()
    app = Conveyor(f"sqlite:///{tmp_path}/markup.db", workflows=[flow])
    app.run("markup", {"text": markup}, workflow_id="run-<b>1</b>", correlation_id=markup)
    client = client_of(app)
    for page in (client.get("/runs").text, client.get("/runs/run-%3Cb%3E1%3C%2Fb%3E").text):
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "<b>1</b>" not in page
        assert "&lt;script&gt;" in page
    app.close()


def test_a_secret_a_step_uses_never_reaches_a_page(tmp_path: object) -> None:
    """Secrets are marked with pydantic's secret types: the codec stores none (a run given one is refused
    before anything is written), so a step using one from a resource leaves nothing of it on any page."""
    card = SecretStr("4111111111111111")

    @task
    def pay(order: dict, card: SecretStr = resource("card")) -> dict:  # type: ignore[type-arg]
        """Pay with the card, keeping only its last digits."""
        return {**order, "card": f"...{card.get_secret_value()[-4:]}", "shown": str(card)}

    flow = Flow("pay").then(pay).build()
    app = Conveyor(f"sqlite:///{tmp_path}/secret.db", workflows=[flow], resources={"card": card})
    app.run("pay", {"id": 1}, workflow_id="pay-1")
    with pytest.raises(EncodingError):
        app.run("pay", {"card": card}, workflow_id="pay-2")
    client = client_of(app)
    pages_seen = [client.get(path).text for path in ("/runs", "/runs/pay-1", "/analytics", "/definitions")]
    assert "...1111" in pages_seen[1]
    assert client.get("/runs/pay-2").status_code == 404
    for page in pages_seen:
        assert "4111111111111111" not in page
    app.close()


def test_a_map_steps_elements_are_counted_on_its_runs_page(tmp_path: object) -> None:
    """A fan-out step says how many of its elements are done."""

    @task
    def double(value: int) -> int:
        """Double one element."""
        return value * 2

    app = Conveyor(f"sqlite:///{tmp_path}/map.db", workflows=[Flow("doubles").map(double).build()])
    app.run("doubles", [1, 2, 3], workflow_id="doubles-1")
    assert "3 of 3 elements done" in client_of(app).get("/runs/doubles-1").text
    app.close()


def test_a_run_of_a_workflow_this_server_does_not_know_still_shows(sqlite_app: Conveyor) -> None:
    """A dashboard whose runtime lacks a run's workflow shows the run's steps as recorded, and says so."""
    other = Conveyor(sqlite_app.backend)
    page = client_of(other).get("/runs/order-1").text
    assert "does not have the workflow registered" in page
    assert '<g class="node state-failed">' in page


def test_the_definitions_page_lists_each_workflow_with_its_versions_and_graph(tmp_path: object) -> None:
    """Every registered workflow is listed, newest version first, with its steps and step graph."""
    app, _ = make_app(f"sqlite:///{tmp_path}/definitions.db")
    app.register(Flow("checkout", version="2").then(reserve).then(confirm).build())
    page = client_of(app, READ_TOKEN).get("/definitions").text
    section = page.split("<h2>checkout")[1].split("</section>")[0]
    assert section.index("version 2") < section.index("version 1")
    assert "v2, v1" in page
    assert "<title>confirm depends on reserve</title>" in section  # version 2
    assert "<title>confirm depends on charge</title>" in section  # version 1
    assert "signal wait" in page  # approval's wait step
    assert "<td>export</td><td>task</td><td>-</td>\n      <td>1</td><td>200 ms</td><td>no</td>" in page
    app.close()


def test_the_analytics_page_draws_the_windows_figures(sqlite_app: Conveyor) -> None:
    """The analytics of a window: totals, bar charts (SVG) and the performance and bottleneck tables."""
    client = client_of(sqlite_app)
    page = client.get("/analytics").text
    assert "<figcaption>Runs finished, by how they ended</figcaption>" in page
    assert 'class="bar state-compensated"' in page
    assert 'class="bar state-completed"' in page
    assert "<figcaption>Where the time goes: each step&#39;s executions together</figcaption>" in page
    assert "<h2>Bottlenecks</h2>" in page
    assert re.search(r"<dt>Finished</dt><dd>2</dd>", page)
    one = client.get("/analytics", params={"workflow": "checkout", "window": "1h"}).text
    assert re.search(r"<dt>Finished</dt><dd>1</dd>", one)
    assert '<option value="1h" selected>' in one
    assert "slow_export" not in one.split("<h2>Performance</h2>")[1]


def test_the_analytics_page_refuses_an_unknown_window(sqlite_app: Conveyor) -> None:
    """A window that is not offered is a 400 naming the ones that are."""
    response = client_of(sqlite_app).get("/analytics", params={"window": "2y"})
    assert response.status_code == 400
    assert "choose one of 1h, 6h, 24h, 7d, 30d" in response.text


def test_the_analytics_of_a_workflow_without_finished_runs_say_so(sqlite_app: Conveyor) -> None:
    """A workflow none of whose runs finished in the window (here: a name no run records) has no charts,
    and the page says no run finished."""
    response = client_of(sqlite_app).get("/analytics", params={"workflow": "no_such_flow"})
    assert response.status_code == 200
    assert "No run finished in this window." in response.text
    assert "<figure" not in response.text


def test_a_finished_runs_page_does_not_refresh_and_an_open_ones_does(sqlite_app: Conveyor) -> None:
    """Live refresh is asked for only where something can change: an open run, the newest runs."""
    client = client_of(sqlite_app)
    assert 'data-refresh="3.0"' in client.get("/runs/approval-1").text
    assert "data-refresh" not in client.get("/runs/order-1").text
    assert "data-refresh" not in client.get("/definitions").text
