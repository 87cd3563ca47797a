"""How often, and how long apart, a failing step is tried again."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from conveyor.errors import DefinitionError

Backoff = Literal["exponential", "linear", "fixed"]
_BACKOFFS = ("exponential", "linear", "fixed")

LONGEST_RETRY_DELAY_SECONDS = 100 * 365.25 * 86_400
"""No retry waits longer than a hundred years, cap or no cap: every delay is a finite float, and a due time
``now + delay`` stays a date (a policy may not declare longer delays)."""
_MOST_ATTEMPTS = 2**62  # attempt counts past this give the same delays (and stay exact as floats)


def seconds(value: float | timedelta | None, *, what: str) -> float | None:
    """Return ``value`` in seconds; ``what`` names the argument in the error for a negative or odd value."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DefinitionError(f"{what} must be a number of seconds or a timedelta, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise DefinitionError(f"{what} must be a finite, non-negative number of seconds, not {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, init=False)
class RetryPolicy:
    """When a failed attempt is tried again.

    ``RetryPolicy(max_retries=3, initial_delay_secs=1.0, backoff_multiplier=2.0)`` allows four attempts,
    waiting 1 s, 2 s, then 4 s between them. ``backoff`` is ``"exponential"`` (delay x multiplier each time),
    ``"linear"`` (1x, 2x, 3x the initial delay) or ``"fixed"``. ``max_delay_secs`` caps any one delay;
    ``jitter`` spreads each delay by up to that fraction either way, so that many runs failing together do
    not retry together. Errors of the types in ``non_retryable_errors`` (and any
    :class:`~conveyor.errors.NonRetryableError`) fail the step at once.
    ``max_attempts`` may be given instead of ``max_retries`` (``max_attempts = max_retries + 1``).
    """

    max_retries: int
    initial_delay_secs: float
    backoff_multiplier: float
    backoff: Backoff
    max_delay_secs: float | None
    jitter: float
    non_retryable_errors: tuple[type[BaseException], ...] = field(default=())

    def __init__(
        self,
        max_retries: int | None = None,
        initial_delay_secs: float | timedelta = 1.0,
        backoff_multiplier: float = 2.0,
        *,
        max_attempts: int | None = None,
        backoff: Backoff = "exponential",
        max_delay_secs: float | timedelta | None = None,
        jitter: float = 0.0,
        non_retryable_errors: tuple[type[BaseException], ...] | list[type[BaseException]] = (),
    ) -> None:
        if max_retries is not None and max_attempts is not None:
            raise DefinitionError("give max_retries or max_attempts, not both")
        if max_attempts is not None:
            if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
                raise DefinitionError(f"max_attempts must be an integer of at least 1, not {max_attempts!r}")
            max_retries = max_attempts - 1
        if max_retries is None:
            max_retries = 3
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise DefinitionError(f"max_retries must be a non-negative integer, not {max_retries!r}")
        if backoff not in _BACKOFFS:
            raise DefinitionError(f"backoff must be one of {', '.join(_BACKOFFS)}; got {backoff!r}")
        if initial_delay_secs is None:
            raise DefinitionError("initial_delay_secs must be a number of seconds or a timedelta, not None")
        if (
            isinstance(backoff_multiplier, bool)
            or not isinstance(backoff_multiplier, int | float)
            or not math.isfinite(backoff_multiplier)
            or backoff_multiplier < 1
        ):
            raise DefinitionError(
                f"backoff_multiplier must be at least 1 (and finite), not {backoff_multiplier!r}"
            )
        if not isinstance(jitter, int | float) or not 0 <= jitter <= 1:
            raise DefinitionError(f"jitter must be a fraction between 0 and 1, not {jitter!r}")
        errors = tuple(non_retryable_errors)
        for error in errors:
            if not (isinstance(error, type) and issubclass(error, BaseException)):
                raise DefinitionError(f"non_retryable_errors must hold exception types, not {error!r}")
        set_ = object.__setattr__
        set_(self, "max_retries", max_retries)
        set_(self, "initial_delay_secs", _delay(initial_delay_secs, what="initial_delay_secs"))
        set_(self, "backoff_multiplier", float(backoff_multiplier))
        set_(self, "backoff", backoff)
        set_(self, "max_delay_secs", _delay(max_delay_secs, what="max_delay_secs"))
        set_(self, "jitter", float(jitter))
        set_(self, "non_retryable_errors", errors)

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries: the first failure is final."""
        return cls(max_retries=0)

    @property
    def max_attempts(self) -> int:
        """How many attempts the policy allows in all."""
        return self.max_retries + 1

    def allows_retry(self, attempts_made: int, error: BaseException | None = None) -> bool:
        """Say whether another attempt may follow ``attempts_made`` failed ones (and this ``error``)."""
        if error is not None and self.non_retryable_errors and isinstance(error, self.non_retryable_errors):
            return False
        return attempts_made <= self.max_retries

    def delay_after(self, attempts_made: int, random_unit: float = 0.5) -> float:
        """Seconds to wait after the ``attempts_made``-th failure; ``random_unit`` in [0, 1) drives jitter.

        Never raises, for any attempt number: a delay that would grow past the cap (or past
        :data:`LONGEST_RETRY_DELAY_SECONDS`) is the cap.
        """
        n = min(max(attempts_made, 1), _MOST_ATTEMPTS)
        base = self.initial_delay_secs
        if self.backoff == "exponential" and base:
            try:
                delay = base * self.backoff_multiplier ** (n - 1)
            except OverflowError:  # the growth passed the largest float; so did the delay
                delay = math.inf
        elif self.backoff == "linear":
            delay = base * n
        else:
            delay = base
        cap = LONGEST_RETRY_DELAY_SECONDS if self.max_delay_secs is None else self.max_delay_secs
        delay = min(delay, cap)
        if self.jitter:
            delay = min(delay * (1.0 + self.jitter * (2.0 * random_unit - 1.0)), cap)
        return max(delay, 0.0)


def _delay(value: float | timedelta | None, *, what: str) -> float | None:
    """A retry delay in seconds, at most :data:`LONGEST_RETRY_DELAY_SECONDS`."""
    delay = seconds(value, what=what)
    if delay is not None and delay > LONGEST_RETRY_DELAY_SECONDS:
        raise DefinitionError(
            f"{what} must be at most {LONGEST_RETRY_DELAY_SECONDS:,.0f} seconds (a hundred years), "
            f"not {value!r}"
        )
    return delay


NO_RETRIES = RetryPolicy.none()
DEFAULT_COMPENSATION_RETRIES = RetryPolicy(max_retries=5, initial_delay_secs=1.0, max_delay_secs=60.0)
