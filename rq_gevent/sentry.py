"""Sentry for a worker you run yourself (docs/sentry.md): the documented path of the public names of
:mod:`rq_gevent.integrations.sentry`."""

from .integrations.sentry import (
    FLUSH_SECONDS,
    LoggingHttpTransport,
    SentryConfigError,
    SentrySettings,
    close,
    describe_dsn,
    init_sentry,
    report_stopped_job,
    scrubbing_for_own_client,
)

__all__ = [
    "FLUSH_SECONDS",
    "LoggingHttpTransport",
    "SentryConfigError",
    "SentrySettings",
    "close",
    "describe_dsn",
    "init_sentry",
    "report_stopped_job",
    "scrubbing_for_own_client",
]
