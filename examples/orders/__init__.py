"""The order-processing application built on conveyor: see docs/orders.md.

Layers, each importing only those below it::

    api, chaos, demo, check,        entry points (HTTP, the demo, the check, the command line)
      __main__
    access, api_models              the API's doors: bearer tokens; strict bodies, cards tokenised
    workflows                       the composition root: one Conveyor runtime, the system its resource
    fulfilment, sagas, tutorial,    workflows (conveyor's three front ends)
      checkout.yaml + handlers
    services, relay                 the use cases, over an OrderSystem
    system                          wiring: the database and the adapters of one process
    adapters/                       database tables and the simulated providers (SQL lives here)
    domain                          orders and their lifecycle: pure, no I/O
"""
