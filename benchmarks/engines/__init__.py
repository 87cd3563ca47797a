"""One adapter per engine: each runs the shared workloads the way that engine is meant to be used."""
