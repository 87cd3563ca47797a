"""Runnable examples of conveyor (``python -m examples.quickstart``)."""
