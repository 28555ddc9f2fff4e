"""A pytest plugin for scripts/rq_suite/run.py: the run stops before its first test unless
``sitecustomize.py`` put ``GeventWorker`` in place of rq's ``Worker`` and ``SimpleWorker``."""

import pytest
import rq
import rq.worker

from rq_gevent import GeventWorker


def pytest_sessionstart(session: pytest.Session) -> None:
    swapped = rq.Worker is GeventWorker and issubclass(rq.worker.SimpleWorker, GeventWorker)
    if not swapped or rq.worker.Worker is not GeventWorker:
        raise pytest.UsageError("rq's Worker was not swapped for GeventWorker: this run would test rq's own")
