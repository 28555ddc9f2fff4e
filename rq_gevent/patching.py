"""gevent monkey-patching, done once and early enough.

gevent must patch the standard library before ``ssl``, ``socket`` users such as ``redis`` and
``rq`` are imported, or their sockets block the whole process.  The ``rq-gevent`` command does this
first thing; code that embeds :class:`~rq_gevent.GeventWorker` calls :func:`patch` at the top of its
entry point.
"""

from __future__ import annotations

import sys

_LATE_MODULES = ("ssl", "redis", "rq", "urllib3", "requests", "sentry_sdk")


class NotPatchedError(RuntimeError):
    """Raised when the worker is imported into a process that gevent has not patched."""


def patch() -> None:
    """Apply ``gevent.monkey.patch_all()`` once; later calls do nothing."""
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()


def is_patched() -> bool:
    if "gevent.monkey" not in sys.modules:
        return False
    from gevent import monkey

    return monkey.is_module_patched("socket") and monkey.is_module_patched("threading")


def require_patched() -> None:
    """Fail with a clear message if the process is not patched.

    Patching here would be too late whenever ``redis`` or ``ssl`` is already imported (gevent
    issue #1016), so the caller is told how to fix its entry point instead.
    """
    if is_patched():
        return
    late = [name for name in _LATE_MODULES if name in sys.modules]
    if late:
        raise NotPatchedError(
            "rq_gevent.GeventWorker needs gevent's monkey-patching before "
            f"{', '.join(late)} {'is' if len(late) == 1 else 'are'} imported. "
            "Start workers with the `rq-gevent worker` command, or call rq_gevent.patch() "
            "as the first statement of your program (`rq worker -w rq_gevent.GeventWorker` is too late)."
        )
    patch()
