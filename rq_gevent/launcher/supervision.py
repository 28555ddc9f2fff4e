"""What the launcher and its worker processes agree on; imports nothing network-related.

* Options (:class:`rq_gevent.options.WorkerOptions`) travel to a worker process as JSON on its
  standard input (never in argv, where a Redis password would show in ``ps``).
* Each worker process touches a *liveness file* from its event loop; a file that stops changing
  means the hub is blocked.
* A worker process writes why it is about to exit (a start-up error, recycling) to a *status file*
  the launcher reads when it reaps the process.
"""

from __future__ import annotations

import os
import re

from rq_gevent.options import UserError, WorkerOptions

DEFAULT_HUB_TIMEOUT = 30.0
# A worker process's start-up (imports, the config module, connecting, registering) can block its event
# loop for longer than --hub-timeout (a Django app's import); it has its own limit.
DEFAULT_STARTUP_TIMEOUT = 60.0
LIVENESS_INTERVAL = 1.0
# A worker process right after start-up (Python, gevent, redis, rq, a connection) uses about 45 MB
# here; a memory limit below this would recycle it in a loop.
MIN_MEMORY_PER_CHILD_MB = 64

INDEX_ENV = "RQ_GEVENT_CHILD_INDEX"
LIVENESS_ENV = "RQ_GEVENT_LIVENESS_FILE"
STATUS_ENV = "RQ_GEVENT_STATUS_FILE"
MASTER_PID_ENV = "RQ_GEVENT_MASTER_PID"

# A worker process's exit code for a ConfigError (sysexits' EX_CONFIG): the launcher stops, no retry.
CONFIG_ERROR_EXIT = 78
# More worker processes than this per usable core only add memory: each already runs --concurrency jobs.
PROCESSES_PER_CORE = 8
# The launcher's check before it starts its pool found Redis unreachable (sysexits' EX_UNAVAILABLE).
UNREACHABLE_EXIT = 69
# ``rq-gevent worker``'s exit code when its work loop died on an unexpected error (sysexits'
# EX_SOFTWARE); the worker has raised its own alert.  The launcher replaces the process.
WORK_LOOP_DIED_EXIT = 70

SUPERVISION_OPTIONS = ("hub_timeout", "startup_timeout", "max_jobs_per_child", "max_memory_per_child")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve_processes(value: str | int) -> int:
    """``-n``: a whole number from 1 to ``PROCESSES_PER_CORE`` per usable core, or ``auto`` for one
    process per usable core."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return usable_cores()
    text = str(value).strip()
    if not re.fullmatch(r"\+?[0-9]{1,6}", text):
        raise UserError(
            f"--processes must be a whole number of at least 1 or 'auto', got {value!r} "
            "(-n is --processes here, as in rq worker-pool; rq worker's -n NAME is --name)"
        )
    number = int(text)
    if number < 1:
        raise UserError(f"--processes must be a whole number of at least 1 or 'auto', got {value!r}")
    most = PROCESSES_PER_CORE * usable_cores()
    if number > most:
        raise UserError(
            f"--processes {number} is more than {most} ({PROCESSES_PER_CORE} per usable CPU core): each process "
            "already runs many jobs at once; raise --concurrency instead"
        )
    return number


def needs_arbiter(options: WorkerOptions) -> bool:
    """One process and no supervision option: the worker runs in this process, as ``rq worker`` does."""
    if options.processes > 1 or any(getattr(options, name) is not None for name in SUPERVISION_OPTIONS):
        memory = options.max_memory_per_child
        if memory is not None and memory < MIN_MEMORY_PER_CHILD_MB:
            raise UserError(
                f"--max-memory-per-child {memory} MB is below a worker process's baseline; "
                f"use at least {MIN_MEMORY_PER_CHILD_MB} MB"
            )
        return True
    return False


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MB (Linux /proc), ``None`` if the process is gone."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def write_status(path: str | None, message: str) -> None:
    if not path:
        return
    try:
        with open(path, "w") as status:
            status.write(" ".join(message.split()))
    except OSError:
        pass


def read_status(path: str) -> str:
    try:
        with open(path) as status:
            return status.read().strip()
    except OSError:
        return ""
