"""The benchmark harness lives in benchmarks/ at the repository's root, which is not installed: put the root
on the path (as running ``benchmarks/run.py`` from it does)."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
