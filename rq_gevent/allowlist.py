"""Which job functions a worker may run: the ``ALLOWED_JOBS`` setting.

Whoever can write to Redis can enqueue a job naming any importable function (``os.system``) and
any callbacks.  With ``ALLOWED_JOBS`` (a list of ``fnmatch`` patterns of dotted names, e.g.
``["jobs.mail.activation.send_activation_mail", "myapp.tasks.*"]``) every callable a job names (its
function, its success, failure and stopped callbacks) must be a function *defined* where the name
says:

* the name matches a pattern (``*`` spans dots: ``myapp.tasks.*`` covers ``myapp.tasks.mail.send``),
  and no part of it is private (starts with ``_``);
* only modules whose names, and their parent packages' names, match a pattern or a pattern cut at
  one of its dots are imported;
* the name resolves, through the module's and its class's own namespaces, to a Python function (a
  module-level function, or a module-level class's plain, static or class method, which a pattern
  must name exactly) whose ``__module__`` and ``__qualname__`` spell that very name.  So an
  attribute chain through a module the allowed one imports (``jobs.sealing.os.system``), a
  re-export (``from x import f``), a builtin, a class, a method of an instance and a
  ``functools.partial`` are all refused.

A wildcard still allows every public module-level function of the modules it covers, helpers
included: use one only for modules that hold nothing but jobs, and name other functions exactly.

A refused job fails with :class:`JobNotAllowed` naming the refused callable, and none of its
callbacks runs.  The worker's job class (:meth:`AllowedJobs.job_class`) resolves ``Job.func`` and
the callbacks through this check, so no path of rq's that runs them can skip it.  Without
``ALLOWED_JOBS`` (the default) every job runs, as under rq.

The check reads the names from the job's data, so it cannot stop what unpickling that data does:
rq's default pickle serializer runs code by design.  Pair it with rq's ``JSONSerializer``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import types
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from . import compat
from .sensitivity import SensitiveJobs, public_message

log = logging.getLogger("rq.worker")


@public_message  # names the refused callable and the rule, never an argument: shown for sensitive jobs too
class JobNotAllowed(Exception):
    """The job names a function or callback outside the worker's ``ALLOWED_JOBS``."""


# Allowed names remembered at most: more distinct allowed names than this is no real worker's.
_REMEMBERED_NAMES = 1024


class AllowedJobs:
    """``ALLOWED_JOBS`` patterns; ``None`` allows everything."""

    def __init__(self, patterns: Iterable[str] | None = None):
        if patterns is not None:
            patterns = tuple(patterns) if isinstance(patterns, (list, tuple)) else patterns
            if not isinstance(patterns, tuple) or not all(isinstance(p, str) and p for p in patterns):
                raise ValueError(f"ALLOWED_JOBS must be a list of dotted function names or patterns, got {patterns!r}")
        self.patterns = patterns
        self._allowed: dict[str, Callable[..., Any]] = {}  # name -> the function it resolved to

    def refusal(self, job: Any) -> str | None:
        """Why ``job`` may not run here, or None when it may.  Imports only allowed modules."""
        if self.patterns is None:
            return None
        try:
            names = {"function": job.func_name, **compat.callback_names(job)}
            instance = job.instance
        except Exception as exc:
            return f"its function name cannot be read ({type(exc).__name__})"
        if instance is not None:
            return f"its function {names['function']!r} is a method of an instance"
        for role, name in names.items():
            if name is None:
                continue
            why = self.why_not(name)
            if why is not None:
                return f"its {role} {name!r} is not in the worker's ALLOWED_JOBS ({why})"
        return None

    def __call__(self, job: Any) -> bool:
        return self.refusal(job) is None

    def why_not(self, name: str) -> str | None:
        """Why the callable ``name`` may not run here, or None when it may."""
        try:
            self.resolve(name)
        except JobNotAllowed as exc:
            return str(exc)
        return None

    def resolve(self, name: str) -> Callable[..., Any]:
        """The function ``name`` names, if the patterns allow it; else :class:`JobNotAllowed` saying why.

        Nothing is imported unless ``name`` matches a pattern, and then only modules the patterns
        cover.  Attributes are read from namespaces (``inspect.getattr_static``): no module
        ``__getattr__`` or descriptor of a class runs before the result is accepted.  An accepted
        name is remembered (a worker resolves it several times per job); a refused one is not.
        """
        function = self._allowed.get(name) if isinstance(name, str) else None
        if function is None:
            function = self._resolve(name)
            if len(self._allowed) >= _REMEMBERED_NAMES:
                self._allowed.clear()
            self._allowed[name] = function
        return function

    def _resolve(self, name: str) -> Callable[..., Any]:
        parts = name.split(".") if isinstance(name, str) else []
        if len(parts) < 2 or not all(part.isidentifier() for part in parts):
            raise JobNotAllowed("not a dotted name of a module's function")
        if any(part.startswith("_") for part in parts):
            raise JobNotAllowed("a private name (a part starting with '_') is never a job")
        if self.patterns is not None and not any(fnmatchcase(name, pattern) for pattern in self.patterns):
            raise JobNotAllowed("it matches no pattern")
        module, attributes = self._import_longest_module(parts)
        if len(attributes) > 2:
            raise JobNotAllowed("it is neither a module's function nor a method of a module's class")
        if len(attributes) == 2 and self.patterns is not None and name not in self.patterns:
            raise JobNotAllowed("a method of a class runs only when a pattern names it exactly, without wildcards")
        owner: Any = module
        for depth, attribute in enumerate(attributes):
            try:
                found = inspect.getattr_static(owner, attribute)
            except AttributeError:
                raise JobNotAllowed(f"{module.__name__} defines no {'.'.join(attributes[: depth + 1])}") from None
            if depth < len(attributes) - 1:
                path = ".".join(attributes[: depth + 1])
                if not _defined_as(found, module.__name__, attributes[: depth + 1], inspect.isclass):
                    raise JobNotAllowed(f"{module.__name__}.{path} is not a class defined in {module.__name__}")
                owner = found
                continue
            function = _function_of(found, owner)
            if function is None or not _defined_as(function, module.__name__, attributes, inspect.isfunction):
                raise JobNotAllowed(f"it is not a function defined in {module.__name__} under that name")
            return getattr(owner, attribute) if isinstance(found, classmethod) else function
        raise JobNotAllowed("it names a module, not a function")

    def _import_longest_module(self, parts: list[str]) -> tuple[types.ModuleType, list[str]]:
        """The module named by the longest prefix of ``parts`` that the patterns cover and that imports
        (as rq's ``import_attribute`` does), and the attribute path after it."""
        for cut in range(len(parts) - 1, 0, -1):
            module_name = ".".join(parts[:cut])
            if not all(self._covers_module(".".join(parts[:depth])) for depth in range(1, cut + 1)):
                continue  # importing it would import a module (or a parent package) no pattern covers
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
                    continue  # no such module: the name goes on into its parent's namespace
                raise JobNotAllowed(f"importing {module_name} failed ({type(exc).__name__})") from None
            except Exception as exc:
                raise JobNotAllowed(f"importing {module_name} failed ({type(exc).__name__})") from None
            return module, parts[cut:]
        raise JobNotAllowed("no module it names is covered by ALLOWED_JOBS")

    def _covers_module(self, module_name: str) -> bool:
        if self.patterns is None:
            return True
        for pattern in self.patterns:
            pieces = pattern.split(".")
            if any(fnmatchcase(module_name, ".".join(pieces[:cut])) for cut in range(1, len(pieces) + 1)):
                return True
        return False

    def job_class(self, base: type) -> type:
        """A subclass of rq's job class ``base`` whose ``func`` and callbacks resolve only through
        :meth:`resolve`: rq reads them through these public properties wherever it runs them
        (performing the job, callbacks, the abandoned-job clean-up), so none of those paths can
        run a refused callable.  ``base`` itself when everything is allowed."""
        if self.patterns is None or getattr(base, "allowed_jobs", None) is self:
            return base
        return type(f"Allowed{base.__name__}", (base,), {"allowed_jobs": self, **_CHECKED_PROPERTIES})


def _function_of(found: Any, owner: Any) -> Any:
    """The plain function behind what a namespace holds (a static or class method's own function
    when ``owner`` is a class); None for anything else."""
    if inspect.isclass(owner) and isinstance(found, (staticmethod, classmethod)):
        found = found.__func__
    return found if isinstance(found, types.FunctionType) else None


def _defined_as(thing: Any, module_name: str, attributes: list[str], kind: Callable[[Any], bool]) -> bool:
    return (
        kind(thing)
        and getattr(thing, "__module__", None) == module_name
        and getattr(thing, "__qualname__", None) == ".".join(attributes)
    )


def _checked_func(job: Any) -> Any:
    if job.func_name is None:
        return None
    refusal = job.allowed_jobs.refusal(job)
    if refusal is not None:
        raise JobNotAllowed(f"job {job.id} refused: {refusal}")
    return job.allowed_jobs.resolve(job.func_name)


def _checked_callback(role: str, rq_property: property) -> property:
    """A refused callback is no callback: rq calls callbacks on paths where an exception would stop
    more than this job (rq 2's abandoned-job clean-up aborts the whole batch), and a job whose own
    run is refused fails through :func:`_checked_func` anyway."""

    def callback(job: Any) -> Any:
        name = compat.callback_names(job)[role]
        why = None if name is None else job.allowed_jobs.why_not(name)
        if why is not None:
            log.warning("Job %s: %s %r not run: not in the worker's ALLOWED_JOBS (%s)", job.id, role, name, why)
            return None
        return rq_property.fget(job)

    return property(callback)


def _rq_property(name: str) -> property:
    from rq.job import Job

    found = inspect.getattr_static(Job, name)
    if not isinstance(found, property):
        raise TypeError(f"rq's Job.{name} is no longer a property: rq_gevent.allowlist must follow it")
    return found


_CHECKED_PROPERTIES = {
    "func": property(_checked_func),
    "success_callback": _checked_callback("success callback", _rq_property("success_callback")),
    "failure_callback": _checked_callback("failure callback", _rq_property("failure_callback")),
    "stopped_callback": _checked_callback("stopped callback", _rq_property("stopped_callback")),
}


def job_rules(settings: Mapping[str, Any]) -> tuple[AllowedJobs, SensitiveJobs]:
    """``ALLOWED_JOBS`` and ``SENSITIVE_JOBS`` from the ``--config`` module; ValueError when malformed."""
    allowed = AllowedJobs(settings.get("ALLOWED_JOBS"))
    return allowed, SensitiveJobs(settings.get("SENSITIVE_JOBS") or (), allowed=allowed)
