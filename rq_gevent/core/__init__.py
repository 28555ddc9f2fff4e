"""The worker core: the loop, the pool, every running job and its phase, how each ends, shutdown,
commands, maintenance and the background greenlets (docs/architecture.md)."""
