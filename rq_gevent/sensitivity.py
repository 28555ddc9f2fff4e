"""Which jobs are *sensitive*: their arguments may hold secrets, so logs and error reports don't show them.

A job is sensitive when its function is decorated with :func:`sensitive`, or when its function's
dotted name matches one of the worker's ``SENSITIVE_JOBS`` patterns (``fnmatch`` style, e.g.
``"myapp.billing.*"``).  The worker then logs its id instead of its description, Sentry events
(:mod:`rq_gevent.integrations.sentry`) carry none of its arguments, and no exception message of it leaves the
worker (:mod:`rq_gevent.core.error_text`): not in the log, Redis or Sentry, unless the exception was
marked with :func:`public_message`.  Imports nothing heavy, so job modules can use both freely.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
E = TypeVar("E")

_MARK = "__rq_gevent_sensitive__"
_PUBLIC = "__rq_gevent_public_message__"


def sensitive(func: F) -> F:
    """Mark a job function sensitive: logs and error reports never carry its arguments.

    ::

        @sensitive
        def charge_card(user_id, card_number): ...
    """
    setattr(func, _MARK, True)
    return func


def is_marked_sensitive(func: object) -> bool:
    return bool(getattr(func, _MARK, False))


def public_message(error: E) -> E:
    """Mark an exception class (or one exception) whose message never carries a job's input, only
    constants and codes: a sensitive job's logs, stored error and Sentry events then show it.

    ::

        @public_message
        class QuotaExceeded(Exception): ...

    A message built from an argument, or from anything derived from one, must not be marked.
    """
    setattr(error, _PUBLIC, True)
    return error


def has_public_message(error: object) -> bool:
    return getattr(error, _PUBLIC, False) is True


class SensitiveJobs:
    """Decides whether a job is sensitive, from its function's mark or its dotted name.  A job that
    ``allowed`` refuses is sensitive without its function being imported to read the mark."""

    def __init__(self, patterns: Iterable[str] = (), allowed: Callable[[Any], bool] | None = None):
        patterns = tuple(patterns) if isinstance(patterns, (list, tuple)) else patterns
        if not isinstance(patterns, tuple) or not all(isinstance(pattern, str) for pattern in patterns):
            raise ValueError(f"SENSITIVE_JOBS must be a list of dotted function names or patterns, got {patterns!r}")
        self.patterns = patterns
        self.allowed = allowed

    def __call__(self, job: Any) -> bool:
        try:
            func_name = job.func_name
        except Exception:
            return True  # cannot even tell what it is: assume the worst
        if any(fnmatchcase(func_name, pattern) for pattern in self.patterns):
            return True
        if self.allowed is not None and not self.allowed(job):
            return True
        try:
            return is_marked_sensitive(job.func)
        except Exception:
            return True  # its function cannot be imported, so its mark cannot be read


class SensitiveRecordFilter(logging.Filter):
    """For records logged while ``in_sensitive_job()`` is true: blanks the arguments rq attaches as
    ``extra`` (a JSON log handler would print them) and the return value rq logs at DEBUG."""

    EXTRA_FIELDS = ("arguments", "kwargs")

    def __init__(self, in_sensitive_job: Callable[[], bool]):
        super().__init__()
        self.in_sensitive_job = in_sensitive_job

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.in_sensitive_job():
            return True
        for field in self.EXTRA_FIELDS:
            if hasattr(record, field):
                setattr(record, field, FILTERED)
        if isinstance(record.msg, str) and record.msg.lower().endswith("result: %r") and record.args:
            record.args = (*tuple(record.args)[:-1], FILTERED)
        return True


FILTERED = "[Filtered]"
