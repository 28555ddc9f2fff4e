"""The main loop of ``work()``: wait for a free slot, pop as many jobs as there are free slots (and a
few ahead, :mod:`rq_gevent.core.prefetch`), admit them, until stopped, drained (burst), ``max_jobs``
admitted or idle for ``max_idle_time``.

While Redis is unavailable the loop backs off (rq's ``exponential_backoff_factor``, up to
``max_connection_wait_time`` but never more than ``MAX_BACKOFF_SECONDS``) and never exits for it; it
tries again at once when another of the worker's connections (heartbeat, command listener, outcome
writer) sees Redis answer (:meth:`WorkLoop.redis_answered`).

Any other error ending the loop is a failure, not a stop: it is logged with its traceback and as an
alert (``alerts.WORK_LOOP_DIED``), running jobs finish as in a warm shutdown, and ``work()`` raises
:class:`rq_gevent.exceptions.WorkLoopDied` (``rq-gevent worker`` exits ``WORK_LOOP_DIED_EXIT``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent.event
import redis.exceptions

from .. import alerts
from ..alerts import RedisOutage
from ..compat import StopRequested
from ..plumbing.dequeue import DEQUEUE_BATCH, Dequeuer
from ..plumbing.redis_waits import REDIS_UNAVAILABLE, Backoff, why_unavailable
from ..words import plural
from .admission import Admission
from .prefetch import MAX_WAIT, Prefetched
from .running import RunningJobs
from .suspension import Suspension

# The longest pause between two attempts of the loop while Redis is away, whatever rq's
# ``max_connection_wait_time`` says (60 s).  A host whose link returns takes jobs within 5 s: this
# pause, then the attempt's own time (a connection that was failing at that moment: up to 3 s).
MAX_BACKOFF_SECONDS = 2.0


@dataclass(frozen=True)
class WorkerSteps:
    """The worker's own steps the loop takes (rq's methods, a subclass's overrides included)."""

    stop_requested: Callable[[], bool]
    check_for_suspension: Callable[[bool], None]
    maintenance_due: Callable[[], bool]
    run_maintenance: Callable[[], None]
    execute_job: Callable[[Any, Any], None]
    dequeue_timeout: Callable[[], int]
    wait_for_redis: Callable[[Callable[[], Any], str], Any]


class WorkLoop:
    def __init__(self, name: str, log: logging.Logger, steps: WorkerSteps, jobs: RunningJobs, admission: Admission,
                 dequeuer: Dequeuer, suspension: Suspension, redis_outage: RedisOutage) -> None:  # fmt: skip
        self.name, self.log, self.steps, self.jobs, self.admission = name, log, steps, jobs, admission
        self.dequeuer, self.suspension, self.redis_outage = dequeuer, suspension, redis_outage
        self.dequeuing = False
        self.max_idle_time: int | None = None
        self.prefetched = Prefetched(limit=0)
        # ``admission.ended`` when a pop ahead found the queue empty: no other until a job ends.
        self._empty_ahead_at: int | None = None
        # Set when one of the worker's connections sees Redis answer after an outage: ends a back-off.
        self._redis_answered = gevent.event.Event()
        self.died: Exception | None = None  # the error that ended the loop, if one did

    def redis_answered(self) -> None:
        """Another connection of the worker has seen Redis answer again: try again now, not after the
        rest of the back-off."""
        self._redis_answered.set()

    def wake_pop(self) -> bool:
        """Unblock a blocking pop; False once the loop no longer pops, or if Redis refused."""
        return self.dequeuing and self.dequeuer.wake()

    def run(self, burst: bool, max_jobs: int | None, max_idle_time: int | None, *, concurrency: int,
            max_connection_wait_time: float, backoff_factor: float) -> None:  # fmt: skip
        """Dequeue until told to stop.  An error other than Redis being away ends the loop as a failure:
        logged, alerted and kept in ``died`` for ``work()`` to raise once running jobs have finished.
        While Redis is away it backs off by rq's ``backoff_factor``, up to ``max_connection_wait_time``."""
        self.max_idle_time = max_idle_time
        self.prefetched = Prefetched(limit=0 if max_jobs is not None else min(DEQUEUE_BATCH, concurrency))
        self.dequeuing = True
        try:
            ceiling = min(max_connection_wait_time, MAX_BACKOFF_SECONDS)
            self._loop(burst, max_jobs, Backoff(1.0, ceiling=ceiling, factor=backoff_factor))
        except StopRequested:
            pass
        except Exception as exc:
            self.died = exc
            self.log.error("Worker %s: unhandled exception in the work loop, stopping", self.name, exc_info=True)
            alerts.alert(alerts.WORK_LOOP_DIED, "Worker %s: its work loop died (%s); it takes no more jobs, "
                         "finishes its %s and exits with an error", self.name, type(exc).__name__,
                         plural(len(self.jobs), "running job"), worker=self.name)  # fmt: skip
        finally:
            self.dequeuing = False
            self._put_back_prefetched("the worker stops")

    def _loop(self, burst: bool, max_jobs: int | None, backoff: Backoff) -> None:
        while not self.steps.stop_requested():
            try:
                if not self._step(burst, max_jobs):
                    return
                backoff.reset()
                self.redis_outage.succeeded()
            except REDIS_UNAVAILABLE as exc:
                self.log.error("Worker %s: %s; retrying in %.0f s", self.name, why_unavailable(exc), backoff.next)
                self.redis_outage.failed(exc)
                self._redis_answered.clear()
                backoff.pause(self._redis_answered, after=exc)

    def _step(self, burst: bool, max_jobs: int | None) -> bool:
        """One turn: admit what the free slots allow.  False when the worker should stop dequeuing."""
        admission, jobs = self.admission, self.jobs
        if self.prefetched and self.suspension.is_suspended_now():
            self._put_back_prefetched("the worker is suspended")
        self.steps.check_for_suspension(burst)
        if self.steps.maintenance_due():
            self.steps.run_maintenance()
        if not self._wait_for_room():
            return False
        if max_jobs is not None and admission.admitted >= max_jobs:
            self.log.info("Worker %s: admitted %s (max_jobs), finishing them", self.name, plural(max_jobs, "job"))
            return False
        ended_before_pop = admission.ended
        ahead_only = admission.full()
        slots = admission.free_slots() + self.prefetched.wanted()
        if max_jobs is not None:
            slots = min(slots, max_jobs - admission.admitted)
        popped = self.dequeuer.pop_batch(slots) if ahead_only else self._pop(burst, slots)
        self.prefetched.ended_during_pop(admission.ended - ended_before_pop)
        if popped:
            self.prefetched.add(popped)
            self._start_prefetched()
            return True
        if ahead_only:
            self._empty_ahead_at = admission.ended
            return True
        if burst:
            # A job that ended while the pop was in flight may have requeued itself (a retry) after the
            # pop looked: only an empty pop with no job ending meanwhile proves the queues are drained.
            if not jobs and admission.ended == ended_before_pop:
                self.log.info("Worker %s: done, quitting", self.name)
                return False
            if jobs:  # else the job that ended during the pop: pop again at once
                admission.wait_for_a_job_to_end()
        elif self.max_idle_time is not None and admission.idle_for(bool(jobs)) >= self.max_idle_time:
            self.log.info("Worker %s: idle for %s, quitting", self.name, plural(self.max_idle_time, "second"))
            return False
        return True

    def _wait_for_room(self) -> bool:
        """Start jobs popped ahead as slots free, until a slot is free or a pop ahead is due; False if a
        stop was requested meanwhile."""
        admission = self.admission
        while True:
            self._start_prefetched()
            if self.steps.stop_requested():
                return False
            if not admission.full() or (self.prefetched.running_low() and self._empty_ahead_at != admission.ended):
                return True
            admission.wait_for_a_job_to_end(self.prefetched.wait_left(longest=1.0))
            if self.prefetched.waited_too_long():
                self._put_back_prefetched(f"they waited {MAX_WAIT * 1000:.0f} ms for a slot")

    def _start_prefetched(self) -> None:
        """Into free slots; none once a stop is requested (the loop's end puts them back)."""
        while self.prefetched and not self.admission.full() and not self.steps.stop_requested():
            self.steps.execute_job(*self.prefetched.take())

    def _put_back_prefetched(self, why: str) -> None:
        """Jobs popped ahead back at the front of their queue, waiting for Redis while it is away (a
        failover).  Given up by a cold shutdown, or if Redis refuses (a replica, NOREPLICAS): then they
        are left to maintenance, with a warning, and the loop (or the wait for running jobs) goes on."""
        queue, job_ids = self.prefetched.take_all()
        if not job_ids:
            return
        put_back = functools.partial(self.dequeuer.put_back, queue, job_ids)
        what = f"put {plural(len(job_ids), 'job')} popped ahead back in {queue.name}"
        try:
            back = self.steps.wait_for_redis(put_back, what)
        except redis.exceptions.RedisError as exc:
            reason = why_unavailable(exc) if isinstance(exc, REDIS_UNAVAILABLE) else f"{type(exc).__name__}: {exc}"
            self.log.warning("Worker %s: could not %s (%s); rq's maintenance requeues them", self.name, what,
                             reason)  # fmt: skip
            return
        self.log.info("Worker %s: %s popped ahead put back at the front of %s: %s", self.name,
                      plural(back, "job"), queue.name, why)  # fmt: skip

    def _pop(self, burst: bool, slots: int) -> list:
        popped = self.dequeuer.pop_batch(slots)
        if popped or self.suspension.is_suspended_now(max_age=0):
            return popped
        # Redis answered: an outage ends now (its outcomes are checked), not after a pop that may block.
        self.redis_outage.succeeded()
        timeout: int | None = None
        if not burst:
            timeout = self.steps.dequeue_timeout()
            if self.max_idle_time is not None and not self.jobs:
                idle_for = self.admission.idle_for(False)
                timeout = max(1, min(timeout, int(self.max_idle_time - idle_for) + 1))
        return self.dequeuer.pop_one(timeout)

    def became_idle(self) -> None:
        """The last running job ended: a pop armed while jobs ran lacks the idle deadline, re-arm it."""
        if self.max_idle_time is not None and self.dequeuing:
            self.dequeuer.wake()
