"""conveyor's benchmark suite: ``make bench`` (or ``python benchmarks/run.py``); never collected as tests."""
