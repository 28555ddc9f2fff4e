"""A ledger for fault tests: jobs with unique ids, then an account of every one of them from Redis.

Every job ends up in exactly one line of the account:

* ``finished``;
* ``failed: <reason>`` (the last line of its stored exception: a timeout, an abandoned job, a stop, bad
  input...); a failed job without a stated reason counts as lost;
* ``pending``: queued in its queue (``pending: queued``) or only in rq's intermediate list
  (``pending: popped``, taken by a worker that has not started it), scheduled, deferred, or started
  with a live execution that rq's maintenance would reap;
* ``lost``: anything else (no job hash, queued but in no list, started but in no registry...).

Each run of a job adds a token of its own to the set ``ledger:runs:<id>`` (idempotent, so a command
redis-py resends after a dropped connection counts once), and at-least-once re-runs are counted as
``duplicates`` (jobs that ran more than once).  A run that cannot add its token (Redis unreachable or
refusing it for ``RECORD_WITHIN`` s) fails its job with ``RunNotRecorded``, and the account counts that
job as lost: an uncounted run would under-count the runs and duplicates unseen.
"""

from __future__ import annotations

import collections
import time
import uuid
from dataclasses import dataclass, field

import gevent
from redis.exceptions import ConnectionError, OutOfMemoryError, TimeoutError
from rq import Queue, get_current_job
from rq.job import Job, JobStatus
from rq.registry import DeferredJobRegistry, ScheduledJobRegistry, StartedJobRegistry

RUNS_KEY = "ledger:runs:{}"
# How long a run keeps trying to count itself: longer than any outage a fault test holds a running job
# through (the fleet's 75 s cut), shorter than rq's default job timeout (180 s), which would hide why.
RECORD_WITHIN = 120.0
NOT_RECORDED = "failed: run not recorded"


class RunNotRecorded(RuntimeError):
    """A run of ``ledger_job`` could not add its token to ``ledger:runs:<id>``."""


def runs_of(connection, job_id: str) -> int:
    """How many times ``ledger_job`` ran as job ``job_id``."""
    return connection.scard(RUNS_KEY.format(job_id))


@dataclass
class Account:
    lines: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    duplicates: int = 0
    pending: int = 0
    pending_ids: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"{count} {line}" for line, count in sorted(self.lines.items())]
        pending = f" {self.pending_ids[:5]}" if self.pending_ids else ""
        return f"{'; '.join(parts)}{pending}; duplicates {self.duplicates}; lost {len(self.lost)} {self.lost[:5]}"


class Ledger:
    def __init__(self, connection, queue_name: str = "ledger", prefix: str = "ledger"):
        self.connection = connection
        self.queue = Queue(queue_name, connection=connection)
        self.prefix = prefix
        self.job_ids: list[str] = []

    def enqueue(self, count: int, seconds: float = 0.1, **options) -> list[str]:
        """``count`` jobs of ``ledger_job(seconds)``, ids ``<prefix>-<n>``."""
        ids = self.next_ids(count)
        with self.connection.pipeline() as pipeline:
            for job_id in ids:
                self.queue.enqueue(ledger_job, seconds, job_id=job_id, pipeline=pipeline, **options)
            pipeline.execute()
        self.job_ids += ids
        return ids

    def next_ids(self, count: int) -> list[str]:
        """The ids the next ``enqueue(count)`` will give its jobs (in one MULTI)."""
        start = len(self.job_ids)
        return [f"{self.prefix}-{n:06d}" for n in range(start, start + count)]

    def account(self) -> Account:
        in_queue = set(self._list(self.queue.key))
        popped = set(self._list(self.queue.intermediate_queue_key)) - in_queue
        queued = in_queue | popped
        # cleanup=False: the ledger observes; reaping is the workers' job.
        started = set(StartedJobRegistry(queue=self.queue).get_job_ids(cleanup=False))
        waiting = set(ScheduledJobRegistry(queue=self.queue).get_job_ids(cleanup=False))
        waiting |= set(DeferredJobRegistry(queue=self.queue).get_job_ids(cleanup=False))
        lines: collections.Counter[str] = collections.Counter()
        account = Account()
        for job_id, status, runs in self._statuses_and_runs():
            line = "finished" if status == b"finished" else self._line(job_id, queued, started, waiting)
            if line == "pending: queued" and job_id in popped:
                line = "pending: popped"
            if line in ("lost", NOT_RECORDED):
                account.lost.append(self._describe(job_id, queued, started, waiting))
            elif line.startswith("pending"):
                account.pending += 1
                account.pending_ids.append(job_id)
            lines[line] += 1
            if runs > 1:
                account.duplicates += 1
        account.lines = dict(lines)
        return account

    def _statuses_and_runs(self, chunk: int = 2000):
        """(job id, stored status, runs) of every job, read in pipelined chunks (a soak has 100,000)."""
        for start in range(0, len(self.job_ids), chunk):
            ids = self.job_ids[start : start + chunk]
            with self.connection.pipeline(transaction=False) as pipeline:
                for job_id in ids:
                    pipeline.hget(f"rq:job:{job_id}", "status")
                    pipeline.scard(RUNS_KEY.format(job_id))
                replies = pipeline.execute()
            yield from zip(ids, replies[0::2], replies[1::2], strict=True)

    def _line(self, job_id: str, queued: set[str], started: set[str], waiting: set[str]) -> str:
        try:
            job = Job.fetch(job_id, connection=self.connection)
        except Exception:
            return "lost"
        status = job.get_status(refresh=False)
        if status == JobStatus.FINISHED:
            return "finished"
        if status in (JobStatus.FAILED, JobStatus.STOPPED):
            reason = _reason(job)
            return f"failed: {reason}" if reason else "lost"
        if status == JobStatus.QUEUED and job_id in queued:
            return "pending: queued"
        if status == JobStatus.STARTED and job_id in started:
            return "pending: started"
        if status in (JobStatus.SCHEDULED, JobStatus.DEFERRED) and job_id in waiting:
            return f"pending: {status}"
        return "lost"

    def _describe(self, job_id: str, queued: set[str], started: set[str], waiting: set[str]) -> str:
        """A lost job, with what Redis still knows of it."""
        fields = self.connection.hmget(f"rq:job:{job_id}", "status", "started_at", "ended_at", "worker_name")
        status, started_at, ended_at, worker = (value.decode() if value else None for value in fields)
        lists = (("queue", queued), ("started", started), ("waiting", waiting))
        places = [name for name, ids in lists if job_id in ids]
        runs = runs_of(self.connection, job_id)
        return (
            f"{job_id} (status {status}, started {started_at}, ended {ended_at}, worker {worker}, "
            f"in {places or 'nothing'}, ran {runs} times)"
        )

    def _list(self, key: str) -> list[str]:
        return [value.decode() for value in self.connection.lrange(key, 0, -1)]

    def settle(self, timeout: float) -> None:
        """Wait until every job is finished or failed (at most ``timeout`` s).

        Workers keep changing Redis meanwhile, and the ledger's reads are not one snapshot: take
        the account that counts after they have stopped.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            account = self.account()
            if account.pending == 0 and not account.lost:
                return
            gevent.sleep(0.5)


REASONS = [  # (text in the stored exception, the ledger's name for it)
    ("RunNotRecorded", NOT_RECORDED.removeprefix("failed: ")),
    ("AbandonedJobError", "abandoned"),
    ("JobTimeoutException", "timeout"),
    ("stuck in intermediate queue", "stuck in intermediate queue"),
    ("JobStopped", "stopped"),
    ("JobKilled", "killed"),
]


def _reason(job: Job) -> str:
    """Why a job failed, in a few words; empty if rq stored no reason at all."""
    result = job.latest_result()
    text = (result.exc_string if result is not None else None) or job.exc_info or ""
    for needle, name in REASONS:
        if needle in text:
            return name
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].split(":", 1)[0] if lines else ""


def ledger_job(seconds: float) -> str:
    """Count this run in ``ledger:runs:<job id>`` (this module), then wait like a network call.

    The count goes through a client of the ledger's own with a 5 s socket timeout: a job's own
    connection waits as long as under rq's worker (``worker_ttl - 5``), and an instrument must not
    hang on a dead path until the job's timeout.  The fault may be hitting this job's path to Redis
    too: it tries again until Redis takes the count, and fails the job (``RunNotRecorded``) after
    ``RECORD_WITHIN`` s rather than run uncounted."""
    job = get_current_job()
    counter = _counting_client(job.connection)
    run_token = uuid.uuid4().hex  # the same token if redis-py resends the command: one run, one member
    deadline = time.monotonic() + RECORD_WITHIN
    while True:
        try:
            counter.sadd(RUNS_KEY.format(job.id), run_token)
            break
        except (ConnectionError, TimeoutError, OutOfMemoryError) as error:  # a full Redis refuses it too
            if time.monotonic() >= deadline:
                raise RunNotRecorded(f"run {run_token} of {job.id} not counted within {RECORD_WITHIN:.0f} s") from error
            time.sleep(0.2)
    time.sleep(seconds)
    return job.id


_counting_clients: dict[int, object] = {}


def _counting_client(connection):
    key = id(connection.connection_pool)
    if key not in _counting_clients:
        from rq_gevent.plumbing.connections import client_like

        _counting_clients[key] = client_like(connection, max_connections=1000, socket_timeout=5)
    return _counting_clients[key]
