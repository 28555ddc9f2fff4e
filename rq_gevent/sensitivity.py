"""Which jobs are *sensitive*: their arguments may hold secrets, so error reports must not show them.

A job is sensitive when its function is decorated with :func:`sensitive`, or when its function's
dotted name matches one of the worker's ``SENTRY_SENSITIVE_JOBS`` patterns (``fnmatch`` style, e.g.
``"myapp.billing.*"``).  Imports nothing heavy, so job modules can use the decorator freely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__rq_gevent_sensitive__"


def sensitive(func: F) -> F:
    """Mark a job function sensitive: reports of its failures never carry its arguments.

    ::

        @sensitive
        def charge_card(user_id, card_number): ...
    """
    setattr(func, _MARK, True)
    return func


def is_marked_sensitive(func: object) -> bool:
    return bool(getattr(func, _MARK, False))


class SensitiveJobs:
    """Decides whether a job is sensitive, from its function's mark or its dotted name."""

    def __init__(self, patterns: Iterable[str] = ()):
        self.patterns = tuple(patterns)

    def __call__(self, job: Any) -> bool:
        try:
            func_name = job.func_name
        except Exception:
            return True  # cannot even tell what it is: assume the worst
        if any(fnmatchcase(func_name, pattern) for pattern in self.patterns):
            return True
        try:
            return is_marked_sensitive(job.func)
        except Exception:
            return True  # its function cannot be imported, so its mark cannot be read
