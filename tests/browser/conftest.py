"""Fixtures for the browser tests: headless Chromium driven by Playwright, and a dashboard served by
uvicorn on a free port in a thread.

Playwright cannot download its own browser here, so it drives Debian's ``chromium`` (``make test`` installs
it when it runs as root; ``$CONVEYOR_TEST_CHROMIUM`` names another binary). Without it the tests are
skipped with the reason, unless ``CI=true``: there they fail, as the PostgreSQL tests do.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import pytest

CHROMIUM_VARIABLE = "CONVEYOR_TEST_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"


def browser_unavailable(reason: str) -> NoReturn:
    """Skip the test for ``reason``, or fail it when running in CI (``CI=true``)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


def chromium_path() -> str:
    """The Chromium binary to drive: ``$CONVEYOR_TEST_CHROMIUM``, else Debian's, else any on the PATH."""
    named = os.environ.get(CHROMIUM_VARIABLE, "").strip()
    if named:
        return named
    if os.path.exists(DEFAULT_CHROMIUM):
        return DEFAULT_CHROMIUM
    return shutil.which("chromium") or DEFAULT_CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium for a module's tests. Not for the session: Playwright's sync API runs an event
    loop on this thread while it is open, and the tests after it that call ``asyncio.run`` would fail."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        browser_unavailable("playwright is not installed: pip install -e '.[dev]'")
    path = chromium_path()
    if not os.path.exists(path):
        browser_unavailable(
            f"no Chromium at {path} (make test installs Debian's chromium package when run as root; "
            f"else apt-get install chromium, or set {CHROMIUM_VARIABLE})"
        )
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        except Error as exc:
            browser_unavailable(f"Chromium at {path} does not start: {exc}")
        yield launched
        launched.close()


@contextmanager
def serving(web: Any) -> Iterator[str]:
    """Serve the ASGI app ``web`` with uvicorn on a free local port, in a thread; yield its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(web, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the dashboard's server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="session")
def serve() -> Any:
    """:func:`serving`, for tests to serve a dashboard with."""
    return serving
