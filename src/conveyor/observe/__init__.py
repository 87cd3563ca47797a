"""Watching runs without changing them: analytics over finished runs (and, in time, events and metrics)."""
