"""Watching runs from the side: nothing here changes how a run executes."""
