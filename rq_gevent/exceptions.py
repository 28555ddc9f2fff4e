"""Exceptions delivered into a running job's greenlet, and the one ``work()`` raises when its loop died.

The first derive from ``BaseException`` so that a job's own ``except Exception:`` cannot swallow an
operator's stop or a shutdown, the same way rq's ``SystemExit``-style interruptions behave.
"""


class WorkLoopDied(Exception):
    """``GeventWorker.work()``: its work loop ended on an unexpected error (its ``__cause__``), after
    the running jobs finished.  The worker did not stop as asked: ``rq-gevent worker`` exits non-zero
    (``WORK_LOOP_DIED_EXIT``), and the launcher replaces such a process."""


class JobInterrupted(BaseException):
    """Base class: the worker interrupted this job on purpose."""


class JobStopped(JobInterrupted):
    """The job was stopped with ``rq.command.send_stop_job_command``; it ends STOPPED."""


class JobKilled(JobInterrupted):
    """The job was killed with ``rq.command.send_kill_horse_command``; it fails like a crashed horse."""


class ColdShutdown(JobInterrupted):
    """The worker shut down cold; the job is put back at the front of its queue."""
