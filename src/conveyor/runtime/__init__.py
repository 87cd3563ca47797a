"""The runtime: :class:`Conveyor`, the one object that owns execution, and the seed spellings over it."""

from conveyor.runtime.app import Conveyor, IfRunning
from conveyor.runtime.resources import Resources, UnknownResourceError

__all__ = ["Conveyor", "IfRunning", "Resources", "UnknownResourceError"]
