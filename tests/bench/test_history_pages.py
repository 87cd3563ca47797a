"""``benchmarks/history_pages.py``: the pages it counts tell the layouts apart, and the history's switch."""

from __future__ import annotations

from benchmarks import history_pages


def test_conveyor_with_the_history_off_writes_fewer_pages_per_run_than_with_it_on() -> None:
    """History off writes no event rows, so each run's commits write fewer WAL pages (a count, not a time)."""
    off = history_pages.conveyor_cell("off", 60, "NORMAL")
    on = history_pages.conveyor_cell("on", 60, "NORMAL")
    assert 0 < off["frames_per_run"] < on["frames_per_run"]
    assert off["kb_written_per_run"] < on["kb_written_per_run"]


def test_a_per_run_index_of_events_costs_pages_beyond_the_event_rows_themselves() -> None:
    """The replays order as measured: no history < events in the run's row < event rows < rows and index."""
    frames = {
        layout: history_pages.replayed(layout, 60, "NORMAL")["frames_per_run"]
        for layout in history_pages.LAYOUTS
    }
    assert frames["none"] < frames["in the run row, no feed"] < frames["event rows, no run index"]
    assert frames["event rows, no run index"] < frames["event rows"]


def test_a_worker_sharing_commits_writes_fewer_pages_per_run_than_one_client() -> None:
    """A worker's checkpoints share commits (a batch per claim round), so each run costs fewer pages."""
    worker = history_pages.worker_cell("on", 60, "NORMAL")
    one_client = history_pages.conveyor_cell("on", 60, "NORMAL")
    assert 0 < worker["frames_per_run"] < one_client["frames_per_run"]
