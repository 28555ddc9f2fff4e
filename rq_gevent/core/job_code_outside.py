"""Exception messages of what rq's maintenance runs of jobs' code, outside any job's greenlet.

rq's clean-up of an abandoned job (``StartedJobRegistry.cleanup``) calls the job's failure callback
from the worker's maintenance, where no job is running: a raising callback is logged by rq
(``rq.job``, then ``rq.registry`` in rq 3) and, in rq 2, raised out of the maintenance.  Its message
may quote the job's input, and which job it was is not known to the log records: every exception
message logged while rq's maintenance runs is withheld, as a sensitive job's is (types and frames
stay).  An exception so withheld is marked, so it stays withheld wherever it is logged again (the
worker's ``maintenance failed`` line, when rq 2 raises it out of the maintenance); the errors the
maintenance raises itself (Redis's, say) are logged there with their messages.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_MARK = "__rq_gevent_message_withheld__"

_in_rq_maintenance: contextvars.ContextVar[bool] = contextvars.ContextVar("rq_gevent_rq_maintenance", default=False)


@contextlib.contextmanager
def rq_maintenance() -> Iterator[None]:
    """While rq's maintenance runs in the calling greenlet."""
    token = _in_rq_maintenance.set(True)
    try:
        yield
    finally:
        _in_rq_maintenance.reset(token)


def in_rq_maintenance() -> bool:
    return _in_rq_maintenance.get()


def mark_withheld(error: BaseException) -> None:
    """``error``'s message was withheld once: it is withheld wherever it shows again."""
    try:
        setattr(error, _MARK, True)
    except Exception:  # an exception type that refuses attributes: it is withheld where it was logged
        pass


def is_withheld(error: object) -> bool:
    return getattr(error, _MARK, False) is True
