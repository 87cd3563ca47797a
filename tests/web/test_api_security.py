"""Every door of the REST API needs a token of the right role; errors say what is wrong and nothing more;
bodies over the limit are refused before they are read; values marked secret never come back."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Route
from web_support import ADMIN, ADMIN_TOKEN, CARD_NUMBER, READ, READ_TOKEN, WORKFLOWS, Site

from conveyor import Conveyor, InMemoryBackend
from conveyor.errors import ConfigurationError
from conveyor.web import ApiTokens, api_app


@pytest.fixture
def api() -> Iterator[FastAPI]:
    """The API over a memory backend (for what does not depend on the backend)."""
    with Conveyor(InMemoryBackend(), workflows=WORKFLOWS) as app:
        yield api_app(app, ApiTokens(admin=[ADMIN_TOKEN], read=[READ_TOKEN]), max_body_bytes=1000)


def every_route(api: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route in the app's table, path parameters filled in."""
    found = []
    for route in api.routes:
        assert isinstance(route, APIRoute | Route)
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((method, re.sub(r"\{[^}]+\}", "x", route.path)))
    return found


def test_every_route_but_healthz_refuses_a_request_without_a_token(api: FastAPI) -> None:
    """Walk the route table: each route answers 401 with WWW-Authenticate: Bearer, but /healthz."""
    client = TestClient(api)
    routes = every_route(api)
    assert ("GET", "/openapi.json") in routes
    assert len(routes) >= 15
    for method, path in routes:
        for headers in (
            {},
            {"Authorization": "Bearer not-a-token-of-this-server"},
            {"Authorization": "Basic eA=="},
        ):
            answer = client.request(method, path, headers=headers)
            if path == "/healthz":
                assert answer.status_code == 200, (method, path)
                continue
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert answer.headers["content-type"] == "application/problem+json"


def test_a_read_token_reads_every_route_and_changes_none(api: FastAPI) -> None:
    """Walk the route table with a read token: GET routes answer (200, or 404 for run 'x'); every other
    method is a 403, before its body is even read."""
    client = TestClient(api)
    for method, path in every_route(api):
        answer = client.request(method, path, headers=READ)
        if method == "GET":
            assert answer.status_code in (200, 404), (method, path, answer.text)
        else:
            assert answer.status_code == 403, (method, path, answer.text)
            assert answer.json()["detail"] == f"a read token may only read; {method} needs an admin token"
            garbled = client.request(method, path, headers=READ, content=b"{not json")
            assert garbled.status_code == 403


def test_an_admin_token_passes_every_door(api: FastAPI) -> None:
    """No route refuses an admin token for who it is (what it asks may still be refused)."""
    client = TestClient(api)
    for method, path in every_route(api):
        assert client.request(method, path, headers=ADMIN).status_code not in (401, 403), (method, path)


def test_an_unknown_path_is_a_401_without_a_token_and_a_404_problem_with_one(api: FastAPI) -> None:
    """The API's shape is not shown to strangers; to a caller with a token, a 404 problem."""
    client = TestClient(api)
    assert client.get("/nowhere").status_code == 401
    answer = client.get("/nowhere", headers=READ)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


def test_the_api_needs_tokens_and_a_sane_body_limit() -> None:
    """No tokens, tokens of another kind, or a body limit below one byte: a clear error at once."""
    with Conveyor(InMemoryBackend(), workflows=WORKFLOWS) as app:
        with pytest.raises(ConfigurationError, match="CONVEYOR_ADMIN_TOKENS"):
            api_app(app, ApiTokens.from_environment({}))
        with pytest.raises(ConfigurationError, match=r"needs its tokens as conveyor\.web\.ApiTokens"):
            api_app(app, ["a-token-in-a-list-0000"])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_body_bytes must be a whole number of bytes >= 1"):
            api_app(app, ApiTokens(admin=[ADMIN_TOKEN]), max_body_bytes=0)


# -- the body limit -----------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_a_413_by_its_content_length(api: FastAPI) -> None:
    """Content-Length over the limit: 413 problem naming the limit."""
    answer = TestClient(api).post(
        "/runs", content=b"x" * 1001, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"] == "the request body is over the limit of 1,000 bytes"


def test_a_streamed_body_over_the_limit_is_a_413_once_counted(api: FastAPI) -> None:
    """A body without Content-Length (chunked) is counted as it arrives and refused past the limit."""

    def chunks() -> Iterator[bytes]:
        yield b'{"workflow": "checkout", "input": "'
        for _ in range(20):
            yield b"y" * 100
        yield b'"}'

    answer = TestClient(api).post(
        "/runs", content=chunks(), headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert answer.status_code == 413


def test_a_body_within_the_limit_reaches_the_route_whole(api: FastAPI) -> None:
    """A streamed body under the limit is handed on whole: the start is validated as usual."""

    def chunks() -> Iterator[bytes]:
        yield b'{"workflow": "checkout", '
        yield b'"input": {"order_id": "o-1", "quantity": 1}}'

    answer = TestClient(api).post(
        "/runs", content=chunks(), headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert answer.status_code == 201, answer.text


def test_a_body_over_the_limit_writes_nothing(site: Site) -> None:
    """On SQLite and PostgreSQL: the default 1 MiB limit refuses a larger start; no row changes."""
    before = site.rows()
    big = {"workflow": "checkout", "input": {"order_id": "o" * (1 << 20), "quantity": 1}}
    answer = site.client.post("/runs", json=big, headers=ADMIN)
    assert answer.status_code == 413
    assert site.rows() == before


# -- secrets ------------------------------------------------------------------------------------------------


def test_an_input_holding_a_secret_is_refused_without_repeating_it_and_nothing_is_stored(site: Site) -> None:
    """A card in a SecretStr field: 422 naming body.input.card by its type, never its value; no row."""
    before = site.rows()
    body = {"workflow": "payment", "input": {"order_id": "o-1", "card": CARD_NUMBER}}
    answer = site.client.post("/runs", json=body, headers=ADMIN)
    assert answer.status_code == 422
    assert [error["field"] for error in answer.json()["errors"]] == ["body.input.card"]
    assert "SecretStr" in answer.json()["detail"]
    assert CARD_NUMBER not in answer.text
    assert site.rows() == before
    for table in site.rows().values():
        assert CARD_NUMBER not in repr(table)


def test_a_rejected_body_never_repeats_what_it_held(site: Site) -> None:
    """A body refused for another field (or as not JSON) does not echo the card it carries."""
    body = {"workflow": "payment", "input": {"order_id": "o-1", "card": CARD_NUMBER}, "workflow_id": 7}
    answer = site.client.post("/runs", json=body, headers=ADMIN)
    assert answer.status_code == 422
    assert CARD_NUMBER not in answer.text
    broken = '{"workflow": "payment", "input": {"card": "' + CARD_NUMBER + '"'
    answer = site.client.post("/runs", content=broken, headers={**ADMIN, "Content-Type": "application/json"})
    assert answer.status_code == 400
    assert CARD_NUMBER not in answer.text
    typed = {"workflow": "payment", "input": {"order_id": ["o-1"], "card": CARD_NUMBER}}
    answer = site.client.post("/runs", json=typed, headers=ADMIN)
    assert answer.status_code == 422
    assert CARD_NUMBER not in answer.text


def test_a_step_returning_a_secret_fails_and_no_answer_holds_the_secret(site: Site) -> None:
    """The codec refuses the step's secret result; the run, its steps, history and listing never show it."""
    site.app.run("leaky", {}, workflow_id="leaky-1")
    texts = [
        site.client.get(path, headers=READ).text
        for path in ("/runs/leaky-1", "/runs/leaky-1/steps", "/runs/leaky-1/history", "/runs", "/workflows")
    ]
    run = site.client.get("/runs/leaky-1", headers=READ).json()
    assert run["state"] == "failed"
    assert "SecretStr" in run["steps"][0]["error"]["message"]
    for text in texts:
        assert CARD_NUMBER not in text


def test_the_definitions_show_a_secret_field_as_write_only(site: Site) -> None:
    """The payment workflow's input schema marks the card write-only, a password: never a value."""
    answer = site.client.get("/workflows/payment", headers=READ).json()
    card = answer["versions"][0]["input_schema"]["properties"]["card"]
    assert card["writeOnly"] is True
    assert card["format"] == "password"


# -- errors say what is wrong, and nothing more -----------------------------------------------------------


def test_a_bug_is_a_500_problem_without_a_trace(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected error: a 500 problem naming no exception, file or SQL; the log has the trace."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("SELECT secret FROM conveyor_runs -- in /srv/app/conveyor.py line 12")

    monkeypatch.setattr(site.app, "runs", broken)
    client = TestClient(site.client.app, raise_server_exceptions=False)
    answer = client.get("/runs", headers=READ)
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"] == "conveyor failed handling the request; the server's log has the details"
    for leak in ("SELECT", "RuntimeError", "Traceback", "conveyor.py"):
        assert leak not in answer.text


def test_a_backend_failure_is_a_503_problem_without_its_sql(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BackendError (its message holds the database's words): 503, a detail that names none of them."""
    from conveyor.errors import BackendError

    def failing(*args: object, **kwargs: object) -> None:
        raise BackendError("SQLite at /srv/conveyor.db failed: near 'SELECT': syntax error")

    monkeypatch.setattr(site.app, "status", failing)
    answer = site.client.get("/runs/x", headers=READ)
    assert answer.status_code == 503
    assert "SELECT" not in answer.text
    assert "/srv" not in answer.text
