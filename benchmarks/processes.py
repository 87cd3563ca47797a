"""Worker processes for the benchmarks: start them, see them up, release them together, stop them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import REPO


class WorkerGroup:
    """Worker processes sharing a ready folder and, optionally, a go file that holds them until released.

    Each worker announces itself by writing ``$BENCH_READY_DIR/<pid>`` once its workflows are imported
    (the engine's worker module does that at import time); with ``hold=True`` it then waits for the go
    file. Every process started here is stopped by :meth:`stop`, by its own pid.
    """

    def __init__(self, folder: Path, *, hold: bool = False) -> None:
        self.folder = folder
        self.ready_dir = folder / "ready"
        self.ready_dir.mkdir(parents=True, exist_ok=True)
        self.go_file = folder / "go" if hold else None
        self.processes: list[subprocess.Popen[bytes]] = []
        self.output = folder / "workers.out"

    def spawn(self, command: Sequence[str], **env: str) -> subprocess.Popen[bytes]:
        """Start one worker process running ``command`` from the repository root."""
        path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))
        environment = {**os.environ, "PYTHONPATH": path, "BENCH_READY_DIR": str(self.ready_dir), **env}
        if self.go_file is not None:
            environment["BENCH_GO_FILE"] = str(self.go_file)
        with self.output.open("ab") as output:
            process = subprocess.Popen(
                list(command), cwd=REPO, env=environment, stdout=output, stderr=subprocess.STDOUT
            )
        self.processes.append(process)
        return process

    def ready_at(self, process: subprocess.Popen[bytes]) -> float | None:
        """When ``process`` announced itself (epoch seconds), or None if it has not yet."""
        path = self.ready_dir / str(process.pid)
        try:
            return float(path.read_text())
        except (OSError, ValueError):
            return None

    def up_at(self, process: subprocess.Popen[bytes]) -> float | None:
        """When ``process`` had imported its workflows (``<pid>.up``, else its ready time), or None."""
        try:
            return float((self.ready_dir / f"{process.pid}.up").read_text())
        except (OSError, ValueError):
            return self.ready_at(process)

    def wait_ready(self, timeout: float = 60.0, processes: Sequence[subprocess.Popen[bytes]] = ()) -> None:
        """Wait until every process (or those given) announced itself; raise if one died or time ran out."""
        watched = list(processes) or self.processes
        deadline = time.monotonic() + timeout
        while True:
            if all(self.ready_at(process) is not None for process in watched):
                return
            for process in watched:
                if process.poll() is not None:
                    raise RuntimeError(f"a worker exited with {process.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not ready after {timeout} s: {self.tail()}")
            time.sleep(0.002)

    def release(self) -> float:
        """Let held workers go; return the time they were released."""
        assert self.go_file is not None
        released = time.time()
        self.go_file.write_text("go")
        return released

    def wait_exit(self, timeout: float) -> None:
        """Wait for every process to exit by itself; raise if one failed or time ran out."""
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"workers still running after {timeout} s: {self.tail()}") from None
            if process.returncode != 0:
                raise RuntimeError(f"a worker exited with {process.returncode}: {self.tail()}")

    def tail(self, characters: int = 800) -> str:
        """The end of what the workers printed."""
        try:
            return self.output.read_text(errors="replace")[-characters:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM every process still running (SIGKILL after 10 s); started here, so stopped by pid."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def python_command(*arguments: str) -> list[str]:
    """Run this interpreter (the benchmark environment's) with ``arguments``."""
    return [sys.executable, *arguments]
