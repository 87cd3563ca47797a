"""Webhooks: a durable subscriber that POSTs chosen events to a URL, signed, with retries and backoff.

``app.webhook("https://example.com/hooks/conveyor", secret=..., kinds=["run.completed", "run.failed"])``
posts each event's :meth:`~conveyor.core.history.Event.to_dict` as JSON, with these headers:

- ``X-Conveyor-Event-Id``: the event's id, the same in every delivery (drop a repeat by it);
- ``X-Conveyor-Event-Kind``: the event's kind;
- ``X-Conveyor-Timestamp``: when this attempt was signed, in whole epoch seconds;
- ``X-Conveyor-Signature``: ``sha256=`` and the hex HMAC-SHA256, keyed by the shared secret, of the
  timestamp, a ``.``, and the body's bytes.

A 2xx answer delivers the event. A connection that fails or times out (the timeout bounds the whole attempt,
not each wait of its socket), a 5xx, a 408 or a 429 is tried again
with backoff (a ``Retry-After`` in seconds is honoured, up to the policy's longest delay); any other answer is
the receiver refusing the event: it is logged and not retried. Being durable, a webhook resumes after a
restart and may deliver an event twice (at least once): a receiver checks the signature with
:func:`verify_webhook` and drops ids it has seen. The secret is never logged, nor the URL's path or query
(where some receivers keep a token): logs name the scheme, host and port only. Requests are made with the
standard library (``urllib``), which logs nothing of its own, and redirects are not followed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from conveyor.core.history import Event, EventKind
from conveyor.errors import InvalidArgumentError, WebhookDeliveryError, WebhookSignatureError

log = logging.getLogger("conveyor.webhooks")

EVENT_ID_HEADER = "X-Conveyor-Event-Id"
EVENT_KIND_HEADER = "X-Conveyor-Event-Kind"
TIMESTAMP_HEADER = "X-Conveyor-Timestamp"
SIGNATURE_HEADER = "X-Conveyor-Signature"
SIGNATURE_PREFIX = "sha256="
USER_AGENT = "conveyor-webhooks/1"
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_TOLERANCE_SECONDS = 300.0
"""How old a signed request :func:`verify_webhook` accepts (and how far in the future), in seconds."""
RUN_STATUS_KINDS = tuple(kind.value for kind in EventKind if kind.value.startswith("run."))
"""What a webhook posts unless told otherwise: every change of a run's status (``run.*``)."""
RETRIED_STATUSES = frozenset({408, 429})
"""The 4xx answers tried again (besides every 5xx): a timeout and "too many requests"."""
MOST_ANSWER_BYTES = 64 * 1024
"""How much of a receiver's answer is read (the rest is never waited for: only its status counts)."""


def secret_bytes(secret: str | bytes) -> bytes:
    """The shared secret as bytes; an empty or non-text secret is an InvalidArgumentError."""
    if isinstance(secret, str):
        secret = secret.encode()
    if not isinstance(secret, bytes) or not secret:
        raise InvalidArgumentError("a webhook needs a non-empty secret (str or bytes)", argument="secret")
    return secret


def signature(body: bytes, timestamp: str, secret: str | bytes) -> str:
    """The ``X-Conveyor-Signature`` of ``body`` signed at ``timestamp``: ``sha256=<hex HMAC-SHA256>``."""
    digest = hmac.new(secret_bytes(secret), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def signed_headers(body: bytes, event: Event, secret: str | bytes, now: float) -> dict[str, str]:
    """The headers of one attempt to deliver ``event`` (whose JSON is ``body``), signed at ``now``."""
    timestamp = str(int(now))
    return {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: event.id,
        EVENT_KIND_HEADER: event.kind,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(body, timestamp, secret),
    }


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str | bytes,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a webhook request as its receiver got it, and return the event it carries (a dict).

    ``headers`` are the request's (any letter case). Raises :class:`~conveyor.errors.WebhookSignatureError`
    when the signature is missing or does not match ``body`` and the secret, when the timestamp is more
    than ``tolerance_seconds`` from ``now`` (a replayed request), or when the event id header is not the
    body's. The caller then drops the request; after that, it drops an event id it has already handled.
    """
    raw = body.encode() if isinstance(body, str) else body
    found = {name.lower(): value for name, value in headers.items()}
    given = found.get(SIGNATURE_HEADER.lower())
    timestamp = found.get(TIMESTAMP_HEADER.lower())
    if not given or not timestamp:
        raise WebhookSignatureError(f"the request has no {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
    if not hmac.compare_digest(given.encode(), signature(raw, timestamp, secret).encode()):
        raise WebhookSignatureError("the request's signature does not match its body and the secret")
    try:
        signed_at = int(timestamp)
    except ValueError:
        raise WebhookSignatureError(f"the {TIMESTAMP_HEADER} is not a whole number: {timestamp!r}") from None
    age = (time.time() if now is None else now) - signed_at
    if abs(age) > tolerance_seconds:
        raise WebhookSignatureError(
            f"the request was signed {age:.0f} s from now, past the tolerance of {tolerance_seconds:.0f} s"
        )
    event: dict[str, Any] = orjson.loads(raw)
    if found.get(EVENT_ID_HEADER.lower()) != event.get("id"):
        raise WebhookSignatureError(f"the {EVENT_ID_HEADER} header is not the id of the event in the body")
    return event


def where(url: str) -> str:
    """What logs say of ``url``: its scheme, host and port (a path or query may hold a token)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def check_url(url: object) -> str:
    """``url`` if it is an http(s) URL with a host; else an InvalidArgumentError."""
    if (
        not isinstance(url, str)
        or urlsplit(url).scheme not in ("http", "https")
        or not urlsplit(url).hostname
    ):
        raise InvalidArgumentError(
            f"a webhook URL is http:// or https:// with a host, not {url!r}", argument="url"
        )
    return url


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer like any other (a refusal): a signed POST is never sent on elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Watch:
    """Bounds one attempt as a whole: when its time is up, the sockets it opened are shut down, which ends a
    connect, write or read blocked on them. A socket's own timeout bounds each wait alone, so a receiver
    that answers a byte at a time, each before it runs out, would otherwise hold the attempt for ever."""

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def add(self, opened: socket.socket) -> socket.socket:
        """Watch ``opened`` (shut down at once if the time is up already)."""
        with self._lock:
            self._sockets.append(opened)
            if self.expired:
                _shut(opened)
        return opened

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for opened in self._sockets:
                _shut(opened)

    def cancel(self) -> None:
        """The attempt is over: nothing is shut down."""
        self._timer.cancel()


def _shut(opened: socket.socket) -> None:
    with contextlib.suppress(OSError):  # closed already, or never connected
        opened.shutdown(socket.SHUT_RDWR)


class _Watched:
    """Mixed into an HTTP(S) connection: its sockets are added to its request's :class:`_Watch`, which shuts
    them down when the attempt's time is up (over TLS, the TLS socket too, once the handshake is done)."""

    sock: socket.socket

    def __init__(self, *args: Any, watch: _Watch, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = lambda *a, **k: watch.add(socket.create_connection(*a, **k))
        self._watch = watch

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._watch.add(self.sock)


class _WatchedHTTP(_Watched, http.client.HTTPConnection):
    """A plain-HTTP connection whose sockets are watched."""


class _WatchedHTTPS(_Watched, http.client.HTTPSConnection):
    """A TLS connection whose sockets are watched."""


def _watch_of(request: urllib.request.Request) -> _Watch:
    watch = getattr(request, "conveyor_watch", None)
    if not isinstance(watch, _Watch):
        raise TypeError("a webhook request carries its watch")
    return watch


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        watch = _watch_of(req)
        return self.do_open(lambda *a, **k: _WatchedHTTP(*a, watch=watch, **k), req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        watch = _watch_of(req)
        return self.do_open(
            lambda *a, **k: _WatchedHTTPS(*a, watch=watch, **k),
            req,
            context=self._context,  # type: ignore[attr-defined]
        )


_OPENER = urllib.request.build_opener(_NoRedirects(), _WatchedHTTPHandler(), _WatchedHTTPSHandler())


class Webhook:
    """The handler of a webhook's durable subscriber: one signed POST per event (see the module's doc).

    Raises :class:`~conveyor.errors.WebhookDeliveryError` for an attempt worth repeating (its consumer
    tries again with backoff); returns after logging a refusal (a 4xx other than 408 and 429, a 3xx).
    """

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = check_url(url)
        self._secret = secret_bytes(secret)
        if not isinstance(timeout_seconds, int | float) or not 0 < timeout_seconds < float("inf"):
            raise InvalidArgumentError(
                f"timeout_seconds must be a positive number, not {timeout_seconds!r}",
                argument="timeout_seconds",
            )
        self.timeout_seconds = float(timeout_seconds)
        self.headers = {"User-Agent": USER_AGENT, **dict(headers or {})}
        self._clock = clock

    def __call__(self, event: Event) -> None:
        body = orjson.dumps(event.to_dict())
        headers = {**self.headers, **signed_headers(body, event, self._secret, self._clock())}
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        target = where(self.url)
        watch = _Watch(self.timeout_seconds)
        request.conveyor_watch = watch  # type: ignore[attr-defined]
        try:
            with _OPENER.open(request, timeout=self.timeout_seconds) as response:
                response.read(MOST_ANSWER_BYTES)
            if not watch.expired:  # (an answer cut short by the end of its time is no answer)
                return
            raise TimeoutError
        except urllib.error.HTTPError as answer:  # a status other than 2xx
            status, retry_after = answer.code, _retry_after(answer.headers.get("Retry-After"))
            answer.close()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # no connection, a
            # timeout, a reset, an answer that is no HTTP (or one cut short when the attempt's time ran out)
            reason = getattr(exc, "reason", exc)
            why = f"no answer in {self.timeout_seconds:g} s" if watch.expired else type(reason).__name__
            raise WebhookDeliveryError(
                f"POST to {target} failed: {why}", event_id=event.id
            ) from None  # the cause would name the URL in full
        finally:
            watch.cancel()
        if status >= 500 or status in RETRIED_STATUSES:
            raise WebhookDeliveryError(
                f"{target} answered HTTP {status}",
                event_id=event.id,
                status=status,
                retry_after_seconds=retry_after,
            )
        log.error(
            "webhook %s refused event %s (%s) with HTTP %d; not retried", target, event.id, event.kind, status
        )

    def __repr__(self) -> str:
        return f"<Webhook {where(self.url)}>"


def _retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` given in seconds (a date is not followed: the policy's backoff applies)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None
