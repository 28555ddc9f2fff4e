"""Taking jobs off the worker's queues, on a Redis client of its own.

* **Up to ``DEQUEUE_BATCH`` jobs per round trip** (one queue, Redis >= 6.2, ``scripted``: on the rq
  releases CI tests; else each pop is rq's own LMOVE or LPOP, one job at a time): a script moves ids from
  the queue to rq's ``:intermediate`` list, as rq's own LMOVE does, and returns each job's hash with
  it.  Blocking is used only when the queues are empty.
* **A lost reply loses no job** (one queue, ``scripted``).  An idle worker blocks in ``BLMOVE q q LEFT LEFT``, which
  waits for an id and puts it straight back where it was, then takes it with the script.  A blocking
  pop into ``:intermediate`` whose reply died on a silent path (a NAT that forgot the connection)
  would leave the id there until rq's maintenance requeues it, up to ``maintenance_interval`` plus a
  minute later; here it stays in the queue for the next pop.  The script itself leaves a receipt
  (a list, ``rq-gevent:pop:<worker>``: the pop's token and the ids it moved), and the worker sends the same
  token again until a reply comes: a pop that ran but whose reply was lost (a dropped connection,
  a failover) answers the second time with the ids it took that still wait to start.  Over several
  queues rq's BLPOP is used, with rq's own exposure to a lost reply.
* The blocking pop has a client of its own (:func:`rq_gevent.plumbing.connections.dequeue_client`), so that a
  long block holds no pool connection, and a shutdown can wake it with ``CLIENT UNBLOCK``.
* Bad input never stops the worker: an id whose job was deleted is skipped, an id whose key is not a
  hash is dropped (logged), a job hash rq cannot load goes to the failed registry, a queue whose keys
  hold the wrong type is skipped for a while (:mod:`rq_gevent.core.bad_queues`) and the others are popped.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import gevent.event
import redis.exceptions
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.utils import as_text, get_version

from .. import compat
from ..core.bad_queues import BadQueues
from . import lua
from .connections import dequeue_client, unblock_clients

# At most this many jobs are taken per dequeue round trip (never more than the free slots).
DEQUEUE_BATCH = 20

# How long a pop's receipt is kept for the pop to be asked again (a worker asks as soon as Redis
# answers; a receipt that expired leaves its ids to rq's maintenance).
RECEIPT_SECONDS = 3600

_POP_WITH_HASHES = lua.load("pop")
_PUT_BACK = lua.load("put_back")


class Dequeuer:
    """Pops from the worker's queues: ``queues()`` gives them in rq's dequeue-strategy order and
    ``popped_from(queue)`` is rq's ``reorder_queues``; ``server_version()`` is rq's (each popped job
    carries it); ``describe(job)`` tells whether a job's description may be logged; ``redis_down()``
    whether the worker sees Redis away."""

    def __init__(self, connection: Any, name: str, log: logging.Logger, *, job_class: Any, queue_class: Any,
                 serializer: Any, queues: Callable[[], list[Any]], popped_from: Callable[[Any], None],
                 server_version: Callable[[], Any], describe: Callable[[Any], bool], redis_down: Callable[[], bool],
                 bad_queue_skip_seconds: float, scripted: bool) -> None:  # fmt: skip
        self.connection, self.name, self.log = connection, name, log
        self.job_class, self.queue_class, self.serializer = job_class, queue_class, serializer
        self._queues_in_order, self._popped_from, self._server_version = queues, popped_from, server_version
        self._describe, self._redis_down = describe, redis_down
        self.scripted = scripted  # batched pops by lua/pop.lua (else one at a time, by rq's Queue methods)
        self.client: Any = None
        self._pop_script: Any = None
        self._put_back_script: Any = None
        # The token of the pop in flight, sent again until a reply comes (see the module's docstring).
        self._pop_token: str | None = None
        self._pops = itertools.count()
        self._process_token = uuid.uuid4().hex[:12]
        self._receipt_written = False
        self.bad_queues = BadQueues(name, log, bad_queue_skip_seconds)
        self._woken = gevent.event.Event()  # wakes a pop that waits for a skipped queue's next look

    @property
    def receipt_key(self) -> str:
        return f"rq-gevent:pop:{self.name}"

    @property
    def client_name(self) -> str:
        return f"{self.name}:dequeue"

    def open(self, socket_timeout: float) -> None:
        self.client = dequeue_client(self.connection, self.client_name, socket_timeout)

    def close(self) -> None:
        """Closes the pop's client, deleting the worker's pop receipt first unless Redis is away (it then
        expires).  Ids of a pop whose reply never came are left to rq's maintenance."""
        if self.client is None:
            return
        if self._receipt_written and not self._redis_down():
            try:
                self.client.delete(self.receipt_key)
            except redis.exceptions.RedisError as exc:
                self.log.warning("Worker %s: could not delete %s (%s); it expires", self.name, self.receipt_key,
                                 exc)  # fmt: skip
        self.client.close()

    def wake(self) -> bool:
        """Wake a blocked pop as if it had timed out; False if Redis refused (it then ends at its timeout)."""
        self._woken.set()
        return unblock_clients(self.connection, self.client_name)

    def queues(self) -> list[Any]:
        """The queues to pop from now, in the dequeue strategy's order: not those skipped as bad."""
        return self.bad_queues.usable(self._queues_in_order())

    def pop_one(self, timeout: int | None) -> list[tuple[Any, Any]]:
        """One job, blocking up to ``timeout`` seconds (``None``: not at all); empty if none came."""
        while True:
            if not self.queues():
                self._wait_for_a_queue(timeout)
                return []
            try:
                return self._pop_one(timeout)
            except redis.exceptions.ResponseError:
                if not self.bad_queues.skip_any_found(self.connection, self.queues()):
                    raise

    def pop_batch(self, slots: int) -> list[tuple[Any, Any]]:
        """Non-blocking: up to ``slots`` (at most ``DEQUEUE_BATCH``) jobs with their hashes, one round trip."""
        while True:
            try:
                return self._pop_batch(slots)
            except redis.exceptions.ResponseError:
                if not self.bad_queues.skip_any_found(self.connection, self.queues()):
                    raise

    def _wait_for_a_queue(self, timeout: int | None) -> None:
        """Every queue is skipped as bad: wait (``timeout`` at most) for the first to be looked at again,
        or for :meth:`wake`.  The worker keeps running: bad input is no reason to exit."""
        if timeout is None:
            return
        next_look = self.bad_queues.seconds_to_next_look()
        self._woken.clear()
        self._woken.wait(timeout if next_look is None else min(timeout, next_look))

    def _pop_one(self, timeout: int | None) -> list[tuple[Any, Any]]:
        if self._batched():
            return self._wait_then_take_one(timeout)
        while True:
            popped_id = self._pop_job_id(timeout)
            if popped_id is None:
                return []
            queue, job_id = popped_id
            job = self._fetch_popped_job(queue, job_id)
            if job is not None:
                return [self._admitting(job, queue)]

    def _pop_batch(self, slots: int) -> list[tuple[Any, Any]]:
        if not self._batched():
            return []
        queue = self.queues()[0]
        admitted = []
        for job_id, fields in self._pop_with_hashes(queue, min(slots, DEQUEUE_BATCH)):
            job = self._load_popped_job(queue, job_id, fields)
            if job is not None:
                admitted.append(self._admitting(job, queue))
        return admitted

    def put_back(self, queue: Any, job_ids: list[str]) -> int:
        """Popped jobs that never started, back at the front of ``queue`` in their order (those still in
        its intermediate list and not withdrawn); returns how many."""
        if self._put_back_script is None:
            self._put_back_script = self.connection.register_script(_PUT_BACK.source)
        keys = [queue.key, queue.intermediate_queue_key]
        prefix = self.job_class.redis_job_namespace_prefix
        return int(self._put_back_script(keys=keys, args=[prefix, *job_ids], client=self.connection))

    def _wait_then_take_one(self, timeout: int | None) -> list[tuple[Any, Any]]:
        queue = self.queues()[0]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # One job, or those of an earlier pop whose reply was lost (no more than its free slots).
            admitted = []
            for job_id, fields in self._pop_with_hashes(queue, 1):
                job = self._load_popped_job(queue, job_id, fields)
                if job is not None:
                    admitted.append(self._admitting(job, queue))
            if admitted:
                return admitted
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is None or remaining < 1:
                return []
            # Returns the id it saw, left in place; None at the timeout.  Its reply may be lost: nothing moved.
            if self.client.blmove(queue.key, queue.key, int(remaining), "LEFT", "LEFT") is None:
                return []

    def _batched(self) -> bool:
        """Pops by ``lua/pop.lua``: several at once, each with its hash, a lost reply asked again."""
        return self.scripted and self._single_queue_lmove()

    def _single_queue_lmove(self) -> bool:
        return len(self.queues()) == 1 and get_version(self.connection) >= (6, 2, 0)

    def _pop_with_hashes(self, queue: Any, count: int) -> Iterator[tuple[str, dict[bytes, bytes] | None]]:
        """Move up to ``count`` ids from ``queue`` to its ``:intermediate`` list, with each job's hash
        (empty if the job was deleted, ``None`` if its key is not a hash), in one round trip.  After a
        pop whose reply was lost, its ids instead (at most the ``count`` it was asked for: the free
        slots only grow while no job is admitted)."""
        if self._pop_script is None:
            self._pop_script = self.connection.register_script(_POP_WITH_HASHES.source)
        prefix = self.job_class.redis_job_namespace_prefix
        if self._pop_token is None:
            self._pop_token = f"{self._process_token}:{next(self._pops)}"
        keys = [queue.key, queue.intermediate_queue_key, self.receipt_key]
        self._receipt_written = True
        args = [count, prefix, self._pop_token, RECEIPT_SECONDS]
        try:
            popped = self._pop_script(keys=keys, args=args, client=self.client)
        except redis.exceptions.ResponseError:
            self._pop_token = None  # a reply, an error: nothing to ask again
            raise
        self._pop_token = None
        for index in range(0, len(popped), 2):
            fields = popped[index + 1]
            yield popped[index].decode(), None if fields is None else dict(zip(fields[::2], fields[1::2], strict=True))

    def _admitting(self, job: Any, queue: Any) -> tuple[Any, Any]:
        self._popped_from(queue)
        job.redis_server_version = self._server_version()
        if self._describe(job):
            self.log.info("Worker %s: %s: %s (%s)", self.name, queue.name, job.description, job.id)
        else:
            self.log.info("Worker %s: %s: %s", self.name, queue.name, job.id)
        return job, queue

    def _pop_job_id(self, timeout: int | None) -> tuple[Any, str] | None:
        """(B)LMOVE into ``:intermediate`` (one queue, Redis >= 6.2) or (B)LPOP; ``timeout`` None: no block."""
        queue_keys = [queue.key for queue in self.queues()]
        try:
            if self._single_queue_lmove():
                popped = self.queue_class.lmove(self.client, queue_keys[0], timeout)
            else:
                popped = self.queue_class.lpop(queue_keys, timeout, connection=self.client)
        except DequeueTimeout:
            return None
        if popped is None:
            return None
        queue_key, job_id = (as_text(part) for part in popped)
        queue = next(queue for queue in self._queues_in_order() if queue.key == queue_key)
        return queue, job_id

    def _fetch_popped_job(self, queue: Any, job_id: str) -> Any:
        # If Redis is unavailable the loop backs off; with one queue the id waits in the intermediate list.
        fields: dict[bytes, bytes] | None
        try:
            fields = self.connection.hgetall(self.job_class.key_for(job_id))
        except redis.exceptions.ResponseError as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise
            fields = None
        return self._load_popped_job(queue, job_id, fields)

    def _load_popped_job(self, queue: Any, job_id: str, fields: dict[bytes, bytes] | None) -> Any:
        """The job of a popped id from its hash; ``None`` (and the id dealt with) if there is no job to run."""
        if fields is None:
            self.drop_non_job(queue, job_id)
            return None
        try:
            if not fields:
                raise NoSuchJobError(job_id)
            job = self.job_class(job_id, connection=self.connection, serializer=self.serializer)
            job.restore(fields)
            return job
        except NoSuchJobError:
            self.log.warning("Worker %s: job %s was deleted while queued; skipping it", self.name, job_id)
            queue.intermediate_queue.remove(job_id)
        except Exception as exc:
            reason = f"rq-gevent: job {job_id} cannot be loaded: {type(exc).__name__}: {exc}"
            self.log.error("Worker %s: %s; moved to the failed registry of %s", self.name, reason, queue.name)
            compat.fail_unloadable(self.connection, queue, job_id, reason)
        return None

    def drop_non_job(self, queue: Any, job_id: str) -> None:
        """An id whose key is not a job hash: dropped, not failed (rq's registries and tools would each
        raise on fetching such a job)."""
        key = self.job_class.key_for(job_id)
        self.log.error("Worker %s: queue %s held id %s whose key %s is not a job hash; dropped from the "
                       "queue, the key left as it is", self.name, queue.name, job_id, key)  # fmt: skip
        queue.intermediate_queue.remove(job_id)
