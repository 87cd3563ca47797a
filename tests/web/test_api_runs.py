"""Reading runs over HTTP, on SQLite and PostgreSQL: the list and its filters, one run, its steps, history."""

from __future__ import annotations

import datetime as dt

import pytest
from web_support import ADMIN, CHECKOUT_V1, CHECKOUT_V2, GATEWAY, READ, Site

from conveyor.core.records import RunSummary
from conveyor.core.states import RunState
from conveyor.web.api_models import RunSummaryOut


def record(site: Site) -> None:
    """Three checkout runs (one of version 2, one failed) and one of another workflow, in that order."""
    site.app.run(CHECKOUT_V1, {"order_id": "o-1", "quantity": 2}, workflow_id="c-1", correlation_id="req-1")
    site.app.run(CHECKOUT_V2, {"order_id": "o-2", "quantity": 1}, workflow_id="c-2", correlation_id="req-2")
    GATEWAY["down"] = True
    site.app.run(CHECKOUT_V1, {"order_id": "o-3", "quantity": 1}, workflow_id="c-3", correlation_id="req-1")
    GATEWAY["down"] = False
    site.app.start("approval", {"order_id": "o-4"}, workflow_id="a-1", correlation_id="req-4")


def ids(answer: dict) -> list[str]:
    return [run["workflow_id"] for run in answer["runs"]]


def test_the_list_is_newest_first_and_each_run_says_what_it_is(site: Site) -> None:
    """GET /runs: every run, newest first, with its workflow, version, state, times and error message."""
    record(site)
    answer = site.client.get("/runs", headers=READ)
    assert answer.status_code == 200
    assert ids(answer.json()) == ["a-1", "c-3", "c-2", "c-1"]
    failed = answer.json()["runs"][1]
    assert failed["workflow_name"] == "checkout"
    assert failed["workflow_version"] == "1"
    assert failed["state"] == "failed"
    assert failed["correlation_id"] == "req-1"
    assert failed["error_message"] == "the payment gateway is down"
    assert dt.datetime.fromisoformat(failed["created_at"]).tzinfo is not None
    assert answer.json()["next_page"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("workflow=checkout", ["c-3", "c-2", "c-1"]),
        ("workflow=checkout&version=2", ["c-2"]),
        ("state=failed", ["c-3"]),
        ("state=failed&state=completed", ["c-3", "c-2", "c-1"]),
        ("state=pending", ["a-1"]),
        ("correlation_id=req-1", ["c-3", "c-1"]),
        ("workflow=approval&correlation_id=req-1", []),
        ("workflow=nobody-registered-this", []),
    ],
)
def test_the_list_filters_by_workflow_version_state_and_correlation_id(
    site: Site, query: str, expected: list[str]
) -> None:
    """Each filter narrows the list; they combine."""
    record(site)
    answer = site.client.get(f"/runs?{query}", headers=READ)
    assert answer.status_code == 200, answer.text
    assert ids(answer.json()) == expected


@pytest.mark.parametrize("created_at", [1_764_000_307.3211179, 1_764_000_000.0, 1_764_000_000.9999999])
def test_a_creation_time_shown_is_never_after_the_run_s_own(created_at: float) -> None:
    """Shown cut to the microsecond, so that passed back as ``created_after`` it keeps its run, even where
    ``created_at * 1e6`` rounds up across a whole microsecond (the first value: it was shown 1 µs late,
    and the list filtered by its own time left the run out about one time in 170)."""
    summary = RunSummary("r", "w", "1", RunState.RUNNING, "c", created_at, created_at)
    shown = RunSummaryOut.of(summary).model_dump(mode="json")["created_at"]
    assert dt.datetime.fromisoformat(shown).timestamp() <= created_at
    assert created_at - dt.datetime.fromisoformat(shown).timestamp() < 1e-6


def test_the_list_filters_by_a_creation_time_range(site: Site) -> None:
    """created_after is inclusive, created_before exclusive, both ISO 8601 with a zone."""
    record(site)
    runs = {
        run["workflow_id"]: run["created_at"] for run in site.client.get("/runs", headers=READ).json()["runs"]
    }
    after, before = runs["c-2"], runs["a-1"]
    answer = site.client.get("/runs", params={"created_after": after, "created_before": before}, headers=READ)
    assert ids(answer.json()) == ["c-3", "c-2"]
    naive = site.client.get("/runs", params={"created_after": "2026-01-01T00:00:00"}, headers=READ)
    assert naive.status_code == 422
    assert [error["field"] for error in naive.json()["errors"]] == ["query.created_after"]


def test_pages_follow_next_page_until_every_run_was_listed_once(site: Site) -> None:
    """limit cuts pages; next_page asks for the next; the last says null."""
    record(site)
    first = site.client.get("/runs?limit=3", headers=READ).json()
    second = site.client.get("/runs", params={"limit": 3, "page": first["next_page"]}, headers=READ).json()
    assert ids(first) + ids(second) == ["a-1", "c-3", "c-2", "c-1"]
    assert second["next_page"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "query.limit"),
        ("limit=1001", "query.limit"),
        ("limit=many", "query.limit"),
        ("state=finished", "query.state.0"),
        ("page=not-a-page", "query.page"),
        ("version=", "query.version"),
    ],
)
def test_a_bad_listing_parameter_is_a_422_naming_it(site: Site, query: str, field: str) -> None:
    """A bad parameter is named, instead of listing nothing or everything."""
    answer = site.client.get(f"/runs?{query}", headers=READ)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in answer.json()["errors"]]


def test_one_run_shows_its_fields_and_each_step_with_state_attempts_duration_result_and_error(
    site: Site,
) -> None:
    """GET /runs/{id}: the run's fields and its steps, a failed one with its error; seed 002's view."""
    record(site)
    done = site.client.get("/runs/c-1", headers=READ).json()
    assert (done["state"], done["correlation_id"], done["workflow_version"]) == ("completed", "req-1", "1")
    assert done["output"] == {"order_id": "o-1", "charged": 10}
    assert [step["name"] for step in done["steps"]] == ["reserve", "charge"]
    reserve = done["steps"][0]
    assert reserve["state"] == "completed"
    assert reserve["attempts"] == 1
    assert reserve["duration_seconds"] >= 0
    assert reserve["result"] == {"order_id": "o-1", "reserved": 2}
    assert reserve["correlation_id"] == "req-1"
    assert reserve["error"] is None
    failed = site.client.get("/runs/c-3", headers=READ).json()
    assert failed["state"] == "failed"
    charge = failed["steps"][1]
    assert charge["state"] == "failed"
    assert charge["error"]["message"] == "the payment gateway is down"
    assert charge["error"]["error_type"].endswith("NonRetryableError")
    assert failed["error"]["step_name"] == "charge"


def test_a_runs_steps_alone_as_seed_002_reads_them(site: Site) -> None:
    """GET /runs/{id}/steps: the steps in the workflow's order, with the run's correlation id."""
    record(site)
    answer = site.client.get("/runs/c-3/steps", headers=READ).json()
    assert answer["workflow_id"] == "c-3"
    assert answer["correlation_id"] == "req-1"
    assert [(step["name"], step["state"]) for step in answer["steps"]] == [
        ("reserve", "completed"),
        ("charge", "failed"),
    ]


def test_a_runs_history_is_oldest_first_and_reads_on_after_a_seq(site: Site) -> None:
    """GET /runs/{id}/history: every event in order; after= reads on; limit= pages with next_after."""
    record(site)
    whole = site.client.get("/runs/c-1/history", headers=READ).json()
    kinds = [event["kind"] for event in whole["events"]]
    assert kinds[0] == "run.started"
    assert kinds[-1] == "run.completed"
    assert "step.completed" in kinds
    assert [event["seq"] for event in whole["events"]] == list(range(1, len(kinds) + 1))
    assert whole["next_after"] is None
    first = site.client.get("/runs/c-1/history?limit=2", headers=READ).json()
    assert first["next_after"] == 2
    rest = site.client.get(f"/runs/c-1/history?after={first['next_after']}", headers=READ).json()
    assert [event["seq"] for event in first["events"] + rest["events"]] == list(range(1, len(kinds) + 1))
    failed = site.client.get("/runs/c-3/history", headers=READ).json()
    failure = next(event for event in failed["events"] if event["kind"] == "step.failed")
    assert failure["step"] == "charge"
    assert failure["data"]["message"] == "the payment gateway is down"


@pytest.mark.parametrize(
    "path", ["/runs/nope", "/runs/nope/steps", "/runs/nope/history", "/runs/nope/history?after=3"]
)
def test_an_unknown_run_is_a_404_problem_that_names_it_and_nothing_else(site: Site, path: str) -> None:
    """404 application/problem+json naming the run, not the backend behind it."""
    answer = site.client.get(path, headers=ADMIN)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == 404
    assert problem["detail"] == "no run 'nope'"
    assert problem["type"].endswith(":not-found")
