"""The worker's background greenlets share one shape: ``start()`` spawns ``run()``, ``stop()`` kills it."""

from __future__ import annotations

import gevent


class Background:
    """A loop that runs beside the worker's main loop for as long as ``work()`` runs."""

    greenlet: gevent.Greenlet | None = None

    def run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self.greenlet = gevent.spawn(self.run)

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill()
            self.greenlet = None
