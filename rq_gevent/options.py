"""The options of ``rq-gevent worker``, typed, and the one error bad input becomes.

Imports only the standard library: the command line, the launcher and each worker process share
it.  A worker process started by the launcher receives its :class:`WorkerOptions` as JSON on its
standard input (never in argv, where a Redis password would show in ``ps``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

DEFAULT_QUEUE = "default"
# Greenlets of one process; gevent's semaphore takes a C int, and a million jobs at once per process
# is already past any Redis or memory a worker has.
MAX_CONCURRENCY = 1_000_000


class UserError(Exception):
    """Bad input or environment: printed as one line on stderr, exit code 1, no traceback."""


class ConfigError(UserError):
    """Bad configuration (an option, the config module, a class or credentials): trying again cannot
    help, so the launcher stops at the first one instead of restarting the worker process."""


@dataclass(frozen=True)
class WorkerOptions:
    """Everything ``rq-gevent worker`` was told, as its ``--help`` describes it."""

    queues: tuple[str, ...] = ()
    concurrency: int | None = None
    url: str | None = None
    # The environment variable ``url`` came from (REDIS_URL or RQ_REDIS_URL), or "" for ``-u``.
    url_from_environment: str = ""
    config: str | None = None
    paths: tuple[str, ...] = (".",)
    burst: bool = False
    name: str | None = None
    results_ttl: int | None = None
    worker_ttl: int | None = None
    job_monitoring_interval: int = 30
    maintenance_interval: int = 600
    graceful_timeout: float | None = None
    redis_alert_after: float = 60.0
    sentry_dsn: str | None = None
    sentry_environment: str | None = None
    disable_job_desc_logging: bool = False
    logging_level: str = "INFO"
    verbose: bool = False
    quiet: bool = False
    log_format: str | None = None
    date_format: str | None = None
    max_jobs: int | None = None
    max_idle_time: int | None = None
    with_scheduler: bool = False
    serializer: str | None = None
    job_class: str | None = None
    queue_class: str | None = None
    worker_class: str | None = None
    connection_class: str | None = None
    exception_handlers: tuple[str, ...] = ()
    disable_default_exception_handler: bool = False
    dequeue_strategy: str = "default"
    # The launcher's own (-n and supervision); a worker process gets them cleared.
    processes: int = 1
    hub_timeout: float | None = None
    startup_timeout: float | None = None
    max_jobs_per_child: int | None = None
    max_memory_per_child: int | None = None
    pid_file: str | None = None
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    # Set by the launcher for its worker processes: they write metrics, the launcher serves them.
    launcher_serves_metrics: bool = False
    # Set by the launcher when a worker process's max_jobs comes from --max-jobs-per-child (it is then
    # replaced) rather than from --max-jobs (it is done).
    recycle_after_max_jobs: bool = False
    # Set by the launcher for each worker process: its name (--name or the config module's NAME) gets
    # ".<index>.<pid>", so that the processes' names differ.
    process_index: int | None = None

    @classmethod
    def from_command(cls, parsed: dict[str, Any]) -> WorkerOptions:
        """From click's parsed options (its lists become tuples)."""
        return cls(**{key: tuple(value) if isinstance(value, list | tuple) else value for key, value in parsed.items()})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerOptions:
        try:
            return cls.from_command(json.loads(text))
        except (ValueError, TypeError) as error:
            raise UserError(f"unreadable worker options on standard input: {error}") from None

    def replace(self, **changes: Any) -> WorkerOptions:
        return dataclasses.replace(self, **changes)

    def for_worker_process(self) -> WorkerOptions:
        """What a worker process of the launcher (or its alert reporter) is told: no launcher options."""
        return self.replace(processes=1, hub_timeout=None, startup_timeout=None, max_jobs_per_child=None,
                            max_memory_per_child=None, pid_file=None)  # fmt: skip
