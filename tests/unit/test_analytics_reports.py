"""The pure half of the analytics: nearest-rank percentiles, the health score's weights, and how figures a
backend computed become ranked reports."""

from __future__ import annotations

import pytest

from conveyor.core.analytics import FINAL_STATE_NAMES, RunFigures, StepFigures, nearest_rank
from conveyor.observe.analytics import (
    HEALTH_WEIGHTS,
    Window,
    bottleneck_report,
    health_score,
    performance_report,
)

WINDOW = Window(0.0, 3600.0)


def states(**counts: int) -> tuple[int, ...]:
    return tuple(counts.get(name, 0) for name in FINAL_STATE_NAMES)


def step(name: str, total: float, p95: float = 1.0, workflow: str = "w") -> StepFigures:
    return StepFigures(workflow, name, 10, 12, 2, 1, 10, total, p95 / 2, p95)


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([1.0], 0.5, 1.0),
        ([1.0, 2.0], 0.5, 1.0),
        ([1.0, 2.0, 3.0], 0.5, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 0.99, 4.0),
    ],
)
def test_nearest_rank_takes_the_value_at_rank_ceil_p_n(
    values: list[float], fraction: float, expected: float
) -> None:
    assert nearest_rank(values, fraction) == expected


def test_the_health_weights_add_up_to_one_and_a_perfect_window_scores_100() -> None:
    assert sum(HEALTH_WEIGHTS.values()) == pytest.approx(1.0)
    perfect = health_score(finished=10, completed=10, needs_attention=0, step_executions=30, retried_steps=0)
    assert perfect == pytest.approx(100.0)


def test_a_run_needing_a_person_costs_more_than_one_undone_cleanly() -> None:
    """One failed run in ten costs 8.5 points (0.60 + 0.25 of a tenth); one compensated costs 2.5."""
    failed = health_score(finished=10, completed=9, needs_attention=1, step_executions=10, retried_steps=0)
    undone = health_score(finished=10, completed=9, needs_attention=0, step_executions=10, retried_steps=0)
    retried = health_score(finished=10, completed=10, needs_attention=0, step_executions=10, retried_steps=1)
    assert (failed, undone, retried) == (pytest.approx(91.5), pytest.approx(97.5), pytest.approx(98.5))
    assert (
        health_score(finished=0, completed=0, needs_attention=0, step_executions=0, retried_steps=0) is None
    )


def test_the_performance_report_adds_up_its_workflows() -> None:
    """Totals across workflows; each workflow's rates from its own counts; sorted by name."""
    report = performance_report(
        WINDOW,
        [
            RunFigures("zeta", states(completed=3, failed=1), 1.0, 2.0, 3.0, 8, 2),
            RunFigures("alpha", states(completed=5, compensated=1), 0.5, 1.0, 1.5, 12, 0),
        ],
    )
    assert [found.workflow for found in report.workflows] == ["alpha", "zeta"]
    zeta = report.workflow("zeta")
    assert zeta is not None
    assert (zeta.finished, zeta.success_rate, zeta.failure_rate) == (4, 0.75, 0.25)
    assert zeta.first_attempt_rate == 0.75
    assert zeta.throughput_per_minute == pytest.approx(4 / 60)
    assert (report.finished, report.success_rate, report.failure_rate) == (10, 0.8, 0.1)
    assert report.health_score == pytest.approx(100 * (0.60 * 0.9 + 0.25 * 0.8 + 0.15 * 18 / 20))


def test_bottlenecks_rank_by_total_time_then_p95_with_wait_steps_last() -> None:
    """The step whose executions took longest together comes first; a ten-minute sleep does not."""
    report = bottleneck_report(
        WINDOW,
        [step("validate", 5.0), step("sleep", 600.0), step("charge", 28.0), step("ship", 5.0, p95=3.0)],
        {("w", "sleep"): True, ("w", "charge"): False},
    )
    assert [(found.rank, found.step) for found in report.steps] == [
        (1, "charge"),
        (2, "ship"),
        (3, "validate"),
        (4, "sleep"),
    ]
    charge = report.step("w", "charge")
    assert charge is not None
    assert (charge.retry_rate, charge.failure_rate, charge.retries) == (0.2, 0.1, 2)
    assert charge.duration_mean_seconds == pytest.approx(2.8)
    assert charge.share_of_time == pytest.approx(28.0 / 638.0)
    assert (charge.waits, report.step("w", "validate").waits) == (False, None)  # type: ignore[union-attr]
