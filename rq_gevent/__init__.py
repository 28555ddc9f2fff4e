"""rq-gevent: an RQ worker that runs many jobs at once per process in gevent greenlets.

Importing this package imports neither gevent's patched modules nor redis/rq, so that a program can
``import rq_gevent`` and call :func:`rq_gevent.patch` before anything network-related is loaded.
The worker classes are loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .patching import NotPatchedError, is_patched, patch
from .sensitivity import public_message, sensitive

if TYPE_CHECKING:
    from .exceptions import ColdShutdown, JobInterrupted, JobKilled, JobStopped
    from .worker import GeventWorker

_LAZY = {
    "GeventWorker": "rq_gevent.worker",
    "JobInterrupted": "rq_gevent.exceptions",
    "JobStopped": "rq_gevent.exceptions",
    "JobKilled": "rq_gevent.exceptions",
    "ColdShutdown": "rq_gevent.exceptions",
}

__all__ = [
    "ColdShutdown",
    "GeventWorker",
    "JobInterrupted",
    "JobKilled",
    "JobStopped",
    "NotPatchedError",
    "__version__",
    "is_patched",
    "patch",
    "public_message",
    "sensitive",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'rq_gevent' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
