"""Exceptions the worker raises in a job's greenlet, and the one ``work()`` raises when its loop died.

The job interruptions (``JobInterrupted``) derive from ``BaseException`` so that a job's own
``except Exception:`` cannot swallow an operator's stop or a shutdown, the same way rq's
``SystemExit``-style interruptions behave.
Their messages are the worker's (a job id, a worker name), never a job's input: public even for a
sensitive job (:func:`rq_gevent.sensitivity.public_message`).
"""

from .sensitivity import public_message


class WorkLoopDied(Exception):
    """``GeventWorker.work()``: its work loop ended on an unexpected error (its ``__cause__``), after
    the running jobs finished.  The worker did not stop as asked: ``rq-gevent worker`` exits non-zero
    (``WORK_LOOP_DIED_EXIT``), and the launcher replaces such a process."""


@public_message
class JobInterrupted(BaseException):
    """Base class: the worker interrupted this job on purpose."""


class JobStopped(JobInterrupted):
    """The job was stopped with ``rq.command.send_stop_job_command``; it ends STOPPED."""


class JobKilled(JobInterrupted):
    """The job was killed with ``rq.command.send_kill_horse_command``; it fails like a crashed horse."""


class ColdShutdown(JobInterrupted):
    """The worker shut down cold; the job is put back at the front of its queue."""


@public_message
class FunctionNotImportable(Exception):
    """The job's function cannot be imported.  Its message names the function and the import's
    error, which come from the job's function name and the code base, never from its arguments:
    public, so the reason shows even for a job that is taken for sensitive because its function
    (and so its mark) cannot be read."""
