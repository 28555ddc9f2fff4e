"""Sentry error monitoring for GeventWorker processes, on sentry-sdk and its rq integration.

:func:`init_sentry` runs in each worker process after gevent has patched it (the launcher's workers
are fresh interpreters, so nothing is inherited across a fork).  What it adds to sentry-sdk's
``RqIntegration`` (one event per job that finally fails, the timeout fingerprint):

* tags on every event a job's greenlet sends: ``rq.job_id``, ``rq.func``, ``rq.queue``,
  ``rq.attempt``, ``rq.outcome`` (failed, timeout, killed, stopped); ``rq.worker`` on every event;
* an event at level *warning*, ``rq.outcome: stopped``, for a job stopped with ``stop-job``;
* alerts (:mod:`rq_gevent.alerts`) tagged ``rq_gevent.alert`` and grouped per kind;
* scrubbing: no local variables, no command-line arguments (``sys.argv`` and subprocess
  breadcrumbs), no job's args or kwargs, and for sensitive jobs (:mod:`rq_gevent.sensitivity`) no description, args or
  kwargs, no exception message (its type and frames stay; a public message shows without its
  notes), and every string the job was given removed from the event's values (file names,
  function names and source lines stay whole); no exception message either for events sent while
  rq's maintenance runs jobs' failure callbacks (:mod:`rq_gevent.core.job_code_outside`);
* the same scrubbing and bounds for a client the application initialised itself
  (:func:`scrubbing_for_own_client`);
* bounds: every string of every event at most ``error_text.SENTRY_VALUE_MAX`` characters, a tag
  ``error_text.SENTRY_TAG_MAX`` (a 1 MB job id or message stays out of the payload).

Delivery runs in a background greenlet with a bounded queue: a Sentry endpoint that is down, slow
or rate-limiting drops events, never jobs.  :func:`close` waits at most ``FLUSH_SECONDS``.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sentry_sdk
from rq.timeouts import JobTimeoutException
from sentry_sdk.integrations.argv import ArgvIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.integrations.redis import RedisIntegration
from sentry_sdk.integrations.rq import RqIntegration
from sentry_sdk.transport import HttpTransport
from sentry_sdk.utils import Dsn, event_from_exception

from .. import alerts
from .._version import __version__
from ..allowlist import job_rules
from ..core import error_text, job_code_outside
from ..core.running import RunningJob, running_job
from ..exceptions import JobKilled, JobStopped
from ..sensitivity import SensitiveJobs, has_public_message
from ..words import plural
from . import scrubbing

# Longest a worker process waits at exit for queued events to be delivered.
FLUSH_SECONDS = 2.0
# Events that could not be delivered are logged at once, then summed up at most this often.
LOST_EVENTS_LOG_INTERVAL = 60.0

log = logging.getLogger("rq.worker")  # ignored by sentry-sdk's logging integration: no feedback loop

OUTCOMES: list[tuple[type[BaseException], str]] = [
    (JobTimeoutException, "timeout"),
    (JobStopped, "stopped"),
    (JobKilled, "killed"),
]


class SentryConfigError(ValueError):
    """A Sentry setting is unusable; the message never contains the DSN."""


@dataclass(frozen=True)
class SentrySettings:
    """Where and how to report: command line, then environment, then the ``--config`` module."""

    dsn: str | None = None
    environment: str | None = None
    release: str = f"rq-gevent@{__version__}"
    sensitive_jobs: SensitiveJobs = field(default_factory=SensitiveJobs)

    @classmethod
    def resolve(cls, options: Any, settings: Mapping[str, Any]) -> SentrySettings:
        """``options``: the command's (``sentry_dsn``, ``sentry_environment``); ``settings``: the config module's."""
        dsn = options.sentry_dsn or settings.get("SENTRY_DSN") or None
        if dsn is not None:
            _check_dsn(dsn)
        environment = options.sentry_environment or settings.get("SENTRY_ENVIRONMENT") or None
        release = os.environ.get("SENTRY_RELEASE") or settings.get("SENTRY_RELEASE") or cls.release
        try:
            _, sensitive_jobs = job_rules(settings)
        except ValueError as error:
            raise SentryConfigError(str(error)) from None
        for name, value in (("SENTRY_ENVIRONMENT", environment), ("SENTRY_RELEASE", release)):
            if value is not None and not isinstance(value, str):
                raise SentryConfigError(f"{name} must be a string, got {type(value).__name__}")
        return cls(dsn=dsn, environment=environment, release=release, sensitive_jobs=sensitive_jobs)


def _check_dsn(dsn: object) -> None:
    if not isinstance(dsn, str):
        raise SentryConfigError(f"the Sentry DSN must be a string, got {type(dsn).__name__}")
    try:
        Dsn(dsn)
    except ValueError as error:
        raise SentryConfigError(f"invalid Sentry DSN: {error}") from None


def describe_dsn(dsn: str) -> str:
    """Where events go, without the keys: ``https://o1.ingest.sentry.io/123``."""
    parsed = Dsn(dsn)
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path}{parsed.project_id}"


# What sentry-sdk 3 changed and we keep as 2.x has it: no local variables and no personal data in
# events (one option, data_collection, which refuses the two 2.x takes; event_from_exception now reads
# it itself); log records as breadcrumbs and ERROR records as events (logging is no longer a default
# integration, and its ``level`` now means Sentry Logs, which we do not send).
if int(sentry_sdk.VERSION.split(".")[0]) >= 3:
    # Off: what 2.x left out without send_default_pii (a job's args and kwargs: "queues"; SQL
    # parameters: "database_query_data") and what a worker has no use for.
    _NO_LOCALS_NO_PII: dict[str, Any] = {
        "data_collection": {
            "user_info": False,
            "stack_frame_variables": False,
            "queues": False,
            "database_query_data": False,
            "gen_ai": {"inputs": False, "outputs": False},
        }
    }
    _LOGGING: list[Any] = [
        LoggingIntegration(level=None, event_level=logging.ERROR, breadcrumb_level=logging.INFO)  # type: ignore[call-arg]
    ]
    _event_from_exception = event_from_exception  # reads the client's options itself
else:
    _NO_LOCALS_NO_PII = {"include_local_variables": False, "send_default_pii": False}
    _LOGGING = []

    def _event_from_exception(exc_info: Any, mechanism: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        # Without the client's options 2.x would include local variables.
        return event_from_exception(exc_info, client_options=sentry_sdk.get_client().options, mechanism=mechanism)


def init_sentry(settings: SentrySettings, worker_name: str | None = None) -> bool:
    """Start reporting to ``settings.dsn`` from this process; False (and nothing done) without a DSN."""
    if not settings.dsn:
        return False
    sentry_sdk.init(
        dsn=settings.dsn,
        environment=settings.environment,
        release=settings.release,
        integrations=[RqIntegration(), *_LOGGING],
        # argv can hold --url / --sentry-dsn credentials; a breadcrumb and span per Redis command
        # (rq's own bookkeeping, about 18 per job) costs about a fifth of a worker's throughput.
        disabled_integrations=[ArgvIntegration(), RedisIntegration()],
        **_NO_LOCALS_NO_PII,
        before_send=_Scrubber(settings.sensitive_jobs),
        shutdown_timeout=FLUSH_SECONDS,
        transport=LoggingHttpTransport,
    )
    if worker_name:
        sentry_sdk.get_global_scope().set_tag("rq.worker", worker_name)
    return True


def close(timeout: float = FLUSH_SECONDS) -> None:
    """Deliver queued events (waiting at most ``timeout`` seconds) and stop reporting.

    For a process about to exit: sentry-sdk's own exit hook would otherwise wait once more.
    """
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=timeout)


class LoggingHttpTransport(HttpTransport):
    """sentry-sdk's HTTP transport, plus a warning in the worker's log when error events are lost.

    sentry-sdk drops what it cannot send (endpoint down, rate-limited, its queue full) and says so
    only in debug mode; an operator should know that failures are going unreported.
    """

    def __init__(self, options: dict[str, Any]):
        super().__init__(options)
        self._lost: Counter[str] = Counter()
        self._logged_at = float("-inf")

    def record_lost_event(self, reason: str, data_category: Any = None, item: Any = None, *, quantity: int = 1) -> None:
        category = item.data_category if item is not None else data_category
        if category == "error":
            self._lost[reason] += 1
            if time.monotonic() - self._logged_at >= LOST_EVENTS_LOG_INTERVAL:
                self._log_lost()
        super().record_lost_event(reason, data_category, item, quantity=quantity)

    def kill(self) -> None:
        if self._lost:
            self._log_lost()
        super().kill()

    def _log_lost(self) -> None:
        reasons = ", ".join(f"{count} {reason}" for reason, count in self._lost.most_common())
        log.warning("Sentry: %s not delivered (%s)", plural(sum(self._lost.values()), "error event"), reasons)
        self._lost.clear()
        self._logged_at = time.monotonic()


def report_stopped_job(job: Any, *exc_info: Any) -> None:
    """A :meth:`GeventWorker.push_interrupted_job_handler` handler: an event at level warning for a
    job stopped with ``stop-job``, which rq (and so ``RqIntegration``) treats as no error."""
    if len(exc_info) > 1 and isinstance(exc_info[1], JobStopped) and sentry_sdk.get_client().is_active():
        _capture_stopped(job, exc_info)


def _capture_stopped(job: Any, exc_info: Any) -> None:
    event, hint = _event_from_exception(tuple(exc_info), mechanism={"type": "rq", "handled": True})
    event["level"] = "warning"
    event["fingerprint"] = ["rq-gevent", "stopped", job.func_name]
    sentry_sdk.capture_event(event, hint=hint)


class _Scrubber:
    """``before_send``: runs after every event processor, so it sees what ``RqIntegration`` added."""

    def __init__(self, sensitive: SensitiveJobs):
        self.sensitive = sensitive

    def __call__(self, event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        scrubbing.trim_subprocess_breadcrumbs(event)
        scrubbing.filter_job_arguments(event)
        _tag_alert(event)
        running = running_job()
        if running is not None:
            _tag_job(event, hint, running)
            if running.sensitive or self.sensitive(running.job):
                event = _scrub_sensitive(event, hint, running.job)
        elif _outside_jobs_withheld(hint):
            scrubbing.withhold_exception_messages(event, error_text.WITHHELD, [])
        return _bounded(event)


def scrubbing_for_own_client() -> Callable[[], None] | None:
    """For a Sentry client the application initialised itself (``sentry_sdk.init`` in its ``--config``
    module, as rq users do, without this module's ``before_send``): a function that, called in a
    job's greenlet once sentry-sdk's rq integration has opened the job's scope, gives that scope the
    same scrubbing of sensitive jobs and the same bounds.  ``None`` without such a client."""
    client = sentry_sdk.get_client()
    if not client.is_active() or isinstance(client.options.get("before_send"), _Scrubber):
        return None
    return _scrub_this_jobs_events


def _scrub_this_jobs_events() -> None:
    # The job's own scope: its processors run after the rq integration's (which adds the description).
    sentry_sdk.get_current_scope().add_event_processor(_scrubbed)


def _scrubbed(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    scrubbing.trim_subprocess_breadcrumbs(event)
    running = running_job()
    if running is not None and running.sensitive:
        event = _scrub_sensitive(event, hint, running.job)
    elif running is None and _outside_jobs_withheld(hint):
        scrubbing.withhold_exception_messages(event, error_text.WITHHELD, [])
    return _bounded(event)


def _outside_jobs_withheld(hint: dict[str, Any]) -> bool:
    """An event sent outside any job while rq's maintenance runs jobs' callbacks, or about an
    exception withheld before (rq_gevent.core.job_code_outside): no exception message."""
    exception = (hint.get("exc_info") or (None, None, None))[1]
    return job_code_outside.in_rq_maintenance() or job_code_outside.is_withheld(exception)


def _scrub_sensitive(event: dict[str, Any], hint: dict[str, Any], job: Any) -> dict[str, Any]:
    """No argument, no local variable, no exception message (unless marked public); every string the
    job was given replaced wherever else it shows (a breadcrumb, a log message)."""
    scrubbing.filter_job_extra(event)
    scrubbing.strip_frame_variables(event)
    given = list(_given_strings(job))
    event = scrubbing.redact(event, given)
    exception = (hint.get("exc_info") or (None, None, None))[1]
    scrubbing.withhold_exception_messages(event, error_text.WITHHELD, _public_messages(exception, given))
    return event


def _public_messages(exception: BaseException | None, given: list[str]) -> list[tuple[str, str | None]]:
    """``(type name, public message)`` of each exception of the chain, the message without its notes
    and scrubbed of the job's strings; ``None`` for a message that is not public."""
    if exception is None:
        return []
    return [
        (
            type(error).__name__,
            scrubbing.redact(error_text.public_text(error), given) if has_public_message(error) else None,
        )
        for _, error in error_text.chain(exception)
    ]


def _bounded(event: dict[str, Any]) -> dict[str, Any]:
    """Every string at most ``SENTRY_VALUE_MAX`` characters, a tag's value ``SENTRY_TAG_MAX``."""
    tags = event.get("tags")
    if isinstance(tags, dict):
        event["tags"] = {key: error_text.cap(str(value), error_text.SENTRY_TAG_MAX) for key, value in tags.items()}
    return scrubbing.cap_strings(event, error_text.SENTRY_VALUE_MAX)


def _given_strings(job: Any) -> Iterable[str]:
    try:
        return scrubbing.secret_strings(job.args, job.kwargs, job.description)
    except Exception:  # cannot deserialize: nothing of it reached the event through the job either
        return scrubbing.secret_strings(job.description)


def _tag_job(event: dict[str, Any], hint: dict[str, Any], running: RunningJob) -> None:
    job = running.job
    tags = event.setdefault("tags", {})
    tags["rq.job_id"] = job.id
    tags["rq.queue"] = running.queue.name
    tags["rq.attempt"] = str(running.attempt)
    try:
        tags["rq.func"] = job.func_name
    except Exception:
        tags["rq.func"] = "<cannot deserialize>"
    if _ends_the_job(event):
        exception = hint.get("exc_info", (None, None))[1]
        tags["rq.outcome"] = next((name for kind, name in OUTCOMES if isinstance(exception, kind)), "failed")


def _ends_the_job(event: dict[str, Any]) -> bool:
    """Captured by the rq integrations when the job ended, not by the job's own code or logging."""
    values = (event.get("exception") or {}).get("values") or []
    return bool(values) and (values[-1].get("mechanism") or {}).get("type") == "rq"


def _tag_alert(event: dict[str, Any]) -> None:
    extra = event.get("extra") or {}
    kind = extra.get("alert")
    if event.get("logger") != alerts.LOGGER_NAME or not isinstance(kind, str):
        return
    event.setdefault("tags", {})["rq_gevent.alert"] = kind
    event["fingerprint"] = ["rq-gevent", "alert", kind]
