"""A worker process started by the launcher: ``python -m rq_gevent.launcher.child`` (WorkerOptions as JSON on stdin).

It patches gevent first, like the ``rq-gevent`` command, then runs one GeventWorker.  With ``--check SECONDS``
it only checks the options, the config module and that Redis answers, prints the error (if any) on
stdout and exits ``CONFIG_ERROR_EXIT`` or ``UNREACHABLE_EXIT``: the launcher runs that once before
starting its pool, so a bad option or a Redis that is not there is one line, not one per process.
"""

import sys

from rq_gevent.launcher.supervision import CONFIG_ERROR_EXIT  # the standard library and options only
from rq_gevent.options import ConfigError
from rq_gevent.patching import first_thing_patch

try:
    first_thing_patch()
except ConfigError as error:
    print(error, flush=True)
    sys.exit(CONFIG_ERROR_EXIT)

import ctypes
import faulthandler
import os
import signal
from typing import Any

import gevent

from rq_gevent.exceptions import WorkLoopDied
from rq_gevent.options import ConfigError, UserError, WorkerOptions
from rq_gevent.words import plural

from .supervision import (
    INDEX_ENV,
    LIVENESS_ENV,
    LIVENESS_INTERVAL,
    MASTER_PID_ENV,
    STATUS_ENV,
    UNREACHABLE_EXIT,
    WORK_LOOP_DIED_EXIT,
    write_status,
)


def prefixed_log_format(log_format: str | None, index: str) -> str:
    """Every log line says which child wrote it: ``[child <index> pid <pid>]``."""
    tag = f"[child {index} pid %(process)d]"
    log_format = log_format or "%(asctime)s %(message)s"
    if "%(message)s" in log_format:
        return log_format.replace("%(message)s", f"{tag} %(message)s", 1)
    return f"{tag} {log_format}"


def touch_forever(path: str) -> None:
    """Prove to the launcher, from the event loop itself, that the hub is running.

    The launcher watches only whether the file's mtime changes (timed on its own monotonic clock),
    so the wall-clock time written here may step by any amount.  A removed file is recreated.
    """
    while True:
        touch(path)
        gevent.sleep(LIVENESS_INTERVAL)


def touch(path: str) -> None:
    """Change ``path``'s mtime, recreating the file if something removed it (a tmp cleaner): the master
    takes a missing file for no sign of life, and would kill a healthy process after --hub-timeout.
    Never through a symlink planted in its place."""
    try:
        os.utime(path)
        return
    except FileNotFoundError:
        pass
    except OSError:
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
    except OSError:
        pass  # its directory gone too: the master recreates that (Arbiter._watch)


def die_with_parent() -> None:
    """If the launcher dies (even by SIGKILL), shut down warm instead of running on as an orphan.

    The kernel's death signal covers a parent that dies after it is asked for; a launcher that died
    between spawning this process and that moment is found by the parent pid having changed: the
    process then exits before it reads its options or touches Redis.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass
    master = os.environ.get(MASTER_PID_ENV)
    if master and master.isdigit() and os.getppid() != int(master):
        print(f"rq-gevent: launcher (pid {master}) gone before this worker process started; exiting", flush=True)
        sys.exit(0)


def check(seconds: int) -> None:
    """``--check SECONDS``: the options, the config module and a PING, all within ``seconds``."""
    signal.alarm(seconds)
    from rq_gevent.run import connect, plan_worker

    try:
        connect(plan_worker(WorkerOptions.from_json(sys.stdin.read()))).close()
    except ConfigError as error:
        print(error, flush=True)
        sys.exit(CONFIG_ERROR_EXIT)
    except UserError as error:
        print(error, flush=True)
        sys.exit(UNREACHABLE_EXIT)
    sys.exit(0)


def main() -> None:
    die_with_parent()
    # The launcher's watchdog sends SIGABRT to a process whose event loop is stuck: print where.
    faulthandler.enable(all_threads=True)
    index = os.environ.get(INDEX_ENV, "?")
    liveness_file = os.environ.get(LIVENESS_ENV)
    status_file = os.environ.get(STATUS_ENV)

    def start_liveness(worker: Any) -> None:
        if liveness_file:
            touch(liveness_file)  # start-up is over: the launcher's --hub-timeout applies from here
            gevent.spawn(touch_forever, liveness_file)

    from rq_gevent.run import run_worker

    try:
        options = WorkerOptions.from_json(sys.stdin.read())
        options = options.replace(log_format=prefixed_log_format(options.log_format, index))
        options = options.replace(process_index=int(index) if index.isdigit() else 0)
        worker = run_worker(options, before_work=start_liveness)
    except ConfigError as error:
        write_status(status_file, str(error))  # the launcher prints it, once for all its processes
        sys.exit(CONFIG_ERROR_EXIT)
    except UserError as error:
        write_status(status_file, f"start-up error: {error}")
        print(f"rq-gevent: error: [child {index} pid {os.getpid()}] {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    except WorkLoopDied as error:
        write_status(status_file, f"work loop died: {error}")  # its traceback and alert are logged
        sys.exit(WORK_LOOP_DIED_EXIT)
    except BaseException as error:
        write_status(status_file, f"crashed: {type(error).__name__}: {error}")
        raise
    max_jobs = options.max_jobs
    if options.recycle_after_max_jobs and max_jobs is not None and worker.admitted_job_count >= max_jobs:
        write_status(status_file, f"recycled after {plural(max_jobs, 'job')} (--max-jobs-per-child)")
    sys.exit(0)


if __name__ == "__main__":
    check(int(sys.argv[2])) if sys.argv[1:2] == ["--check"] else main()
