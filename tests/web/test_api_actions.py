"""Steering runs over HTTP, on SQLite and PostgreSQL: start, signal, cancel, pause, resume and retry each
answer with the run; every refusal leaves the backend exactly as it was."""

from __future__ import annotations

from typing import Any

import pytest
from web_support import ADMIN, CHECKOUT_V1, GATEWAY, Site

ORDER = {"order_id": "o-1", "quantity": 2}


def refused(site: Site, method: str, path: str, status: int, **request: Any) -> dict[str, Any]:
    """Send a request that must be refused with ``status``; check nothing was written; the problem."""
    before = site.rows()
    answer = site.client.request(method, path, headers={**ADMIN, **request.pop("headers", {})}, **request)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in answer.text
    assert site.rows() == before, "a refused request wrote to the backend"
    problem: dict[str, Any] = answer.json()
    assert problem["status"] == status
    return problem


def fields(problem: dict[str, Any]) -> list[str]:
    return [error["field"] for error in problem.get("errors", [])]


def waiting_approval(site: Site, workflow_id: str = "a-1") -> None:
    """A run of the approval workflow, waiting for its signal."""
    site.app.start("approval", {"order_id": "o-9"}, workflow_id=workflow_id)
    site.drive()
    assert site.app.status(workflow_id).is_waiting()


# -- start ------------------------------------------------------------------------------------------------


def test_a_start_records_the_run_for_a_worker_and_answers_201_with_it(site: Site) -> None:
    """POST /runs: 201, Location, the run as recorded (pending, not driven here); a worker then runs it."""
    answer = site.client.post(
        "/runs",
        json={"workflow": "checkout", "version": "1", "input": ORDER, "correlation_id": "req-7"},
        headers=ADMIN,
    )
    assert answer.status_code == 201, answer.text
    run = answer.json()
    assert run["state"] == "pending"
    assert (run["workflow_name"], run["workflow_version"], run["correlation_id"]) == (
        "checkout",
        "1",
        "req-7",
    )
    assert answer.headers["location"] == f"runs/{run['workflow_id']}"
    assert [step["state"] for step in run["steps"]] == ["pending", "pending"]
    site.drive()
    assert site.app.status(run["workflow_id"]).output() == {"order_id": "o-1", "charged": 10}


def test_a_start_without_a_version_runs_the_newest_and_an_existing_id_answers_200_with_that_run(
    site: Site,
) -> None:
    """No version: the newest registered. The same workflow_id again: that run, 200, nothing new."""
    first = site.client.post(
        "/runs", json={"workflow": "checkout", "input": ORDER, "workflow_id": "c-1"}, headers=ADMIN
    )
    assert first.status_code == 201
    assert first.json()["workflow_version"] == "2"
    again = site.client.post(
        "/runs", json={"workflow": "checkout", "input": ORDER, "workflow_id": "c-1"}, headers=ADMIN
    )
    assert again.status_code == 200
    assert again.json()["created_at"] == first.json()["created_at"]
    assert len(site.app.runs()) == 1


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"workflow": "nope", "input": ORDER}, 404, []),
        ({"workflow": "checkout", "version": "9", "input": ORDER}, 404, []),
        (
            {"workflow": "checkout", "input": {"order_id": "", "quantity": 0}},
            422,
            ["body.input.order_id", "body.input.quantity"],
        ),
        (
            {"workflow": "checkout", "input": {"quantity": 1, "coupon": "x"}},
            422,
            ["body.input.order_id", "body.input.coupon"],
        ),
        ({"workflow": "checkout", "input": "not an order"}, 422, []),
        ({"input": ORDER}, 422, ["body.workflow"]),
        ({"workflow": "checkout", "input": ORDER, "priority": "high"}, 422, ["body.priority"]),
        ({"workflow": "checkout", "input": ORDER, "workflow_id": ""}, 422, ["body.workflow_id"]),
        ({"workflow": 7, "input": ORDER}, 422, ["body.workflow"]),
    ],
)
def test_a_start_that_breaks_a_schema_or_names_no_workflow_writes_nothing(
    site: Site, body: dict[str, Any], status: int, named: list[str]
) -> None:
    """Unknown workflow or version: 404. A field that breaks the body's or the input's schema: 422 naming
    each field. In every case nothing is written."""
    problem = refused(site, "POST", "/runs", status, json=body)
    assert fields(problem) == named or set(named) <= set(fields(problem))
    if status == 422 and named:
        assert all(error["message"] for error in problem["errors"])


def test_a_start_on_an_id_another_workflow_used_is_a_409(site: Site) -> None:
    """A workflow_id names one run for ever: another workflow's start on it is refused."""
    site.app.run(CHECKOUT_V1, ORDER, workflow_id="taken")
    refused(site, "POST", "/runs", 409, json={"workflow": "approval", "input": {}, "workflow_id": "taken"})


@pytest.mark.parametrize("content", [b"{not json", b'{"workflow": "checkout",', b"\xff\xfe", b"[1, 2"])
def test_a_body_that_is_not_json_is_a_400(site: Site, content: bytes) -> None:
    """Malformed JSON: 400 naming the body, nothing written."""
    problem = refused(
        site, "POST", "/runs", 400, content=content, headers={"Content-Type": "application/json"}
    )
    assert fields(problem) == ["body"]


# -- signal, cancel, pause, resume ------------------------------------------------------------------------


def test_a_signal_wakes_the_run_waiting_for_it(site: Site) -> None:
    """POST /runs/{id}/signal: the run answers; a worker then goes on past the wait."""
    waiting_approval(site)
    answer = site.client.post(
        "/runs/a-1/signal", json={"name": "approved", "payload": {"by": "ada"}}, headers=ADMIN
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["workflow_id"] == "a-1"
    site.drive()
    assert site.app.status("a-1").is_completed()


def test_a_signal_to_an_unknown_or_finished_run_or_without_a_name_is_refused(site: Site) -> None:
    """404 for no such run, 409 for a run that ended, 422 for a signal without a name."""
    site.app.run(CHECKOUT_V1, ORDER, workflow_id="done")
    waiting_approval(site)
    refused(site, "POST", "/runs/nope/signal", 404, json={"name": "approved"})
    refused(site, "POST", "/runs/done/signal", 409, json={"name": "approved"})
    problem = refused(site, "POST", "/runs/a-1/signal", 422, json={"payload": 1})
    assert fields(problem) == ["body.name"]


def test_a_cancel_ends_the_run_cancelled_with_the_reason_and_who_asked(site: Site) -> None:
    """POST /runs/{id}/cancel {reason, by}: cancelled, the reason and who asked in the run."""
    waiting_approval(site)
    answer = site.client.post(
        "/runs/a-1/cancel", json={"reason": "customer asked", "by": "ada"}, headers=ADMIN
    )
    assert answer.status_code == 200, answer.text
    site.drive()
    run = site.client.get("/runs/a-1", headers=ADMIN).json()
    assert run["state"] == "cancelled"
    assert run["cancel_reason"] == "customer asked"
    assert [(action["action"], action["by"]) for action in run["operator_actions"]] == [("cancel", "ada")]


def test_a_cancel_without_a_body_is_logged_as_the_api(site: Site) -> None:
    """The body is optional: who asked is then 'api'."""
    waiting_approval(site)
    assert site.client.post("/runs/a-1/cancel", headers=ADMIN).status_code == 200
    site.drive()
    assert site.app.status("a-1").cancelled_by == "api"


def test_a_cancel_of_a_completed_or_unknown_run_is_refused(site: Site) -> None:
    """409 for a run that completed, 404 for none; a reason too long is a 422 naming it."""
    site.app.run(CHECKOUT_V1, ORDER, workflow_id="done")
    refused(site, "POST", "/runs/done/cancel", 409, json={"reason": "too late"})
    refused(site, "POST", "/runs/nope/cancel", 404, json={})
    waiting_approval(site)
    problem = refused(site, "POST", "/runs/a-1/cancel", 422, json={"reason": "x" * 2001})
    assert fields(problem) == ["body.reason"]


def test_a_pause_holds_the_run_and_a_resume_lets_a_worker_go_on(site: Site) -> None:
    """POST /pause: paused, logged; POST /resume: the pause lifted; the run then ends as usual."""
    waiting_approval(site)
    paused = site.client.post("/runs/a-1/pause", json={"reason": "stock check", "by": "ivy"}, headers=ADMIN)
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True
    site.app.send_signal("a-1", "approved")
    site.drive()
    assert site.app.status("a-1").is_running()
    resumed = site.client.post("/runs/a-1/resume", json={"by": "ivy"}, headers=ADMIN)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["paused"] is False
    site.drive()
    run = site.client.get("/runs/a-1", headers=ADMIN).json()
    assert run["state"] == "completed"
    assert [(action["action"], action["by"], action["reason"]) for action in run["operator_actions"]] == [
        ("pause", "ivy", "stock check"),
        ("unpause", "ivy", ""),
    ]


def test_a_pause_or_resume_of_a_finished_run_is_a_409_and_a_resume_takes_no_reason(site: Site) -> None:
    """A run that ended cannot be paused or resumed; /resume's body has only 'by'."""
    site.app.run(CHECKOUT_V1, ORDER, workflow_id="done")
    refused(site, "POST", "/runs/done/pause", 409, json={})
    refused(site, "POST", "/runs/done/resume", 409, json={})
    waiting_approval(site)
    problem = refused(site, "POST", "/runs/a-1/resume", 422, json={"reason": "why not"})
    assert fields(problem) == ["body.reason"]


# -- retry ------------------------------------------------------------------------------------------------


def test_a_retry_reopens_a_failed_run_for_a_worker_without_running_it_in_the_request(site: Site) -> None:
    """POST /retry: the failed step is due again, not run here; a worker completes it; reserve ran once."""
    GATEWAY["down"] = True
    site.app.run(CHECKOUT_V1, ORDER, workflow_id="c-1")
    GATEWAY["down"] = False
    answer = site.client.post("/runs/c-1/retry", json={"reason": "gateway fixed", "by": "ops"}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert run["state"] not in ("completed", "failed")
    assert {step["name"]: step["state"] for step in run["steps"]}["charge"] != "completed"
    site.drive()
    done = site.client.get("/runs/c-1", headers=ADMIN).json()
    assert done["state"] == "completed"
    assert {step["name"]: step["attempts"] for step in done["steps"]}["reserve"] == 1
    assert done["operator_actions"][0]["action"] == "retry"
    assert done["operator_actions"][0]["by"] == "ops"


def test_a_retry_from_a_step_runs_that_step_again_even_in_a_completed_run(site: Site) -> None:
    """from_step: that step and what depends on it run again, by a worker."""
    site.app.run(CHECKOUT_V1, ORDER, workflow_id="c-1")
    answer = site.client.post("/runs/c-1/retry", json={"from_step": "charge"}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    site.drive()
    steps = {
        step["name"]: step["attempts"] for step in site.client.get("/runs/c-1", headers=ADMIN).json()["steps"]
    }
    assert steps["reserve"] == 1
    assert site.app.status("c-1").is_completed()


def test_a_retry_that_cannot_be_done_is_refused(site: Site) -> None:
    """A completed run without from_step: 409; an unknown step: 422 naming from_step; no run: 404."""
    site.app.run(CHECKOUT_V1, ORDER, workflow_id="done")
    refused(site, "POST", "/runs/done/retry", 409, json={})
    problem = refused(site, "POST", "/runs/done/retry", 422, json={"from_step": "ship"})
    assert "ship" in problem["detail"]
    refused(site, "POST", "/runs/nope/retry", 404, json={})
