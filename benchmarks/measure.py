"""Runs one measurement and prints its result: ``python -m benchmarks.measure MODULE NAME JSON``.

The harness starts one such process per measurement, so that no engine's singletons, pools or caches
leak from one workload into the next.
"""

from __future__ import annotations

import importlib
import json
import sys

from benchmarks.common import emit, error_result


def main(argv: list[str]) -> int:
    """Run measurement ``argv[1]`` of module ``argv[0]`` with the JSON keyword arguments ``argv[2]``."""
    engine, name, arguments = argv[0], argv[1], json.loads(argv[2] if len(argv) > 2 else "{}")
    try:
        module = importlib.import_module(f"benchmarks.{engine}")
        result = module.MEASUREMENTS[name](**arguments)
    except Exception as exc:
        emit(error_result(exc))
        raise
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
