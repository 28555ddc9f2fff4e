"""Which job functions a worker may run: the ``ALLOWED_JOBS`` setting.

Whoever can write to Redis can enqueue a job naming any importable function (``os.system``) and
any callbacks.  With ``ALLOWED_JOBS`` (a list of ``fnmatch`` patterns of dotted names, e.g.
``["jobs.*", "myapp.tasks.*"]``) a job whose function or success/failure/stopped callback matches
none of them fails with :class:`JobNotAllowed` before anything it names is imported, and none of
its callbacks runs.  Without it (the default) every job runs, as under rq.

The check reads the names from the job's data, so it cannot stop what unpickling that data does:
rq's default pickle serializer runs code by design.  Pair it with rq's ``JSONSerializer``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from . import compat
from .sensitivity import SensitiveJobs


class JobNotAllowed(Exception):
    """The job names a function or callback outside the worker's ``ALLOWED_JOBS``."""


class AllowedJobs:
    """``ALLOWED_JOBS`` patterns; ``None`` allows everything."""

    def __init__(self, patterns: Iterable[str] | None = None):
        if patterns is not None:
            patterns = tuple(patterns) if isinstance(patterns, (list, tuple)) else patterns
            if not isinstance(patterns, tuple) or not all(isinstance(p, str) and p for p in patterns):
                raise ValueError(f"ALLOWED_JOBS must be a list of dotted function names or patterns, got {patterns!r}")
        self.patterns = patterns

    def refusal(self, job: Any) -> str | None:
        """Why ``job`` may not run here, or None when it may."""
        if self.patterns is None:
            return None
        try:
            names = {"function": job.func_name, **compat.callback_names(job)}
        except Exception as exc:
            return f"its function name cannot be read ({type(exc).__name__})"
        for role, name in names.items():
            if name is not None and not any(fnmatchcase(name, pattern) for pattern in self.patterns):
                return f"its {role} {name!r} is not in the worker's ALLOWED_JOBS"
        return None

    def __call__(self, job: Any) -> bool:
        return self.refusal(job) is None


def job_rules(settings: Mapping[str, Any]) -> tuple[AllowedJobs, SensitiveJobs]:
    """``ALLOWED_JOBS`` and ``SENSITIVE_JOBS`` from the ``--config`` module; ValueError when malformed."""
    allowed = AllowedJobs(settings.get("ALLOWED_JOBS"))
    return allowed, SensitiveJobs(settings.get("SENSITIVE_JOBS") or (), allowed=allowed)
