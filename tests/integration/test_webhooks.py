"""Webhooks against a real HTTP server on this machine: signed requests carrying the event id, retries with
backoff through a receiver that fails first, no retry for a refusal, and the receiver's check of a request."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conveyor import (
    Backend,
    Conveyor,
    Flow,
    InMemoryBackend,
    InvalidArgumentError,
    RetryPolicy,
    SqliteBackend,
    WebhookSignatureError,
    task,
    verify_webhook,
)
from conveyor.backends.postgres import PostgresBackend
from conveyor.runtime.webhooks import signature

SECRET = "whsec-test-3f9a"
FAST = RetryPolicy(max_retries=10, initial_delay_secs=0.01, max_delay_secs=0.05)


@task
def only_step(value: int) -> int:
    return value + 1


FLOW = Flow("orders", version="1").then(only_step).build()


class Receiver:
    """A local HTTP server that records each request and answers from a script (then 200)."""

    def __init__(self, answers: list[int | tuple[int, dict[str, str]]] | None = None) -> None:
        self.answers = list(answers or [])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests.append((dict(self.headers.items()), body))
                    answer = receiver.answers.pop(0) if receiver.answers else 200
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/conveyor?token=s3cr3t-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        made: Backend = InMemoryBackend()
    elif request.param == "sqlite":
        made = SqliteBackend(tmp_path / "hooks.db")
    else:
        made = PostgresBackend(request.getfixturevalue("postgres_database").url)
    yield made
    made.close()


def deliver(app: Conveyor, receiver: Receiver, count: int, timeout: float = 30.0) -> None:
    """Consume until the receiver has ``count`` requests (PostgreSQL's feed may hold events a moment)."""
    deadline = time.monotonic() + timeout
    while len(receiver.requests) < count:
        assert time.monotonic() < deadline, f"got {len(receiver.requests)} of {count} requests"
        app.consume(timeout_seconds=10)
        time.sleep(0.02)


def test_each_status_change_is_posted_signed_with_its_event_id(backend: Backend, receiver: Receiver) -> None:
    """run.* events by default, as JSON, each request verifiable with the secret and naming its event."""
    app = Conveyor(backend, workflows=[FLOW])
    app.webhook(receiver.url, secret=SECRET, name="orders-hook")
    app.run(FLOW, 1, workflow_id="order-1", correlation_id="req-42")
    deliver(app, receiver, 2)
    assert [event["kind"] for event in receiver.events()] == ["run.started", "run.completed"]
    for headers, body in receiver.requests:
        event = verify_webhook(body, headers, SECRET)
        assert headers["X-Conveyor-Event-Id"] == event["id"]
        assert headers["X-Conveyor-Event-Kind"] == event["kind"]
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Conveyor-Signature"].startswith("sha256=")
        assert event["correlation_id"] == "req-42"
    assert receiver.events()[1] == {**app.history("order-1")[-1].to_dict()}
    assert app.consume() == 0  # delivered: the cursor moved past them


def test_a_receiver_that_fails_first_gets_the_event_after_retries_then_the_rest(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """503, a 429 asking for a short wait, then 200: the same event three times, then the next, in order;
    the logs never show the URL's path, its token, or the secret."""
    receiver = Receiver([503, (429, {"Retry-After": "0"}), 200])
    try:
        app = Conveyor(backend, workflows=[FLOW])
        app.webhook(receiver.url, secret=SECRET, kinds=["run.completed", "step.completed"], retry=FAST)
        app.run(FLOW, 1, workflow_id="order-1")
        with caplog.at_level(logging.DEBUG):
            deliver(app, receiver, 4)
        ids = [headers["X-Conveyor-Event-Id"] for headers, _ in receiver.requests]
        assert ids == ["order-1#3", "order-1#3", "order-1#3", "order-1#4"]
        assert "HTTP 503" in caplog.text
        assert "HTTP 429" in caplog.text
        assert "s3cr3t-path" not in caplog.text
        assert "/hooks" not in caplog.text
        assert SECRET not in caplog.text
    finally:
        receiver.close()


def test_a_refusal_is_logged_and_not_retried(backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    """A 404 is the receiver refusing the event: logged with its id, and the next event goes on."""
    receiver = Receiver([404])
    try:
        app = Conveyor(backend, workflows=[FLOW])
        app.webhook(receiver.url, secret=SECRET, retry=FAST)
        app.run(FLOW, 1, workflow_id="order-1")
        with caplog.at_level(logging.ERROR, logger="conveyor.webhooks"):
            deliver(app, receiver, 2)
        assert [event["id"] for event in receiver.events()] == ["order-1#1", "order-1#4"]
        assert "refused event order-1#1 (run.started) with HTTP 404; not retried" in caplog.text
    finally:
        receiver.close()


def test_a_receiver_that_is_down_is_retried_until_it_answers(tmp_path: Path) -> None:
    """Connection refused, then the server comes up on that port: the event arrives, nothing skipped."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = SqliteBackend(tmp_path / "hooks.db")
    app = Conveyor(backend, workflows=[FLOW])
    url = f"http://127.0.0.1:{port}/hook"
    app.webhook(url, secret=SECRET, kinds=["run.completed"], retry=FAST, timeout_seconds=2)
    app.run(FLOW, 1, workflow_id="order-1")
    assert app.consume(timeout_seconds=0.2) == 0  # nobody listens: tried, kept for later
    receiver = Receiver()
    receiver.server.server_close()
    receiver.server = ThreadingHTTPServer(("127.0.0.1", port), receiver.server.RequestHandlerClass)
    receiver.thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    receiver.thread.start()
    try:
        assert app.consume(timeout_seconds=10) == 1
        assert [event["id"] for event in receiver.events()] == ["order-1#4"]
    finally:
        receiver.close()
        app.close()
        backend.close()


def test_a_webhook_runs_in_consumer_threads_as_runs_go(receiver: Receiver, tmp_path: Path) -> None:
    """Under consuming() (what conveyor worker does), events are posted without anyone calling consume."""
    with SqliteBackend(tmp_path / "hooks.db") as backend:
        app = Conveyor(backend, workflows=[FLOW])
        app.webhook(receiver.url, secret=SECRET, kinds=["run.completed"])
        with app.consuming(poll_interval_seconds=0.05):
            for number in range(3):
                app.run(FLOW, number, workflow_id=f"order-{number}")
            deadline = time.monotonic() + 20
            while len(receiver.requests) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
        app.close()
    assert [event["workflow_id"] for event in receiver.events()] == ["order-0", "order-1", "order-2"]


def test_verify_webhook_refuses_a_forged_a_tampered_and_a_stale_request() -> None:
    """Wrong secret, changed body, an old timestamp, a mismatched id, a missing header: each is refused."""
    body = json.dumps({"id": "order-1#4", "kind": "run.completed"}).encode()
    now = 1_700_000_000
    headers = {
        "x-conveyor-timestamp": str(now),
        "x-conveyor-signature": signature(body, str(now), SECRET),
        "x-conveyor-event-id": "order-1#4",
    }
    assert verify_webhook(body, headers, SECRET, now=now + 10)["id"] == "order-1#4"
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook(body, headers, "another secret", now=now)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook(body.replace(b"completed", b"failed"), headers, SECRET, now=now)
    with pytest.raises(WebhookSignatureError, match="past the tolerance"):
        verify_webhook(body, headers, SECRET, now=now + 301)
    with pytest.raises(WebhookSignatureError, match="not the id"):
        verify_webhook(body, {**headers, "x-conveyor-event-id": "order-1#3"}, SECRET, now=now)
    with pytest.raises(WebhookSignatureError, match="has no"):
        verify_webhook(body, {"x-conveyor-timestamp": str(now)}, SECRET, now=now)


def test_a_webhook_needs_a_secret_and_an_http_url() -> None:
    """No secret, or a URL that is not http(s), is refused when the webhook is declared."""
    app = Conveyor(InMemoryBackend())
    with pytest.raises(InvalidArgumentError, match="non-empty secret"):
        app.webhook("https://example.com/hook", secret="")
    with pytest.raises(InvalidArgumentError, match="http:// or https://"):
        app.webhook("ftp://example.com/hook", secret=SECRET)


class Dripper:
    """A receiver that reads each request, then answers a byte at a time, each well before a socket's
    timeout, for up to ``seconds`` a request (a hung or hostile receiver: it never finishes its answer)."""

    def __init__(self, seconds: float = 15.0) -> None:
        self.seconds = seconds
        self.attempts = 0
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            self.attempts += 1
            end = time.monotonic() + self.seconds
            try:
                connection.sendall(b"HTTP/1.1 200 OK\r\n")
                while time.monotonic() < end:
                    connection.sendall(b"X")
                    time.sleep(0.1)
            except OSError:  # the sender gave up
                return

    def close(self) -> None:
        self.server.close()


def test_a_receiver_that_never_finishes_its_answer_is_cut_off_at_the_timeout_and_holds_up_nothing(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """timeout_seconds bounds an attempt as a whole, not each wait of its socket: a receiver that answers a
    byte at a time (each before a read times out) is given up on after 0.5 s an attempt, and the webhook
    beside it gets its events. (An attempt lasted as long as the receiver kept dripping: 15 s here.)"""
    dripper = Dripper()
    backend = SqliteBackend(tmp_path / "hooks.db")
    try:
        app = Conveyor(backend, workflows=[FLOW])
        once = RetryPolicy(max_retries=0)
        app.webhook(dripper.url, secret=SECRET, name="hung", timeout_seconds=0.5, retry=once)
        app.webhook(receiver.url, secret=SECRET, name="fine")
        app.run(FLOW, 1, workflow_id="order-1")
        began = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="conveyor.subscribers"):
            app.consume(timeout_seconds=30)
        took = time.monotonic() - began
        assert dripper.attempts == 2  # run.started, run.completed: each tried once, then given up
        assert took < 5, f"consume took {took:.1f} s"
        assert "no answer in 0.5 s" in caplog.text
        assert [event["id"] for event in receiver.events()] == ["order-1#1", "order-1#4"]
    finally:
        dripper.close()
        backend.close()


def test_a_redirect_is_the_receivers_refusal_and_is_not_followed(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 307 to another URL: the signed request is never sent there, the refusal is logged, and the next
    event goes on to the first receiver."""
    redirecting = Receiver([(307, {"Location": receiver.url}), 200])
    try:
        with SqliteBackend(tmp_path / "hooks.db") as backend:
            app = Conveyor(backend, workflows=[FLOW])
            app.webhook(redirecting.url, secret=SECRET)
            app.run(FLOW, 1, workflow_id="order-1")
            with caplog.at_level(logging.ERROR, logger="conveyor.webhooks"):
                assert app.consume(timeout_seconds=10) == 2
        assert [event["id"] for event in redirecting.events()] == ["order-1#1", "order-1#4"]
        assert receiver.requests == []
        assert "refused event order-1#1 (run.started) with HTTP 307; not retried" in caplog.text
    finally:
        redirecting.close()
