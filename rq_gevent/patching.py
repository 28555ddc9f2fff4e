"""gevent monkey-patching, done once and early enough.

gevent must patch the standard library before ``ssl``, ``socket`` users such as ``redis`` and
``rq`` are imported, or their sockets block the whole process.  The ``rq-gevent`` command does this
first thing; code that embeds :class:`~rq_gevent.GeventWorker` calls :func:`patch` at the top of its
entry point.
"""

from __future__ import annotations

import sys
from typing import Any

# Imported before gevent patches, these keep what they took from the standard library (ssl's classes,
# socket functions, real locks) and block the whole process or fail in gevent's hub later
# (gevent issue #1016).  A library before what it imports: the name a program imported comes first.
_LATE_MODULES = ("rq", "redis", "requests", "sentry_sdk", "httpx", "urllib3", "pymysql", "ssl")


class NotPatchedError(RuntimeError):
    """Raised when the worker is imported into a process that gevent has not patched, or when
    :func:`patch` comes after ``modules`` were imported."""

    def __init__(self, message: str, modules: list[str] | None = None):
        super().__init__(message)
        self.modules = modules or []


def first_thing_patch() -> None:
    """:func:`patch` as a command's first statement: modules already imported then were imported at
    the interpreter's start-up, which the usual advice cannot fix; a :class:`ConfigError` says so."""
    try:
        patch()
    except NotPatchedError as error:
        from rq_gevent.options import ConfigError

        raise ConfigError(
            f"{error.modules[0]} was imported before rq-gevent could patch gevent, at the interpreter's start-up: "
            "by a sitecustomize or usercustomize module, a .pth file in site-packages, or PYTHONSTARTUP; "
            "workers need gevent's patching first"
        ) from None


def patch() -> None:
    """Apply ``gevent.monkey.patch_all()`` once; later calls do nothing.

    Raises :class:`NotPatchedError`, before patching anything, when a module it must come before
    (redis, rq, ssl...) is already imported: patching then would let jobs run until the process
    blocks or dies in gevent's hub.
    """
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        late = imported_too_early()
        if late:
            raise NotPatchedError(f"rq_gevent.patch() came too late: {_too_late(late)}", late)
        monkey.patch_all()
    _poll_readiness_checks_directly()


def imported_too_early() -> list[str]:
    """The modules that patching must come before, of those already imported."""
    return [name for name in _LATE_MODULES if name in sys.modules]


def _too_late(late: list[str]) -> str:
    others = f" (and {', '.join(late[1:])})" if len(late) > 1 else ""
    return (
        f"{late[0]} was imported before gevent's monkey-patching{others}. "
        "Call rq_gevent.patch() as the first statement of your program, before anything imports "
        "redis, rq or ssl, or start workers with the `rq-gevent worker` command "
        "(`rq worker -w rq_gevent.GeventWorker` is too late)."
    )


def _poll_readiness_checks_directly() -> None:
    """``select.poll()`` as gevent patches it, except that ``poll(0)`` asks the OS at once.

    A zero timeout cannot block, so it needs no turn of gevent's hub; gevent still starts a watcher
    per fd and waits for the hub, many times slower (docs/performance-history.md).  redis-py makes that
    check each time it takes a
    connection from its pool (is it clean?), which is once per command a job sends.  The OS also reports
    every event asked for (``POLLRDHUP``...), where gevent's reports only readable and writable.
    """
    import select

    from gevent import monkey
    from gevent import select as gevent_select

    if select.poll is not gevent_select.poll:  # not patched by gevent, or already done
        return
    os_poll = monkey.get_original("select", "poll")

    class poll(gevent_select.poll):  # noqa: N801 - the name select.poll's users see
        def __init__(self) -> None:
            super().__init__()
            self._masks: dict[int, int | None] = {}

        def register(self, fd: Any, eventmask: int | None = None) -> None:
            if eventmask is None:
                super().register(fd)
            else:
                super().register(fd, eventmask)
            self._masks[_fileno(fd)] = eventmask

        def unregister(self, fd: Any) -> None:
            super().unregister(fd)
            self._masks.pop(_fileno(fd), None)

        def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
            if timeout is None or timeout != 0:
                return super().poll(timeout)
            checked = os_poll()
            for fd, eventmask in self._masks.items():
                if eventmask is None:
                    checked.register(fd)
                else:
                    checked.register(fd, eventmask)
            return checked.poll(0)

    select.poll = poll


def _fileno(fd: Any) -> int:
    """What ``select.poll`` accepts as a file descriptor: an int, or an object with ``fileno()``."""
    return fd if isinstance(fd, int) else fd.fileno()


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
        _poll_readiness_checks_directly()
        return
    late = imported_too_early()
    if late:
        raise NotPatchedError(f"rq_gevent.GeventWorker needs gevent's monkey-patching first: {_too_late(late)}", late)
    patch()
