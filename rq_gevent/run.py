"""Turn the command's options into a running GeventWorker; every bad input becomes a UserError."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.logutils import setup_loghandlers
from rq.serializers import resolve_serializer
from rq.utils import import_attribute

from rq_gevent.allowlist import AllowedJobs, job_rules
from rq_gevent.connections import describe, redact_url
from rq_gevent.options import DEFAULT_QUEUE, UserError, WorkerOptions
from rq_gevent.sensitivity import SensitiveJobs
from rq_gevent.worker import DEFAULT_CONCURRENCY, GeventWorker

if TYPE_CHECKING:
    from rq_gevent.sentry import SentrySettings

# Exported to jobs so that they can read their own settings from the worker's --config module.
CONFIG_MODULE_VARIABLE = "RQ_GEVENT_CONFIG"


def run_worker(options: WorkerOptions, before_work: Callable[[GeventWorker], None] | None = None) -> GeventWorker:
    """Build the worker the options describe and run it until it stops; returns it."""
    add_paths(options.paths)
    settings = read_settings(options.config)
    level = _logging_level(options)
    date_format = options.date_format or DEFAULT_LOGGING_DATE_FORMAT
    log_format = options.log_format or DEFAULT_LOGGING_FORMAT
    setup_loghandlers(level, date_format, log_format, name="rq.worker")
    sentry = sentry_settings(options, settings)
    rules = _job_rules(settings)
    connection = _connect(options, settings)
    worker = _build_worker(options, settings, connection, rules)
    if options.pid_file:
        with open(options.pid_file, "w") as pid_file:
            pid_file.write(str(os.getpid()))
    if sentry is not None:
        _start_sentry(sentry, worker)
    if before_work is not None:
        before_work(worker)
    try:
        worker.work(
            burst=options.burst,
            logging_level=level,
            date_format=date_format,
            log_format=log_format,
            max_jobs=options.max_jobs,
            max_idle_time=options.max_idle_time,
            with_scheduler=options.with_scheduler,
            dequeue_strategy=options.dequeue_strategy,
        )
    except ValueError as error:
        # rq's register_birth: "There exists an active worker named ... already"
        raise UserError(str(error)) from None
    except redis.exceptions.ConnectionError as error:
        raise UserError(f"lost Redis at {describe(connection)} while starting: {error}") from None
    finally:
        if sentry is not None:
            # Events of the last jobs, before this process exits (shutdown, recycling, burst).  The
            # worker has stopped: a stop signal now (a launcher shutting down, systemd) would only
            # kill the flush, which its own timeout already bounds.
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_IGN)
            from rq_gevent.sentry import close

            close()
    return worker


def add_paths(paths: list[str]) -> None:
    for path in reversed(paths):
        sys.path.insert(0, path)


def read_settings(module: str | None) -> dict[str, Any]:
    """The ``--config`` module's upper-case settings (empty without one); exported to jobs too."""
    if not module:
        return {}
    from rq.cli.helpers import read_config_file  # rq's CLI package: ~50 ms of imports, needed only here

    try:
        settings = read_config_file(module)
    except Exception as error:
        raise UserError(f"cannot import config module {module!r}: {type(error).__name__}: {error}") from None
    os.environ[CONFIG_MODULE_VARIABLE] = module
    return settings


def sentry_settings(options: WorkerOptions, settings: dict[str, Any]) -> SentrySettings | None:
    """Sentry's settings if a DSN is configured anywhere, else ``None``; bad ones are a UserError."""
    if not (options.sentry_dsn or settings.get("SENTRY_DSN")):
        return None
    try:
        from rq_gevent.sentry import SentryConfigError, SentrySettings
    except ImportError as error:
        raise UserError(f"Sentry reporting needs sentry-sdk: pip install 'rq-gevent[sentry]' ({error})") from None
    try:
        return SentrySettings.resolve(options, settings)
    except SentryConfigError as error:
        raise UserError(str(error)) from None


def _start_sentry(sentry: SentrySettings, worker: GeventWorker) -> None:
    from rq_gevent.sentry import describe_dsn, init_sentry, report_stopped_job

    init_sentry(sentry, worker_name=worker.name)
    worker.push_interrupted_job_handler(report_stopped_job)
    assert sentry.dsn is not None
    worker.log.info(
        "Worker %s: reporting errors to Sentry at %s (environment %s, release %s)",
        worker.name,
        describe_dsn(sentry.dsn),
        sentry.environment or "-",
        sentry.release,
    )


def _logging_level(options: WorkerOptions) -> str:
    if options.verbose and options.quiet:
        raise UserError("--verbose and --quiet cannot be used together")
    if options.verbose:
        return "DEBUG"
    if options.quiet:
        return "WARNING"
    return options.logging_level.upper()


def _import(kind: str, dotted_path: str) -> Any:
    try:
        return import_attribute(dotted_path)
    except Exception as error:
        raise UserError(f"cannot import {kind} {dotted_path!r}: {type(error).__name__}: {error}") from None


def _connect(options: WorkerOptions, settings: dict[str, Any]) -> redis.Redis:
    connection_class = redis.Redis
    if options.connection_class:
        connection_class = _import("connection class", options.connection_class)
    url = options.url or settings.get("REDIS_URL")
    try:
        if url:
            connection = connection_class.from_url(url)
        else:
            from rq.cli.helpers import get_redis_from_config

            connection = get_redis_from_config(settings, connection_class)
    except (ValueError, TypeError) as error:
        shown = redact_url(url) if url else "from the config module"
        raise UserError(f"invalid Redis URL {shown}: {error}") from None
    try:
        connection.ping()
    except redis.exceptions.AuthenticationError:
        raise UserError(f"Redis at {describe(connection)} refused the credentials") from None
    except redis.exceptions.RedisError as error:
        raise UserError(f"cannot connect to Redis at {describe(connection)}: {error}") from None
    return connection


def _queue_names(options: WorkerOptions, settings: dict[str, Any]) -> list[str]:
    names = list(options.queues) or list(settings.get("QUEUES") or [DEFAULT_QUEUE])
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise UserError(f"queue names must be non-empty strings, got {name!r} ({type(name).__name__})")
    return names


def _concurrency(options: WorkerOptions, settings: dict[str, Any]) -> int:
    value = options.concurrency or settings.get("CONCURRENCY", DEFAULT_CONCURRENCY)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"concurrency must be a whole number of at least 1, got {value!r}")
    return value


def _job_rules(settings: dict[str, Any]) -> tuple[AllowedJobs, SensitiveJobs]:
    try:
        return job_rules(settings)
    except ValueError as error:
        raise UserError(str(error)) from None


def _build_worker(
    options: WorkerOptions, settings: dict[str, Any], connection: redis.Redis, rules: tuple[AllowedJobs, SensitiveJobs]
) -> GeventWorker:
    worker_class = GeventWorker
    if options.worker_class:
        worker_class = _import("worker class", options.worker_class)
        if not (isinstance(worker_class, type) and issubclass(worker_class, GeventWorker)):
            raise UserError(f"worker class {options.worker_class!r} is not a subclass of rq_gevent.GeventWorker")
    kwargs: dict[str, Any] = {
        "name": options.name or settings.get("NAME"),
        "connection": connection,
        "concurrency": _concurrency(options, settings),
        "graceful_timeout": options.graceful_timeout,
        "redis_alert_after": options.redis_alert_after,
        "allowed_jobs": rules[0],
        "sensitive_jobs": rules[1],
        "job_monitoring_interval": options.job_monitoring_interval,
        "maintenance_interval": options.maintenance_interval,
        "log_job_description": not options.disable_job_desc_logging,
        "disable_default_exception_handler": options.disable_default_exception_handler,
        "exception_handlers": [_import("exception handler", path) for path in options.exception_handlers] or None,
    }
    if options.results_ttl is not None:
        kwargs["default_result_ttl"] = options.results_ttl
    if options.worker_ttl is not None:
        kwargs["worker_ttl"] = options.worker_ttl
    if options.job_class:
        kwargs["job_class"] = _import("job class", options.job_class)
    if options.queue_class:
        kwargs["queue_class"] = _import("queue class", options.queue_class)
    if options.serializer:
        try:
            kwargs["serializer"] = resolve_serializer(options.serializer)
        except Exception as error:
            raise UserError(f"cannot use serializer {options.serializer!r}: {error}") from None
    try:
        return worker_class(_queue_names(options, settings), **kwargs)
    except (TypeError, ValueError) as error:
        raise UserError(str(error)) from None
