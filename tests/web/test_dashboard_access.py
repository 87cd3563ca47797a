"""The dashboard's doors: sign-in sessions, bearer tokens, roles, CSRF, and the headers on every response."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from conveyor import Conveyor, RunState
from conveyor.web.dashboard import dashboard_app
from conveyor.web.dashboard.access import MAX_FORM_BYTES
from conveyor.web.dashboard.headers import CONTENT_SECURITY_POLICY
from conveyor.web.dashboard.sessions import COOKIE_NAME, Sessions
from dashboard_support import (
    ADMIN_TOKEN,
    READ_TOKEN,
    csrf_token,
    dashboard_tokens,
    make_app,
    record_runs,
    sign_in,
)

PAGES = ("/runs", "/runs/order-1", "/runs/approval-1", "/definitions", "/analytics")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Conveyor]:
    """A runtime on a SQLite file holding the three runs of ``record_runs``."""
    path = tmp_path_factory.mktemp("dashboard-access") / "runs.db"
    runtime, _ = make_app(f"sqlite:///{path}")
    record_runs(runtime)
    yield runtime
    runtime.close()


@pytest.fixture
def client(app: Conveyor) -> Iterator[TestClient]:
    """A browser-like client of a fresh dashboard (no session yet)."""
    with TestClient(dashboard_app(app, dashboard_tokens())) as client:
        yield client


@pytest.mark.parametrize("path", ["/", *PAGES])
def test_a_page_sends_a_visitor_without_a_token_to_sign_in_and_back(client: TestClient, path: str) -> None:
    """Without a session, every page redirects to the sign-in page, which comes back to it after."""
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    if path == "/":
        assert response.headers["location"] == "/runs"
        return
    assert response.headers["location"].startswith("/login?next=")
    page = client.get(response.headers["location"])
    assert 'name="token"' in page.text
    signed = client.post("/login", data={"token": ADMIN_TOKEN, "next": path}, follow_redirects=False)
    assert signed.status_code == 303
    assert signed.headers["location"] == path
    assert client.get(path).status_code == 200


def test_sign_in_sets_an_http_only_strict_cookie_that_is_not_the_token(client: TestClient) -> None:
    """The session cookie is HttpOnly and SameSite=Strict, and holds neither the token nor its digest."""
    response = client.post("/login", data={"token": ADMIN_TOKEN}, follow_redirects=False)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test
    value = cookie.split(";")[0].split("=", 1)[1]
    import hashlib

    assert ADMIN_TOKEN not in value
    assert hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest() not in value
    assert len(value) >= 40


def test_the_session_cookie_is_secure_over_https(app: Conveyor) -> None:
    """A sign-in over https gets a Secure cookie."""
    with TestClient(dashboard_app(app, dashboard_tokens()), base_url="https://dashboard.example") as client:
        response = client.post("/login", data={"token": READ_TOKEN}, follow_redirects=False)
    assert "Secure" in response.headers["set-cookie"]


def test_a_wrong_token_is_refused_and_opens_no_session(client: TestClient) -> None:
    """A token the server does not hold gets 401 and the form again, and no cookie."""
    response = client.post("/login", data={"token": "not-a-token-of-this-server"})
    assert response.status_code == 401
    assert "not one this server accepts" in response.text
    assert "set-cookie" not in response.headers
    assert client.get("/runs", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session_on_the_server(client: TestClient) -> None:
    """After signing out, the old cookie opens nothing, even if a browser kept it."""
    sign_in(client)
    cookie = client.cookies[COOKIE_NAME]
    page = client.get("/runs")
    response = client.post("/logout", data={"csrf_token": csrf_token(page.text)}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert f'{COOKIE_NAME}=""' in response.headers["set-cookie"]
    client.cookies.set(COOKIE_NAME, cookie)
    assert client.get("/runs", follow_redirects=False).status_code == 303


def test_sign_out_needs_the_sessions_csrf_token(client: TestClient) -> None:
    """A sign-out posted without the session's CSRF token is refused and the session stays open."""
    sign_in(client)
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 403
    assert client.get("/runs").status_code == 200


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "runs"])
def test_sign_in_never_sends_the_browser_off_the_dashboard(client: TestClient, target: str) -> None:
    """A ``next`` that is not a path of this dashboard leads to the runs instead."""
    response = client.post("/login", data={"token": ADMIN_TOKEN, "next": target}, follow_redirects=False)
    assert response.headers["location"] == "/runs"


def test_a_bearer_token_reads_every_page_without_a_session(client: TestClient) -> None:
    """Scripts send ``Authorization: Bearer``: a read token reads every page, with no cookie set."""
    for path in PAGES:
        response = client.get(path, headers={"Authorization": f"Bearer {READ_TOKEN}"})
        assert response.status_code == 200, path
        assert "set-cookie" not in response.headers


def test_a_wrong_bearer_token_is_refused_even_beside_a_good_session(client: TestClient) -> None:
    """A request with a bearer header is judged by it alone: a wrong one is 401, cookie or not."""
    sign_in(client)
    response = client.get("/runs", headers={"Authorization": "Bearer wrong-token-0123456789"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_read_token_sees_no_actions_and_may_not_act(app: Conveyor, client: TestClient) -> None:
    """A read token's run page has no action form; a cancel it posts anyway is 403 and changes nothing."""
    sign_in(client, READ_TOKEN)
    page = client.get("/runs/approval-1")
    assert page.status_code == 200
    assert 'name="action"' not in page.text
    assert "Cancel run" not in page.text
    response = client.post("/runs/approval-1", data={"csrf_token": csrf_token(page.text), "action": "cancel"})
    assert response.status_code == 403
    assert app.status("approval-1").state is RunState.RUNNING
    bearer = client.post(
        "/runs/approval-1", data={"action": "cancel"}, headers={"Authorization": f"Bearer {READ_TOKEN}"}
    )
    assert bearer.status_code == 403
    assert app.status("approval-1").state is RunState.RUNNING


@pytest.mark.parametrize("given", [None, "", "forged-token"])
def test_an_action_without_the_sessions_csrf_token_is_refused(
    app: Conveyor, client: TestClient, given: str | None
) -> None:
    """An admin's session still needs the page's CSRF token: without it a cancel is 403, and nothing
    happens to the run."""
    sign_in(client)
    form = {"action": "cancel"} if given is None else {"action": "cancel", "csrf_token": given}
    response = client.post("/runs/approval-1", data=form)
    assert response.status_code == 403
    assert app.status("approval-1").state is RunState.RUNNING


def test_a_path_the_dashboard_does_not_have_is_its_not_found_page(client: TestClient) -> None:
    """An unknown path is a 404 page, which says nothing of runs to a visitor not signed in."""
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "no such page" in response.text
    assert 'href="/login"' in response.text
    sign_in(client)
    assert 'href="/runs"' in client.get("/no/such/page").text


def test_a_form_over_the_size_limit_is_refused_before_it_is_read(client: TestClient) -> None:
    """A form body over the limit is 413."""
    sign_in(client)
    response = client.post(
        "/runs/approval-1",
        content=b"action=signal&payload=" + b"x" * (MAX_FORM_BYTES + 1),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413


def _route_paths(client: TestClient) -> list[str]:
    paths = []
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Mount):
            paths.append(route.path + "/dashboard.css")
        elif isinstance(route, Route):
            paths.append(route.path.replace("{workflow_id:path}", "order-1"))
    return paths


def test_every_response_carries_the_security_headers(client: TestClient) -> None:
    """Every route (walked from the route table), signed in or not, and redirects, 404s and the sign-in
    page too, answers with the CSP, nosniff and no framing."""
    paths = _route_paths(client)
    assert {"/runs", "/login", "/static/dashboard.css", "/runs/order-1", "/analytics"} <= set(paths)
    responses = [client.get(path, follow_redirects=False) for path in paths]
    sign_in(client)
    responses += [client.get(path, follow_redirects=False) for path in [*paths, "/no-such-page"]]
    responses.append(client.post("/runs/order-1", data={"action": "cancel"}))
    for response in responses:
        headers = response.headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, response.url
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
    policy = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"


def test_pages_hold_no_inline_script_or_style(client: TestClient) -> None:
    """What the policy forbids, the pages do not need: no inline script, no style attribute or element."""
    sign_in(client)
    for path in (*PAGES, "/runs/export-1", "/login"):
        html = client.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert not re.search(r"\sstyle=|<style", html), path
        assert not re.search(r"\son[a-z]+=", html), path


def test_static_files_are_what_the_pages_link(client: TestClient) -> None:
    """The stylesheet and the script the pages link are served (and they are the only static files)."""
    static = Path(__file__).parents[2] / "src/conveyor/web/dashboard/static"
    assert sorted(path.name for path in static.iterdir()) == ["dashboard.css", "live.js"]
    sign_in(client)
    html = client.get("/runs").text
    for name in ("dashboard.css", "live.js"):
        assert f"/static/{name}" in html
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        assert "cache-control" not in response.headers


def test_an_unexpected_error_is_a_plain_500_page(
    app: Conveyor, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure inside a page answers 500 with the headers and without a trace or the error's text."""
    sign_in(client)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("SELECT secret FROM somewhere")

    monkeypatch.setattr(app, "runs", broken)
    response = client.get("/runs")
    assert response.status_code == 500
    assert "SELECT" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


class FakeClock:
    """A monotonic clock a test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_ends_after_its_lifetime() -> None:
    """A session's cookie opens nothing once the session's lifetime has passed."""
    clock = FakeClock()
    sessions = Sessions(dashboard_tokens(), lifetime_seconds=60, clock=clock)
    opened = sessions.sign_in(ADMIN_TOKEN)
    assert opened is not None
    cookie, visitor = opened
    assert sessions.visitor(cookie) == visitor
    clock.now += 61
    assert sessions.visitor(cookie) is None
    assert len(sessions) == 0


def test_the_session_table_is_bounded() -> None:
    """Past the most sessions kept, the oldest is ended to make room."""
    clock = FakeClock()
    sessions = Sessions(dashboard_tokens(), max_sessions=3, clock=clock)
    cookies = []
    for _ in range(4):
        clock.now += 1
        opened = sessions.sign_in(READ_TOKEN)
        assert opened is not None
        cookies.append(opened[0])
    assert len(sessions) == 3
    assert sessions.visitor(cookies[0]) is None
    assert all(sessions.visitor(cookie) is not None for cookie in cookies[1:])


def test_the_dashboard_works_mounted_below_a_prefix(app: Conveyor) -> None:
    """Mounted at ``/ops`` in another app, its links, redirects, cookie and static files keep the prefix."""
    from starlette.applications import Starlette

    outer = Starlette(routes=[Mount("/ops", app=dashboard_app(app, dashboard_tokens()))])
    with TestClient(outer) as client:
        first = client.get("/ops/runs/order-1", follow_redirects=False)
        assert first.headers["location"] == "/ops/login?next=%2Fruns%2Forder-1"
        signed = client.post(
            "/ops/login", data={"token": ADMIN_TOKEN, "next": "/runs/order-1"}, follow_redirects=False
        )
        assert signed.headers["location"] == "/ops/runs/order-1"
        assert "Path=/ops" in signed.headers["set-cookie"]
        page = client.get("/ops/runs").text
        assert 'href="/ops/runs/order-1"' in page
        assert 'href="/ops/static/dashboard.css"' in page
        assert client.get("/ops/static/dashboard.css").status_code == 200
        assert client.get("/ops/runs?q=order-1", follow_redirects=False).headers["location"] == (
            "/ops/runs/order-1"
        )


def test_the_server_serves_the_dashboard_at_its_root_beside_the_api(app: Conveyor) -> None:
    """``create_server`` (what ``conveyor serve`` runs) holds this dashboard at ``/``: sign-in, pages and
    headers as alone, and the API at ``/api`` answering its own bearer tokens."""
    from conveyor.web import create_server

    with TestClient(create_server(app, dashboard_tokens())) as client:
        assert client.get("/runs", follow_redirects=False).headers["location"] == "/login?next=%2Fruns"
        sign_in(client)
        page = client.get("/runs/order-1")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert 'href="/static/dashboard.css"' in page.text
        api = client.get("/api/runs/order-1", headers={"Authorization": f"Bearer {READ_TOKEN}"})
        assert api.status_code == 200
        assert api.json()["state"] == "compensated"
