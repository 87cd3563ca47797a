"""The registered workflows, the analytics, the metrics and the health check over HTTP, on SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from web_support import CHECKOUT_V1, GATEWAY, READ, Site


def test_the_workflows_are_listed_with_each_version_and_step_graph(site: Site) -> None:
    """GET /workflows (seed 002's /handlers): every version, its steps, dependencies and input schema."""
    answer = site.client.get("/workflows", headers=READ)
    assert answer.status_code == 200
    listed = {(found["name"], found["version"]): found for found in answer.json()["workflows"]}
    assert set(listed) == {
        ("checkout", "1"),
        ("checkout", "2"),
        ("approval", "1"),
        ("payment", "1"),
        ("leaky", "1"),
    }
    checkout = listed[("checkout", "1")]
    assert checkout["namespace"] == "default"
    assert checkout["description"] == "Reserve, then charge"
    assert checkout["output_step"] == "charge"
    assert [(step["name"], step["depends_on"], step["kind"]) for step in checkout["steps"]] == [
        ("reserve", [], "task"),
        ("charge", ["reserve"], "task"),
    ]
    schema = checkout["input_schema"]
    assert schema["required"] == ["order_id", "quantity"]
    assert schema["properties"]["quantity"]["minimum"] == 1
    approval = listed[("approval", "1")]
    assert [step["kind"] for step in approval["steps"]] == ["task", "wait", "task"]
    assert approval["input_schema"] is None


def test_one_workflow_shows_its_versions_oldest_first_and_an_unknown_one_is_a_404(site: Site) -> None:
    """GET /workflows/{name}: each version; a name nobody registered, or another namespace: 404."""
    answer = site.client.get("/workflows/checkout", headers=READ).json()
    assert (answer["name"], answer["namespace"]) == ("checkout", "default")
    assert [found["version"] for found in answer["versions"]] == ["1", "2"]
    for path in ("/workflows/nope", "/workflows/checkout?namespace=elsewhere"):
        missing = site.client.get(path, headers=READ)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert "nope" in missing.json()["detail"] or "elsewhere" in missing.json()["detail"]


def finished_runs(site: Site) -> None:
    """Two completed checkout runs and a failed one, and a completed approval."""
    site.app.run(CHECKOUT_V1, {"order_id": "o-1", "quantity": 1}, workflow_id="c-1")
    site.app.run(CHECKOUT_V1, {"order_id": "o-2", "quantity": 2}, workflow_id="c-2")
    GATEWAY["down"] = True
    site.app.run(CHECKOUT_V1, {"order_id": "o-3", "quantity": 3}, workflow_id="c-3")
    GATEWAY["down"] = False
    site.app.start("approval", {}, workflow_id="a-1")
    site.drive()
    site.app.send_signal("a-1", "approved")
    site.drive()


def test_performance_counts_the_runs_finished_in_the_window(site: Site) -> None:
    """GET /analytics/performance: each workflow's finished runs, rates, durations and health."""
    finished_runs(site)
    answer = site.client.get("/analytics/performance", headers=READ)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["finished"] == 4
    checkout = next(found for found in report["workflows"] if found["workflow"] == "checkout")
    assert checkout["finished"] == 3
    assert checkout["by_state"]["completed"] == 2
    assert checkout["by_state"]["failed"] == 1
    assert checkout["success_rate"] == pytest.approx(2 / 3)
    assert 0 <= checkout["health_score"] <= 100
    assert checkout["duration_seconds"]["p95"] >= 0


def test_performance_and_bottlenecks_take_seed_002s_namespace_and_task_name(site: Site) -> None:
    """?namespace=default&task_name=checkout keeps one workflow; the bottlenecks rank its steps."""
    finished_runs(site)
    query = {"namespace": "default", "task_name": "checkout"}
    report = site.client.get("/analytics/performance", params=query, headers=READ).json()
    assert [found["workflow"] for found in report["workflows"]] == ["checkout"]
    bottlenecks = site.client.get("/analytics/bottlenecks", params=query, headers=READ)
    assert bottlenecks.status_code == 200, bottlenecks.text
    steps = bottlenecks.json()["steps"]
    assert {step["step"] for step in steps} == {"reserve", "charge"}
    assert [step["rank"] for step in steps] == [1, 2]
    charge = next(step for step in steps if step["step"] == "charge")
    assert charge["failed"] == 1
    assert charge["executions"] == 3


def test_the_window_is_since_and_until_and_a_window_without_runs_has_no_score(site: Site) -> None:
    """since/until (ISO 8601 with a zone) move the window; one before every run finished holds none."""
    finished_runs(site)
    long_ago = {"since": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00+00:00"}
    report = site.client.get("/analytics/performance", params=long_ago, headers=READ).json()
    assert report["finished"] == 0
    assert report["health_score"] is None
    assert report["window"]["seconds"] == 86400
    now = dt.datetime.now(dt.UTC)
    around = {
        "since": (now - dt.timedelta(hours=1)).isoformat(),
        "until": (now + dt.timedelta(hours=1)).isoformat(),
    }
    assert site.client.get("/analytics/performance", params=around, headers=READ).json()["finished"] == 4


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 422, "since"),
        ({"since": "yesterday"}, 422, "query.since"),
        ({"until": "2026-01-01T00:00:00"}, 422, "query.until"),
        ({"namespace": "nowhere"}, 422, "namespace"),
        ({"task_name": "checkout", "namespace": "nowhere"}, 404, None),
    ],
)
def test_a_bad_analytics_parameter_is_refused_naming_it(
    site: Site, query: dict[str, str], status: int, field: str | None
) -> None:
    """A window that ends before it starts, a time without a zone, an unknown namespace: named."""
    for path in ("/analytics/performance", "/analytics/bottlenecks"):
        answer = site.client.get(path, params=query, headers=READ)
        assert answer.status_code == status, answer.text
        if field is not None:
            assert field in [error["field"] for error in answer.json()["errors"]]


def test_metrics_are_prometheus_text_behind_a_token(site: Site) -> None:
    """GET /metrics: the runtime's counters in Prometheus' text format, with the runs started here."""
    finished_runs(site)
    answer = site.client.get("/metrics", headers=READ)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert 'conveyor_runs_finished_total{state="completed",workflow="checkout"} 2.0' in answer.text
    assert site.client.get("/metrics").status_code == 401


def test_healthz_says_the_backend_answers_without_a_token(site: Site) -> None:
    """GET /healthz: 200 ok and the backend's kind, no token needed."""
    answer = site.client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"
    assert answer.json()["backend"] in ("sqlite", "postgresql")


def test_healthz_is_a_503_when_the_backend_does_not_answer(site: Site) -> None:
    """A closed backend does not answer: 503 unavailable (the log says why), still without a token."""
    site.app.backend.close()
    answer = site.client.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable"
