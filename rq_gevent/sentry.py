"""Sentry for a worker you run yourself (docs/sentry.md): the documented path of
:mod:`rq_gevent.integrations.sentry`'s public names."""

from .integrations.sentry import SentrySettings, close, init_sentry

__all__ = ["SentrySettings", "close", "init_sentry"]
