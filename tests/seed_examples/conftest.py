"""The examples live in examples/ at the repository's root, which is not installed: put the root on the path
(as a ``cd`` to it does for ``python -m examples.extensions.warehouse``)."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
