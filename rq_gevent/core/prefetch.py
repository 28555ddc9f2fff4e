"""Jobs popped ahead of a free slot, so that a slot that frees starts its next job at once rather than
after a pop's round trip.

* **How many:** as many as ended while the previous pop was in flight (the jobs that would have
  waited for it), at most ``DEQUEUE_BATCH``.  Jobs that run for seconds end rarely during a pop of a
  few milliseconds: then none is popped ahead, and the worker pops exactly its free slots.
* **Only with the batch pop** (one queue, Redis >= 6.2) and without ``max_jobs``.
* **Where a job waits:** where rq's own LMOVE puts it, in its queue's ``:intermediate`` list, its
  status as it was.  It goes back to the front of its queue, in order, when it has waited ``MAX_WAIT`` (slots
  that stay full), when the worker is suspended and when the loop ends (warm or cold shutdown).  A
  worker killed outright leaves it to maintenance, which requeues it (:mod:`rq_gevent.core.maintenance`).
  One cancelled, deleted or taken elsewhere meanwhile (rq's ``cancel()`` and ``delete()`` do not look in
  ``:intermediate``) is neither put back nor run (:mod:`rq_gevent.plumbing.job_writes`).
"""

from __future__ import annotations

import collections
import time
from typing import Any

# A job popped ahead waits no longer than this for a slot before it goes back to its queue: meanwhile
# ``rq info`` does not count it as queued, and no other worker can take it.
MAX_WAIT = 0.1


class Prefetched:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.level = 0
        self._jobs: collections.deque[tuple[Any, Any, float]] = collections.deque()

    def __len__(self) -> int:
        return len(self._jobs)

    def wanted(self) -> int:
        """How many to pop beyond the free slots."""
        return max(0, self.level - len(self._jobs))

    def running_low(self) -> bool:
        """Worth a pop while every slot is busy: half the level or less is left."""
        return self.level > 0 and len(self._jobs) <= self.level // 2

    def ended_during_pop(self, ended: int) -> None:
        # Down one step per pop, up at once: a burst of endings is followed by more.
        self.level = min(self.limit, max(ended, self.level - 1))

    def add(self, popped: list[tuple[Any, Any]]) -> None:
        """One pop's jobs (one pop takes from one queue), after those waiting here."""
        if self._jobs and popped and self._jobs[0][1].key != popped[0][1].key:
            raise RuntimeError(f"jobs popped ahead from two queues: {self._jobs[0][1].key}, {popped[0][1].key}")
        now = time.monotonic()
        self._jobs.extend((job, queue, now) for job, queue in popped)

    def take(self) -> tuple[Any, Any]:
        job, queue, _ = self._jobs.popleft()
        return job, queue

    def waited_too_long(self) -> bool:
        return bool(self._jobs) and time.monotonic() - self._jobs[0][2] >= MAX_WAIT

    def wait_left(self, longest: float) -> float:
        """How long the first job may still wait (``longest`` if there is none)."""
        if not self._jobs:
            return longest
        return min(longest, max(0.0, self._jobs[0][2] + MAX_WAIT - time.monotonic()))

    def take_all(self) -> tuple[Any, list[str]]:
        """``(queue, job ids in pop order)`` of every job, none left here; ``(None, [])`` if there is none.
        Jobs wait here from one queue only: more than one is popped only from a single queue, and
        one popped over several queues starts at once (into the free slot it was popped for)."""
        queue = self._jobs[0][1] if self._jobs else None
        ids = [job.id for job, _, _ in self._jobs]
        self._jobs.clear()
        return queue, ids
