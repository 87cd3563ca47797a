"""Seed 003's suggested extensions of its tutorial, and seed 000's cancellation reactor, as runnable code.

Each module runs on its own (``python -m examples.extensions.warehouse``) in memory, or on any backend
given to its ``main``; ``docs/examples.md`` walks through them and ``tests/examples`` runs each.
"""
