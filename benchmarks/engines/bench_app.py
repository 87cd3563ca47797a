"""The runtime ``conveyor serve`` serves in the ``api`` group (``--app benchmarks.engines.bench_app:app``):
no workflows of its own, its backend given by ``--backend``."""

from conveyor import Conveyor

app = Conveyor()
