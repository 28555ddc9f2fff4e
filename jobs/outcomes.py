"""How a job says "give up now" versus "try again later".

A permanent error (bad input, a rejection, a deployment mistake) is raised and fails the job at once:
retrying cannot help.  A transient error (network, timeouts, a server busy) becomes a returned
``rq.Retry`` with backoff, so retries are spent only where they can succeed; on the last attempt it is
raised, and the failed job carries its reason.  Jobs are therefore enqueued *without* a ``Retry``
policy.  Backoff needs a worker started ``--with-scheduler`` unless every interval is 0.
"""

from __future__ import annotations

import logging

from rq import Retry, get_current_job
from rq.job import Job

from jobs.settings import setting
from rq_gevent import public_message

DEFAULT_RETRY_INTERVALS = (10, 30, 60, 300, 900)
TRANSIENT_FAILURES_KEY = "transient_failures"  # in job.meta

log = logging.getLogger(__name__)


# Public messages: the worker shows them even for a sensitive job, whose other exceptions' messages
# (a library's, a derived secret's) it withholds (rq_gevent.sensitivity.public_message).
@public_message
class PermanentError(Exception):
    """Fail the job now.  Messages state what went wrong, never the job's secret inputs."""


@public_message
class TransientError(Exception):
    """Worth another attempt later.  Messages never carry the job's secret inputs."""


def retry_intervals() -> list[int]:
    """Seconds before each retry, from ``JOBS_RETRY_INTERVALS`` (comma-separated) or the default."""
    return setting("JOBS_RETRY_INTERVALS", list(DEFAULT_RETRY_INTERVALS), cast=_intervals)  # type: ignore[return-value]


def retry_later(error: TransientError) -> Retry:
    """The ``Retry`` to return for ``error``; raises it instead once the attempts are spent."""
    intervals = retry_intervals()
    job = get_current_job()
    attempts_done = transient_failures(job) if job is not None else len(intervals)
    if attempts_done >= len(intervals):
        raise error
    log.warning(
        "job %s: %s (attempt %d of %d); retrying in %d s",
        job.id if job is not None else "-",
        error,
        attempts_done + 1,
        len(intervals) + 1,
        intervals[attempts_done],
    )
    # Counted in the job's meta (saved with the job when rq requeues or schedules it), not from rq's
    # number_of_retries: rq 2.3.3 never increments that for a retry scheduled after an interval, so
    # such a job would retry for ever.  The one interval due now: rq picks it whatever its count.
    job.meta[TRANSIENT_FAILURES_KEY] = attempts_done + 1
    return Retry(max=len(intervals), interval=[intervals[attempts_done]])


def transient_failures(job: Job) -> int:
    """How many attempts of ``job`` ended in a transient error (and were retried)."""
    count = job.meta.get(TRANSIENT_FAILURES_KEY)
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def _intervals(raw: object) -> list[int]:
    values = [int(part) for part in (raw.split(",") if isinstance(raw, str) else raw) if str(part).strip() != ""]
    if not values or any(value < 0 for value in values):
        raise ValueError("expected a comma-separated list of non-negative seconds")
    return values
