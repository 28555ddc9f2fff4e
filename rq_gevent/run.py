"""Turn the command's options into a running GeventWorker.

Everything that can be checked without Redis is checked first (:func:`plan_worker`); bad configuration
raises :class:`ConfigError`, which the launcher never retries.  Only reaching Redis is left to
:func:`run_worker`, and failing to is a plain :class:`UserError` (the launcher retries it).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
import redis.sentinel
from rq import Queue
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.job import Job
from rq.logutils import setup_loghandlers
from rq.serializers import resolve_serializer
from rq.utils import import_attribute

from rq_gevent.allowlist import AllowedJobs, job_rules
from rq_gevent.options import DEFAULT_QUEUE, MAX_CONCURRENCY, ConfigError, UserError, WorkerOptions
from rq_gevent.sensitivity import SensitiveJobs
from rq_gevent.worker import DEFAULT_CONCURRENCY, GeventWorker

from .integrations.metrics import NO_METRICS, NoMetrics
from .plumbing.connections import describe, redact_url
from .plumbing.dotted import why_not_importable

if TYPE_CHECKING:
    from .integrations.sentry import SentrySettings

# Exported to jobs so that they can read their own settings from the worker's --config module.
CONFIG_MODULE_VARIABLE = "RQ_GEVENT_CONFIG"


@dataclass(frozen=True)
class WorkerPlan:
    """Everything the options and the config module decide, checked before Redis is asked anything."""

    settings: dict[str, Any]
    settings_module: str | None
    level: str
    date_format: str
    log_format: str
    sentry: SentrySettings | None
    connection_class: type[redis.Redis]
    url: str | None
    worker_class: type[GeventWorker]
    queue_names: list[str]
    worker_kwargs: dict[str, Any]
    connection_note: str = ""  # logged once logging is set up: which of two configured Redis is used


def plan_worker(options: WorkerOptions) -> WorkerPlan:
    """Check and resolve every option and setting without connecting; bad ones raise ConfigError."""
    add_paths(options.paths)
    settings = read_settings(options.config)
    url, connection_note = _redis_source(options, settings)
    connection_class = redis.Redis
    if options.connection_class:
        connection_class = _subclass("connection class", options.connection_class, redis.Redis)
    if url:
        _parse_url(connection_class, url)
    worker_class = _worker_class(options)
    if options.metrics_port:
        _require_prometheus_client()
    return WorkerPlan(
        settings=settings,
        settings_module=options.config,
        level=_logging_level(options),
        date_format=options.date_format or DEFAULT_LOGGING_DATE_FORMAT,
        log_format=_log_format(options.log_format or DEFAULT_LOGGING_FORMAT),
        sentry=sentry_settings(options, settings),
        connection_class=connection_class,
        url=url,
        worker_class=worker_class,
        queue_names=_queue_names(options, settings),
        worker_kwargs=_worker_kwargs(options, settings),
        connection_note=connection_note,
    )


def run_worker(options: WorkerOptions, before_work: Callable[[GeventWorker], None] | None = None) -> GeventWorker:
    """Build the worker the options describe and run it until it stops; returns it."""
    plan = plan_worker(options)
    setup_loghandlers(plan.level, plan.date_format, plan.log_format, name="rq.worker")
    if plan.connection_note:
        logging.getLogger("rq.worker").warning(plan.connection_note)
    metrics = _metrics(options)
    connection = connect(plan)
    worker = _build_worker(plan, connection, metrics)
    if options.pid_file:
        with open(options.pid_file, "w") as pid_file:
            pid_file.write(str(os.getpid()))
    if plan.sentry is not None:
        _start_sentry(plan.sentry, worker)
    if before_work is not None:
        before_work(worker)
    try:
        worker.work(
            burst=options.burst,
            logging_level=plan.level,
            date_format=plan.date_format,
            log_format=plan.log_format,
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
        if plan.sentry is not None:
            # Events of the last jobs, before this process exits (shutdown, recycling, burst).  The
            # worker has stopped: a stop signal now (a launcher shutting down, systemd) would only
            # kill the flush, which its own timeout already bounds.
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_IGN)
            from .integrations.sentry import close

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
        raise ConfigError(f"cannot import config module {module!r}: {type(error).__name__}: {error}") from None
    os.environ[CONFIG_MODULE_VARIABLE] = module
    return settings


def sentry_settings(options: WorkerOptions, settings: dict[str, Any]) -> SentrySettings | None:
    """Sentry's settings if a DSN is configured anywhere, else ``None``; bad ones are a ConfigError."""
    if not (options.sentry_dsn or settings.get("SENTRY_DSN")):
        return None
    try:
        from .integrations.sentry import SentryConfigError, SentrySettings
    except ImportError as error:
        raise ConfigError(f"Sentry reporting needs sentry-sdk: pip install 'rq-gevent[sentry]' ({error})") from None
    try:
        return SentrySettings.resolve(options, settings)
    except SentryConfigError as error:
        raise ConfigError(str(error)) from None


def _start_sentry(sentry: SentrySettings, worker: GeventWorker) -> None:
    from .integrations.sentry import describe_dsn, init_sentry, report_stopped_job

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


def _log_format(log_format: str) -> str:
    """``log_format`` if it formats a log record (a misspelt field would fail every log line)."""
    record = logging.LogRecord("rq.worker", logging.INFO, __file__, 0, "checking --log-format", None, None)
    try:
        logging.Formatter(log_format).format(record)
    except (ValueError, KeyError, TypeError) as error:
        problem = f"{type(error).__name__}: {error}"
        raise ConfigError(f"--log-format {log_format!r} cannot format a log line: {problem}") from None
    return log_format


def _logging_level(options: WorkerOptions) -> str:
    if options.verbose and options.quiet:
        raise ConfigError("--verbose and --quiet cannot be used together")
    if options.verbose:
        return "DEBUG"
    if options.quiet:
        return "WARNING"
    return options.logging_level.upper()


# What rq's get_redis_from_config builds a connection from, of a --config module.
_CONNECTION_SETTINGS = ("SENTINEL", "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD", "REDIS_SSL")


def _redis_source(options: WorkerOptions, settings: dict[str, Any]) -> tuple[str | None, str]:
    """The URL to connect to (None: the config module's settings), and a warning when ``-u`` beats
    the config module's own connection.  REDIS_URL in the environment beside a config module that
    names another Redis is a ConfigError: a PaaS sets it unasked, and neither should win in silence."""
    named = [key for key in _CONNECTION_SETTINGS if settings.get(key) is not None]  # None: unset, as for rq
    if not options.url or not named or (named == ["REDIS_URL"] and _same_redis(settings["REDIS_URL"], options.url)):
        return options.url or settings.get("REDIS_URL"), ""
    others = f"{', '.join(named)} in config module {options.config!r}"
    if options.url_from_environment:
        raise ConfigError(
            f"two Redis connections are configured: {options.url_from_environment} in the environment "
            f"({redact_url(options.url)}) and {others}; unset one (env -u {options.url_from_environment} "
            "rq-gevent ...), or choose with -u"
        )
    return options.url, f"Connecting to -u {redact_url(options.url)}; not to {others}"


def _same_redis(first: str, second: str) -> bool:
    """Whether two URLs name the same server, database and credentials however written."""

    def where(url: str) -> tuple:
        written = redis.Redis.from_url(url).connection_pool.connection_kwargs
        kwargs = {"host": "localhost", "port": 6379, "db": 0, **written}
        return tuple(kwargs.get(key) for key in ("path", "host", "port", "db", "username", "password"))

    try:
        return where(first) == where(second)
    except (ValueError, TypeError):
        return first == second


def _import(kind: str, dotted_path: str) -> Any:
    try:
        return import_attribute(dotted_path)
    except Exception as error:
        reason = why_not_importable(dotted_path, "; -P adds a directory") or f"{type(error).__name__}: {error}"
        raise ConfigError(f"cannot import {kind} {dotted_path!r}: {reason}") from None


def _parse_url(connection_class: type[redis.Redis], url: str) -> redis.Redis:
    try:
        return connection_class.from_url(url)  # builds a pool; connects at the first command
    except (ValueError, TypeError) as error:
        # redis-py quotes the part it could not read, which may be a piece of the password.
        reason = (
            str(error)
            if "@" not in url and "password" not in url.lower()
            else ("it does not parse (percent-encode ?, /, #, @ and % in a password)")
        )
        raise ConfigError(f"invalid Redis URL {redact_url(url)}: {reason}") from None


def connect(plan: WorkerPlan) -> redis.Redis:
    """A client for the plan's Redis that has answered a PING; ConfigError if the credentials are
    refused, UserError if it cannot be reached."""
    if plan.url:
        connection = _parse_url(plan.connection_class, plan.url)
    else:
        from rq.cli.helpers import get_redis_from_config

        # As rq: without a URL or a config module, REDIS_HOST, REDIS_PORT... from the environment.
        source = plan.settings if plan.settings_module else {key: value for key, value in os.environ.items() if value}
        try:
            connection = get_redis_from_config(source, plan.connection_class)
        except (ValueError, TypeError) as error:
            where = "the config module" if plan.settings_module else "the environment (REDIS_HOST, REDIS_PORT...)"
            raise ConfigError(f"invalid Redis settings in {where}: {error}") from None
    try:
        connection.ping()
    except (TypeError, ValueError) as error:  # a URL option or REDIS_PORT redis-py only reads when connecting
        raise ConfigError(f"invalid Redis connection settings for {describe(connection)}: {error}") from None
    except redis.exceptions.AuthenticationError:
        raise ConfigError(f"Redis at {describe(connection)} refused the credentials") from None
    except redis.sentinel.MasterNotFoundError:
        # Its message lists each Sentinel's client repr: a thousand characters for one fact.
        raise UserError(f"cannot connect to Redis at {describe(connection)}: no Sentinel named its address "
                        "(unreachable, or it knows no such master)") from None  # fmt: skip
    except redis.exceptions.RedisError as error:
        raise UserError(f"cannot connect to Redis at {describe(connection)}: {error}") from None
    return connection


def _queue_names(options: WorkerOptions, settings: dict[str, Any]) -> list[str]:
    if isinstance(settings.get("QUEUES"), str):
        raise ConfigError(f"QUEUES must be a list of queue names, not the string {settings['QUEUES']!r}")
    names = list(options.queues) or list(settings.get("QUEUES") or [DEFAULT_QUEUE])
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"queue names must be non-empty strings, got {name!r} ({type(name).__name__})")
    return names


def _concurrency(options: WorkerOptions, settings: dict[str, Any]) -> int:
    value = options.concurrency or settings.get("CONCURRENCY", DEFAULT_CONCURRENCY)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_CONCURRENCY:
        raise ConfigError(f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY:,}, got {value!r}")
    return value


def _job_rules(settings: dict[str, Any]) -> tuple[AllowedJobs, SensitiveJobs]:
    try:
        return job_rules(settings)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _worker_class(options: WorkerOptions) -> type[GeventWorker]:
    if not options.worker_class:
        return GeventWorker
    worker_class = _import("worker class", options.worker_class)
    if not (isinstance(worker_class, type) and issubclass(worker_class, GeventWorker)):
        raise ConfigError(f"worker class {options.worker_class!r} is not a subclass of rq_gevent.GeventWorker")
    return worker_class


def _subclass(kind: str, dotted_path: str, base: type) -> type:
    found = _import(kind, dotted_path)
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ConfigError(f"{kind} {dotted_path!r} is not a subclass of {base.__module__}.{base.__qualname__}")
    return found


def _worker_kwargs(options: WorkerOptions, settings: dict[str, Any]) -> dict[str, Any]:
    allowed_jobs, sensitive_jobs = _job_rules(settings)
    handlers = [_import("exception handler", path) for path in options.exception_handlers]
    for path, handler in zip(options.exception_handlers, handlers, strict=True):
        if not callable(handler):
            raise ConfigError(f"exception handler {path!r} is not callable")
    kwargs: dict[str, Any] = {
        "name": _worker_name(options, settings),
        "concurrency": _concurrency(options, settings),
        "graceful_timeout": options.graceful_timeout,
        "redis_alert_after": options.redis_alert_after,
        "allowed_jobs": allowed_jobs,
        "sensitive_jobs": sensitive_jobs,
        "job_monitoring_interval": options.job_monitoring_interval,
        "maintenance_interval": options.maintenance_interval,
        "log_job_description": not options.disable_job_desc_logging,
        "disable_default_exception_handler": options.disable_default_exception_handler,
        "exception_handlers": handlers or None,
    }
    if options.results_ttl is not None:
        kwargs["default_result_ttl"] = options.results_ttl
    if options.worker_ttl is not None:
        kwargs["worker_ttl"] = options.worker_ttl
    if options.job_class:
        kwargs["job_class"] = _subclass("job class", options.job_class, Job)
    if options.queue_class:
        kwargs["queue_class"] = _subclass("queue class", options.queue_class, Queue)
    if options.serializer:
        try:
            kwargs["serializer"] = resolve_serializer(options.serializer)
        except Exception as error:
            reason = why_not_importable(options.serializer) if "." in options.serializer else ""
            raise ConfigError(f"cannot use serializer {options.serializer!r}: {reason or error}") from None
    return kwargs


def _worker_name(options: WorkerOptions, settings: dict[str, Any]) -> str | None:
    name = options.name or settings.get("NAME")
    if name is not None and (not isinstance(name, str) or any(c.isspace() or not c.isprintable() for c in name)):
        # It is the worker's Redis client name too, which may not hold spaces (CLIENT SETNAME).
        raise ConfigError(f"worker name {name!r} must be text without spaces or control characters")
    if name and options.process_index is not None:
        return f"{name}.{options.process_index}.{os.getpid()}"
    return name


def _require_prometheus_client() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigError("--metrics-port needs prometheus_client: pip install 'rq-gevent[metrics]'") from None


def _metrics(options: WorkerOptions) -> NoMetrics:
    """Metrics on, served here (a lone worker) or by the launcher (its worker processes); or off."""
    if not options.metrics_port:
        return NO_METRICS
    from .integrations.metrics import PrometheusMetrics, address, serve

    if not options.launcher_serves_metrics:
        server = serve(options.metrics_port, options.metrics_host)
        logging.getLogger("rq.worker").info("Serving Prometheus metrics on %s", address(server))
    return PrometheusMetrics()


def _build_worker(plan: WorkerPlan, connection: redis.Redis, metrics: NoMetrics) -> GeventWorker:
    try:
        return plan.worker_class(plan.queue_names, connection=connection, metrics=metrics, **plan.worker_kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from None
