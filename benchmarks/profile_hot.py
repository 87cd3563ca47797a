"""Profiles conveyor's hottest paths (sequential in memory and on SQLite FULL, fork/join in memory).

``python -m benchmarks.profile_hot loop BACKEND SECONDS [SHAPE]`` runs a workload for that long;
the ``profile`` measurement samples such a process with ``py-spy record --native`` (so that time in C, such
as SQLite's commit and its fsync, is seen too) and reduces the samples to the top functions by own time
and by inclusive time, and own time by module. Falls back to pyinstrument when py-spy cannot attach.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks.common import REPO, order, remove_sqlite, scratch_dir

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
TOP = 12
ROOT = "run_durable_workflow"


def loop(backend: str, seconds: float, shape: str = "seq") -> None:
    """Run the ``shape`` workload on ``backend`` (memory or sqlite-full) for ``seconds``."""
    from benchmarks.engines.conveyor_app import FJ, SEQ
    from conveyor import InMemoryBackend, SqliteBackend, run_durable_workflow

    with scratch_dir("profile") as folder:
        path = folder / "profile.db"
        remove_sqlite(path)
        target = InMemoryBackend() if backend == "memory" else SqliteBackend(path)
        inputs = [order(number) for number in range(1000)]
        deadline = time.perf_counter() + seconds
        number = 0
        while time.perf_counter() < deadline:
            for _ in range(100):
                run_durable_workflow(
                    SEQ if shape == "seq" else FJ, f"p{number}", inputs[number % 1000], target
                )
                number += 1
        target.close()
        print(f"ran {number} workflows", file=sys.stderr)


def _name(frame: str) -> tuple[str, str]:
    """``(function, where)`` of a py-spy frame: where is the module file, or the native library."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), "?"
    where = match.group("file")
    if "site-packages/" in where:
        where = where.split("site-packages/", 1)[1]
    elif "/src/" in where:
        where = where.split("/src/", 1)[1]
    elif "/lib/python3" in where:
        where = "stdlib/" + where.split("/lib/python3", 1)[1].split("/", 1)[-1]
    return match.group("function"), where


def summarize(stacks: dict[str, int], within: str = ROOT) -> dict:
    """Top functions by own and inclusive share, and own share by module, from collapsed stacks.

    Only samples taken inside ``within`` count (the engine's entry point), so start-up and the harness's
    own loop are left out; shares are of those samples.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    total = 0
    for stack, count in stacks.items():
        frames = [_name(frame) for frame in stack.split(";") if frame]
        if not any(function == within for function, _ in frames):
            continue
        total += count
        function, where = frames[-1]
        own[f"{function} ({where})"] += count
        modules[_module(where)] += count
        for label in {f"{f} ({w})" for f, w in frames if w.endswith(".py")}:
            inclusive[label] += count
    total = max(total, 1)

    def share(counter: Counter[str], limit: int = TOP) -> list[list[object]]:
        return [[label, round(100 * count / total, 1)] for label, count in counter.most_common(limit)]

    return {"samples": total, "own": share(own), "inclusive": share(inclusive, 25), "modules": share(modules)}


def _module(where: str) -> str:
    if where.startswith("<frozen"):
        return "stdlib." + where.strip("<>").removeprefix("frozen ")
    if where.endswith(".py"):
        return where.removesuffix(".py").replace("/", ".")
    return f"native: {Path(where).name}"


def _py_spy(backend: str, seconds: float, shape: str) -> dict:
    executable = Path(sys.executable).with_name("py-spy")
    spy = str(executable) if executable.exists() else shutil.which("py-spy")
    if spy is None:
        raise RuntimeError("py-spy is not installed")
    with scratch_dir("py-spy") as folder:
        output = folder / "stacks.txt"
        command = [spy, "record", "--native", "--function", "-r", "400", "-f", "raw", "-o", str(output), "--"]
        command += [sys.executable, "-m", "benchmarks.profile_hot", "loop", backend, str(seconds), shape]
        subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
        stacks: dict[str, int] = {}
        for line in output.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                stacks[stack] = stacks.get(stack, 0) + int(count)
    return {"tool": "py-spy --native", **summarize(stacks)}


def _pyinstrument(backend: str, seconds: float, shape: str) -> dict:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    loop(backend, seconds, shape)
    profiler.stop()
    stacks: dict[str, int] = {}

    def walk(frame: object, path: str) -> None:
        label = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"  # type: ignore[attr-defined]
        here = f"{path};{label}" if path else label
        children = frame.children  # type: ignore[attr-defined]
        own = frame.time - sum(child.time for child in children)  # type: ignore[attr-defined]
        if own > 0:
            stacks[here] = stacks.get(here, 0) + round(own * 1e6)
        for child in children:
            walk(child, here)

    walk(profiler.last_session.root_frame(), "")  # type: ignore[union-attr]
    return {"tool": "pyinstrument", **summarize(stacks)}


def profile(backend: str, seconds: float = 8.0, shape: str = "seq") -> dict:
    """Profile the ``shape`` workload on ``backend`` for ``seconds``."""
    try:
        return _py_spy(backend, seconds, shape)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        result = _pyinstrument(backend, seconds, shape)
        result["py_spy_error"] = str(exc)[-300:]
        return result


MEASUREMENTS = {"profile": profile}

if __name__ == "__main__":
    if sys.argv[1] == "loop":
        loop(sys.argv[2], float(sys.argv[3]), *sys.argv[4:5])
