"""Watching runs from the side: traces, analytics over finished runs; nothing here changes how a run
executes."""
