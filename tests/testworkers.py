"""Worker and queue classes for subprocess tests (``--worker-class testworkers.ShortTTLWorker``,
``--queue-class testworkers.UnpoppableQueue``)."""

import itertools
import os
from pathlib import Path

import gevent
from rq import Queue

from rq_gevent import GeventWorker


class ShortTTLWorker(GeventWorker):
    """Executions expire 1 s after their heartbeat is due (rq: 60 s), so rq's abandoned-job path
    can be exercised in seconds."""

    heartbeat_ttl_margin = 1


def wait_at_gate() -> None:
    """Once per process: write ``reached`` in ``$TEST_GATE_DIR`` and wait for the test to write ``go``
    (the test stops Redis meanwhile)."""
    gate = Path(os.environ["TEST_GATE_DIR"])
    if (gate / "reached").exists():
        return
    (gate / "reached").touch()
    while not (gate / "go").exists():
        gevent.sleep(0.05)


class GatedPrepareWorker(GeventWorker):
    """Stops at the gate before rq marks its first job started: rq's bookkeeping then fails before
    the job has run."""

    def prepare_job_execution(self, job, remove_from_intermediate_queue=False):
        wait_at_gate()
        super().prepare_job_execution(job, remove_from_intermediate_queue)


class GatedPerformWorker(GeventWorker):
    """Stops at the gate after rq marked its first job started, before its function is called."""

    def prepare_job_execution(self, job, remove_from_intermediate_queue=False):
        super().prepare_job_execution(job, remove_from_intermediate_queue)
        wait_at_gate()


class GatedOutcomeWorker(GeventWorker):
    """Stops at the gate after its first job's code ran and rq noted its end, just before rq records
    its outcome: that transaction then meets a Redis that is down."""

    def handle_job_success(self, job, queue, *args, **kwargs):
        wait_at_gate()
        super().handle_job_success(job, queue, *args, **kwargs)

    def handle_job_failure(self, job, queue, *args, **kwargs):
        wait_at_gate()
        super().handle_job_failure(job, queue, *args, **kwargs)

    def handle_job_retry(self, job, queue, *args, **kwargs):
        wait_at_gate()
        super().handle_job_retry(job, queue, *args, **kwargs)


class GatedPopWorker(GeventWorker):
    """Stops at the gate before its second batch pop (the first, at start, connects its client and
    loads the pop script); the test cuts the replies of its path meanwhile."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        pop_batch = self.dequeuer.pop_batch
        calls = itertools.count()

        def gated_pop_batch(slots):
            if next(calls) == 1:
                wait_at_gate()
            return pop_batch(slots)

        self.dequeuer.pop_batch = gated_pop_batch


class UnpoppableQueue(Queue):
    """A queue class whose pop always fails with an error that is not bad input (over several queues
    the worker pops with the queue class's ``lpop``): the worker's loop dies on it."""

    @classmethod
    def lpop(cls, queue_keys, timeout, connection=None):
        raise RuntimeError("UnpoppableQueue cannot pop")


class LateUnpoppableQueue(Queue):
    """As :class:`UnpoppableQueue`, 2 s into its first pop: the worker process has been up a while
    (the launcher saw it ready) when its loop dies."""

    @classmethod
    def lpop(cls, queue_keys, timeout, connection=None):
        gevent.sleep(2)
        raise RuntimeError("LateUnpoppableQueue cannot pop")
