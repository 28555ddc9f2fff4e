"""The bounded pool: how many jobs run at once, and waking the loop as soon as a slot frees.

A slot is a job's from its admission until its outcome is to be recorded: the next job takes it
while Redis's reply to that outcome is awaited (as Dramatiq's workers hand a message's ack to its
consumer), unless as many jobs are recording their outcome already as there are slots.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.pool
from greenlet import greenlet as Greenlet


class Admission:
    def __init__(self, concurrency: int) -> None:
        self.pool = gevent.pool.Pool(concurrency)
        self.recording = gevent.pool.Group()  # greenlets out of the pool, recording their job's outcome
        self.job_ended = gevent.event.Event()
        self.admitted = 0
        self.ended = 0
        self.idle_since = time.monotonic()

    def start_counting(self) -> None:
        """Each ``work()`` call counts its own jobs (``max_jobs``, the burst return value, idle time)."""
        self.admitted = 0
        self.ended = 0
        self.idle_since = time.monotonic()

    def free_slots(self) -> int:
        return self.pool.free_count()

    def full(self) -> bool:
        return self.pool.full()

    def spawn(self, run: Callable[..., Any], *args: Any) -> Greenlet:
        """Run ``run(*args)`` in a greenlet of the pool (a slot must be free)."""
        self.admitted += 1
        greenlet = self.pool.spawn(run, *args)
        # The pool frees the slot in a link of its own, run after the greenlet exits: a wake-up from
        # inside the greenlet would find the pool still full.  This link runs after the pool's.
        greenlet.rawlink(self._slot_freed)
        return greenlet

    def ended_one(self, now_idle: bool) -> None:
        """Called at the very end of a job's greenlet."""
        self.ended += 1
        if now_idle:
            self.idle_since = time.monotonic()

    def outcome_to_record(self, greenlet: Greenlet) -> None:
        """``greenlet``'s job is over but for recording its outcome: its slot goes to the next job."""
        if greenlet in self.pool and len(self.recording) < self.pool.size:
            self.pool.discard(greenlet)
            self.recording.add(greenlet)
            self.job_ended.set()

    def _slot_freed(self, _greenlet: Greenlet) -> None:
        self.job_ended.set()

    def wait_for_a_job_to_end(self, timeout: float = 1.0) -> bool:
        """False if none ended within ``timeout``."""
        self.job_ended.clear()
        return self.job_ended.wait(timeout)

    def idle_for(self, running: bool) -> float:
        return 0.0 if running else time.monotonic() - self.idle_since

    def join(self, timeout: float) -> None:
        gevent.joinall([*self.pool, *self.recording], timeout=timeout)
