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

from jobs.settings import setting

DEFAULT_RETRY_INTERVALS = (10, 30, 60, 300, 900)

log = logging.getLogger(__name__)


class PermanentError(Exception):
    """Fail the job now.  Messages state what went wrong, never the job's secret inputs."""


class TransientError(Exception):
    """Worth another attempt later.  Messages never carry the job's secret inputs."""


def retry_intervals() -> list[int]:
    """Seconds before each retry, from ``JOBS_RETRY_INTERVALS`` (comma-separated) or the default."""
    return setting("JOBS_RETRY_INTERVALS", list(DEFAULT_RETRY_INTERVALS), cast=_intervals)  # type: ignore[return-value]


def retry_later(error: TransientError) -> Retry:
    """The ``Retry`` to return for ``error``; raises it instead once the attempts are spent."""
    intervals = retry_intervals()
    job = get_current_job()
    attempts_done = (job.number_of_retries or 0) if job is not None else len(intervals)
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
    return Retry(max=len(intervals), interval=intervals)


def _intervals(raw: object) -> list[int]:
    values = [int(part) for part in (raw.split(",") if isinstance(raw, str) else raw) if str(part).strip() != ""]
    if not values or any(value < 0 for value in values):
        raise ValueError("expected a comma-separated list of non-negative seconds")
    return values
