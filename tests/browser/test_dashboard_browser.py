"""The dashboard end to end in headless Chromium, against real runs on SQLite and PostgreSQL: a person
signs in, filters the runs, opens one, clicks a retry and a cancel, and the backend shows the result.

The screenshots the README and docs/dashboard.md show are taken here (docs/screenshots/).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, RunState
from conveyor.web.dashboard import dashboard_app
from dashboard_support import (
    ADMIN_TOKEN,
    READ_TOKEN,
    Gateway,
    dashboard_tokens,
    make_app,
    record_runs,
    running_worker,
    wait_until,
)

SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"
SCREENSHOTS_VARIABLE = "CONVEYOR_SCREENSHOTS"
VIEWPORT = {"width": 1280, "height": 860}
REFRESH_SECONDS = 0.5


@dataclass
class Site:
    """A dashboard served over real runs, with a worker driving them, and the gateway a test mends."""

    app: Conveyor
    gateway: Gateway
    url: str


def open_site(backend: str, serve: Any) -> Iterator[Site]:
    """Record the runs of ``record_runs`` on ``backend``, start a worker, and serve the dashboard."""
    app, gateway = make_app(backend)
    record_runs(app)
    web = dashboard_app(app, dashboard_tokens(), refresh_seconds=REFRESH_SECONDS)
    with running_worker(app), serve(web) as url:
        yield Site(app, gateway, url)
    app.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, serve: Any, browser: Any) -> Iterator[Site]:
    """The served dashboard over a SQLite file (after the browser: without one, nothing is set up)."""
    yield from open_site(f"sqlite:///{tmp_path_factory.mktemp('browser') / 'runs.db'}", serve)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser page (no cookie) that fails the test on any console error, such as a refused CSP."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(8_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == [], f"the browser reported errors: {errors}"


def sign_in(page: Any, url: str, token: str = ADMIN_TOKEN) -> None:
    """Open the runs, land on the sign-in form, paste ``token`` and sign in."""
    page.goto(f"{url}/runs")
    assert "/login" in page.url
    page.fill("#token", token)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{url}/runs")


def listed(page: Any) -> list[str]:
    """The run ids the runs list shows, in order."""
    return [text.strip() for text in page.locator("table.runs tbody tr td:first-child a").all_inner_texts()]


def screenshot(page: Any, name: str, tmp_path: Path, *, down_to: str | None = None) -> Path:
    """Save the page (whole, or down to the bottom of the element ``down_to``) as ``<name>.png``: into
    docs/screenshots/ when it has none yet or ``$CONVEYOR_SCREENSHOTS`` is ``update``, else into
    ``tmp_path``, so a test run leaves the committed pictures as they are."""
    committed = SCREENSHOTS / f"{name}.png"
    update = os.environ.get(SCREENSHOTS_VARIABLE) == "update" or not committed.exists()
    target = committed if update else tmp_path / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    clip = None
    if down_to is not None:
        box = page.locator(down_to).bounding_box()
        clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": box["y"] + box["height"] + 16}
    page.screenshot(path=str(target), full_page=True, clip=clip)
    assert target.stat().st_size > 10_000
    return target


def test_a_person_signs_in_filters_the_runs_and_opens_one(site: Site, page: Any, tmp_path: Path) -> None:
    """Sign in, filter the list by state, search a correlation id, and open a run from the list."""
    sign_in(page, site.url)
    assert listed(page) == ["export-1", "approval-1", "order-1"]
    screenshot(page, "runs", tmp_path)
    page.select_option("select[name=state]", "compensated")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/runs?*state=compensated*")
    assert listed(page) == ["order-1"]
    page.fill("input[name=q]", "basket-7")
    page.select_option("select[name=state]", "")
    page.click("form.filters button[type=submit]")
    assert listed(page) == ["approval-1", "order-1"]
    page.click("text=order-1")
    page.wait_for_url(f"{site.url}/runs/order-1")
    assert page.locator("h1 .badge").inner_text() == "compensated"
    assert page.locator("svg.graph g.node").count() == 3
    assert page.locator("svg.timeline rect.attempt.outcome-retried").count() == 1
    assert page.locator("svg.timeline path.mark-undo").count() == 1
    assert "payment gateway timed out" in page.locator(".failure").inner_text()


def test_a_retry_clicked_in_the_browser_is_driven_by_the_worker(
    site: Site, page: Any, tmp_path: Path
) -> None:
    """Mend the gateway, click Retry: the page says it is recorded, the worker drives the run to its end,
    and the open page shows it completed by itself (live refresh)."""
    sign_in(page, site.url)
    page.goto(f"{site.url}/runs/order-1")
    screenshot(page, "run", tmp_path, down_to="#run-timeline ul.legend")
    site.gateway.broken = False
    page.fill("form.action input[name=reason]", "gateway fixed")
    page.click("button:has-text('Retry')")
    page.wait_for_url("**/runs/order-1?done=retry")
    assert "Retry recorded" in page.locator(".notice.done").inner_text()
    wait_until(lambda: site.app.status("order-1").is_completed(), what="the retried run to complete")
    page.wait_for_selector("#run-summary h1 .badge.state-completed", timeout=10_000)
    assert site.app.status("order-1").output() == "order 1 confirmed"
    assert site.gateway.charges == ["res-1"]
    assert "order 1 confirmed" in page.locator("#run-summary pre.value").inner_text()


def test_a_cancel_clicked_in_the_browser_cancels_the_waiting_run(site: Site, page: Any) -> None:
    """Open the waiting run, give a reason, click Cancel run: the worker undoes it, the backend holds it
    cancelled with the reason, and the open page shows it by itself."""
    sign_in(page, site.url)
    page.goto(f"{site.url}/runs/approval-1")
    assert page.locator("#run-summary .badge.waiting").count() == 1
    page.fill("form.action:has(button.danger) input[name=reason]", "customer changed their mind")
    page.click("button:has-text('Cancel run')")
    page.wait_for_url("**/runs/approval-1?done=cancel")
    wait_until(lambda: site.app.status("approval-1").is_cancelled(), what="the worker to cancel the run")
    status = site.app.status("approval-1")
    assert status.state is RunState.CANCELLED
    assert status.cancel_reason == "customer changed their mind"
    page.wait_for_selector("#run-summary h1 .badge.state-cancelled", timeout=10_000)


def test_the_analytics_and_definitions_pages_draw_their_charts(site: Site, page: Any, tmp_path: Path) -> None:
    """The analytics page draws its bar charts for the window chosen; the definitions their graphs."""
    sign_in(page, site.url)
    page.goto(f"{site.url}/analytics")
    assert page.locator("figure.chart svg rect.bar").count() >= 4
    page.select_option("select[name=window]", "1h")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/analytics?*window=1h*")
    assert page.locator("figure.chart").count() == 4
    screenshot(page, "analytics", tmp_path)
    page.click("nav >> text=Definitions")
    assert page.locator("svg.graph").count() == 3
    assert page.locator("svg.graph path.edge").count() == 4  # checkout 2, approval 2, export 0


def test_a_read_token_sees_no_action_and_can_sign_out(site: Site, page: Any) -> None:
    """A read token's run page has no action button; signing out sends the browser to the sign-in page
    and the pages are closed to it again."""
    sign_in(page, site.url, READ_TOKEN)
    page.goto(f"{site.url}/runs/export-1")
    assert page.locator("#run-actions").count() == 0
    assert page.locator("button:has-text('Retry')").count() == 0
    page.click("text=Sign out")
    page.wait_for_url(f"{site.url}/login")
    page.goto(f"{site.url}/runs")
    assert "/login" in page.url


def test_every_page_reads_without_javascript(site: Site, browser: Any) -> None:
    """With JavaScript off, a person signs in and reads the runs, a run, the definitions and analytics."""
    context = browser.new_context(viewport=VIEWPORT, java_script_enabled=False)
    context.set_default_timeout(8_000)
    page = context.new_page()
    sign_in(page, site.url, READ_TOKEN)
    assert listed(page) == ["export-1", "approval-1", "order-1"]
    page.goto(f"{site.url}/runs/export-1")
    assert page.locator("svg.timeline rect.attempt").count() == 2
    assert "step.timed_out" in page.locator("table.history").inner_text()
    page.goto(f"{site.url}/definitions")
    assert page.locator("svg.graph").count() == 3
    page.goto(f"{site.url}/analytics")
    assert page.locator("figure.chart").count() == 4
    context.close()


def test_the_open_runs_list_shows_a_new_run_by_itself(site: Site, page: Any) -> None:
    """A run started while the list is open appears on it, and its state follows, without a reload.
    (Last of the SQLite tests: it adds a run the ones above do not expect.)"""
    sign_in(page, site.url)
    assert "live-3" not in listed(page)
    site.app.start("slow_export", {"report": "live"}, workflow_id="live-3")
    page.wait_for_selector("table.runs a:text-is('live-3')", timeout=10_000)
    wait_until(lambda: site.app.status("live-3").is_completed(), what="live-3 to complete")
    row = page.locator("table.runs tr:has(a:text-is('live-3'))")
    row.locator(".badge.state-completed").wait_for(timeout=10_000)
    assert page.url == f"{site.url}/runs"


@pytest.fixture
def postgres_site(browser: Any, postgres_database: Any, serve: Any) -> Iterator[Site]:
    """The served dashboard over a PostgreSQL database of its own."""
    yield from open_site(postgres_database.url, serve)


def test_the_runs_list_and_a_runs_page_on_postgresql(postgres_site: Site, page: Any) -> None:
    """On PostgreSQL too, the list shows the runs, filters them, and a run's page draws its steps."""
    sign_in(page, postgres_site.url)
    assert listed(page) == ["export-1", "approval-1", "order-1"]
    page.select_option("select[name=workflow]", "slow_export")
    page.click("form.filters button[type=submit]")
    assert listed(page) == ["export-1"]
    page.click("text=export-1")
    assert page.locator("svg.timeline rect.attempt.outcome-timed_out").count() == 1
    assert page.locator("h1 .badge").inner_text() == "completed"
