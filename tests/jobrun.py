"""Run the jobs/ functions the way production does: enqueued in Redis, done by a real worker process."""

from __future__ import annotations

from collections.abc import Callable

from conftest import WorkerProcess
from rq import Queue
from rq.job import Job

QUEUE = "jobs"
FAST_RETRIES = {"JOBS_RETRY_INTERVALS": "0,0"}  # two immediate retries: no scheduler needed


def run_burst(
    worker_process: Callable[..., WorkerProcess],
    redis_url: str,
    settings: dict[str, str],
    *extra_args: str,
    timeout: float = 60.0,
) -> WorkerProcess:
    """Work the queue until it is empty, in a real ``rq-gevent worker --burst``; returns it for its log."""
    worker = worker_process("-u", redis_url, "--burst", *extra_args, QUEUE, env={**FAST_RETRIES, **settings})
    assert worker.wait(timeout) == 0, worker.output()
    return worker


def outcome(job: Job) -> tuple[str, object]:
    """``(status, return value or the exception's last line)`` after a refresh."""
    job.refresh()
    status = job.get_status()
    if status == "failed":
        return status, (job.exc_info or "").strip().splitlines()[-1]
    return status, job.return_value()


def queue(connection) -> Queue:
    return Queue(QUEUE, connection=connection)
