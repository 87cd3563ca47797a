"""The runtime: :class:`Conveyor`, the one object that owns execution, and the seed spellings over it."""

from conveyor.errors import UnknownResourceError
from conveyor.runtime.app import Conveyor, IfRunning
from conveyor.runtime.resources import Resources

__all__ = ["Conveyor", "IfRunning", "Resources", "UnknownResourceError"]
