"""The pre-fork launcher: one master process that starts and supervises N worker processes.

Modelled on gunicorn's arbiter.  The master never runs jobs, never patches gevent, never imports
redis or rq and holds no connection: each worker is a fresh interpreter (``python -m
rq_gevent.launcher.child``), so nothing a worker uses was inherited across a fork.  Signals are queued by
their handlers and handled in the master's loop, which every quarter second also

* reaps exited workers and replaces them (backing off, then giving up, when they keep failing
  at start-up or dying soon after it: a work loop that dies at once each time is a crash loop too),
* kills a worker whose liveness file has not changed for ``--hub-timeout`` seconds (until its first
  touch, ``--startup-timeout`` seconds after its spawn), timed on the master's monotonic clock,
  which no wall-clock step moves: SIGABRT first, so that its ``faulthandler`` prints where the
  event loop is stuck, then SIGKILL ``ABORT_GRACE_SECONDS`` later if it is still there (gunicorn
  does the same),
* recycles a worker over ``--max-memory-per-child`` (warm; SIGKILL at twice the limit),
* rolls all workers on SIGHUP, one at a time, each replacement up before the next old one stops.

Alerts (a worker killed by the master or dying on its own, a crash loop) are logged here and, when
Sentry may be configured, sent by a short-lived ``python -m rq_gevent.launcher.report`` process, which the
master waits for (at most ``REPORT_WAIT_SECONDS``) before it exits.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from rq_gevent import alerts
from rq_gevent.options import WorkerOptions

from ..integrations.metrics import DIRECTORY_ENV as METRICS_DIRECTORY_ENV
from ..integrations.metrics import process_exited
from ..words import plural
from .supervision import (
    CONFIG_ERROR_EXIT,
    DEFAULT_HUB_TIMEOUT,
    DEFAULT_STARTUP_TIMEOUT,
    INDEX_ENV,
    LIVENESS_ENV,
    MASTER_PID_ENV,
    STATUS_ENV,
    UNREACHABLE_EXIT,
    WORK_LOOP_DIED_EXIT,
    read_status,
    rss_mb,
)

log = logging.getLogger("rq_gevent.arbiter")

TICK_SECONDS = 0.25
MAX_STARTUP_FAILURES = 5
MAX_RESPAWN_DELAY = 5.0
# A worker process that fails (exits non-zero) within this many seconds of its start-up counts toward a
# crash loop, as one that fails at start-up does: its replacement backs off, and MAX_STARTUP_FAILURES
# of them in a row stop the master.  One that ran longer is replaced at once.
CRASH_LOOP_WINDOW = 60.0
JITTER = 0.10
REPORT_WAIT_SECONDS = 10.0
# A worker sent SIGABRT by the watchdog gets this long to print its tracebacks and die.
ABORT_GRACE_SECONDS = 2.0
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD)


@dataclass
class Child:
    index: int
    process: subprocess.Popen[bytes]
    liveness_file: str
    status_file: str
    started_mtime: float
    memory_limit_mb: float | None
    ready: bool = False
    retiring: str | None = None  # why the master asked it to stop, if it did
    killed_by_master: str | None = None
    kill_alert: str = ""  # the alert kind of that kill
    aborted_at: float | None = None  # when the watchdog sent it SIGABRT
    spawned_at: float = field(default_factory=time.monotonic)
    ready_at: float = 0.0  # when the master saw its start-up over (its first touch)
    seen_mtime: float = field(init=False)  # the liveness file's mtime when the master last saw it change
    seen_changing_at: float = field(init=False, default_factory=time.monotonic)  # when that was

    def __post_init__(self) -> None:
        self.seen_mtime = self.started_mtime

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def name(self) -> str:
        return f"child {self.index} (pid {self.pid})"

    def silence(self, mtime: float, now: float) -> float:
        """Seconds on the master's monotonic clock (``now``) since the liveness file's mtime last changed.

        Only whether the mtime changed counts, never its value: the child stamps it with the wall
        clock, which an NTP step or a resumed VM moves by any amount, in either direction.
        """
        if mtime != self.seen_mtime:
            self.seen_mtime, self.seen_changing_at = mtime, now
        return now - self.seen_changing_at


class Arbiter:
    def __init__(self, options: WorkerOptions):
        self.options = options
        self.target = options.processes
        self.hub_timeout = options.hub_timeout or DEFAULT_HUB_TIMEOUT
        self.startup_timeout = max(options.startup_timeout or DEFAULT_STARTUP_TIMEOUT, self.hub_timeout)
        self.slots: dict[int, Child] = {}
        self.retiring: list[Child] = []
        self.finished: set[int] = set()
        self.pending_signals: list[int] = []
        self.stopping: str | None = None
        self.last_stop_signal_at = 0.0
        self.rolling: list[int] = []
        self.startup_failures = 0
        self.early_deaths = 0  # worker processes in a row that failed within CRASH_LOOP_WINDOW of their start
        self.last_early_death_at = 0.0
        self.next_spawn_at = 0.0
        self.failed_exits = 0
        self.fatal_error = ""  # why the master gave up, if it did
        self.workdir = tempfile.mkdtemp(prefix="rq-gevent-master-")
        self.spawn_count = 0
        self.metrics_dir = os.path.join(self.workdir, "metrics")
        self.metrics_server: Any = None
        self.reporters: list[subprocess.Popen[bytes]] = []
        self._wake_r, self._wake_w = os.pipe()

    # -- main loop ----------------------------------------------------------------------------------

    def run(self) -> int:
        # Signals first: a stop during the check (as PID 1 in a container, nothing else would see it) is
        # queued, and handled once the check has ended, before any worker process starts.
        self._install_signals()
        # The port first: the check below ends by reaching Redis, the one problem that is not the options'.
        problem = self._serve_metrics() if self.options.metrics_port else ""
        problem = problem or self._configuration_problem()
        if problem:
            print(f"rq-gevent: error: {problem}", file=sys.stderr, flush=True)
            shutil.rmtree(self.workdir, ignore_errors=True)
            return 1
        self._setup_logging()
        if self.options.pid_file:
            with open(self.options.pid_file, "w") as pid_file:
                pid_file.write(str(os.getpid()))
        log.info("master started: %s", plural(self.target, "worker process"))
        if self.metrics_server is not None:
            from ..integrations.metrics import address

            log.info("serving the worker processes' Prometheus metrics on %s", address(self.metrics_server))
        try:
            for index in range(1, self.target + 1):
                self._handle_signals()  # a stop while the pool starts is not left waiting behind it
                if self.stopping:
                    break
                self._spawn(index)
            while not self._done():
                self._sleep()
                self._handle_signals()
                self._reap()
                self._reap_reporters()
                self._watch()
                self._maintain()
            self._wait_for_reporters()
        finally:
            if self.metrics_server is not None:
                self.metrics_server.shutdown()
                self.metrics_server.server_close()
            shutil.rmtree(self.workdir, ignore_errors=True)
            if self.options.pid_file:
                try:
                    os.unlink(self.options.pid_file)
                except OSError:
                    pass
        exit_code = self._exit_code()
        log.info("master exiting with code %d", exit_code)
        if self.fatal_error:
            print(f"rq-gevent: error: {self.fatal_error}", file=sys.stderr, flush=True)
        return exit_code

    def _configuration_problem(self) -> str:
        """What a worker process would refuse, or a Redis it could not reach, asked once of a throwaway
        interpreter (the master itself imports no app code), or ``""``."""
        # Bounded by the check's own alarm: subprocess's timeout polls with sleeps, which a stepped
        # wall clock (libfaketime) breaks.
        seconds = math.ceil(self.startup_timeout)
        check = subprocess.run(
            [sys.executable, "-m", "rq_gevent.launcher.child", "--check", str(seconds)],
            input=self.options.for_worker_process().to_json().encode(),
            stdout=subprocess.PIPE,
            start_new_session=True,  # as the worker processes: a terminal's Ctrl+C reaches only the master
        )
        if check.returncode == -signal.SIGALRM:
            return f"checking the options and reaching Redis took over {seconds} s (--startup-timeout)"
        if check.returncode in (CONFIG_ERROR_EXIT, UNREACHABLE_EXIT):
            return check.stdout.decode(errors="replace").strip()
        return ""  # anything else, the worker processes meet and report themselves

    def _serve_metrics(self) -> str:
        """Serve every worker process's metrics from one directory; the error if the port is taken."""
        from rq_gevent.options import ConfigError

        from ..integrations.metrics import serve

        os.mkdir(self.metrics_dir)
        try:
            self.metrics_server = serve(self.options.metrics_port, self.options.metrics_host, self.metrics_dir)
        except ConfigError as error:
            return str(error)
        return ""

    def _exit_code(self) -> int:
        """0 after a shutdown signal; after workers finished on their own, 1 if any failed."""
        if self.fatal_error:
            return 1
        if self.stopping:
            return 0
        return 1 if self.failed_exits else 0

    def _done(self) -> bool:
        if self.slots or self.retiring:
            return False
        if self.stopping:
            return True
        # Every worker finished on its own (burst, --max-jobs, --max-idle-time, rq's shutdown command).
        return all(index in self.finished for index in range(1, self.target + 1))

    def _setup_logging(self) -> None:
        handler = logging.StreamHandler(sys.stderr)
        date_format = self.options.date_format or "%H:%M:%S"
        handler.setFormatter(logging.Formatter("%(asctime)s [master pid %(process)d] %(message)s", date_format))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False

    def _sleep(self) -> None:
        try:
            readable, _, _ = select.select([self._wake_r], [], [], TICK_SECONDS)
        except InterruptedError:
            return
        if readable:
            os.read(self._wake_r, 4096)

    # -- signals ------------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        os.set_blocking(self._wake_w, False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self._queue_signal)

    def _queue_signal(self, signum: int, frame: Any) -> None:
        self.pending_signals.append(signum)
        try:
            os.write(self._wake_w, b".")
        except OSError:
            pass

    def _handle_signals(self) -> None:
        while self.pending_signals:
            signum = self.pending_signals.pop(0)
            if signum in (signal.SIGTERM, signal.SIGINT):
                self._stop(signum)
            elif signum == signal.SIGTTIN:
                self.target += 1
                log.info("SIGTTIN: worker processes %d -> %d", self.target - 1, self.target)
            elif signum == signal.SIGTTOU:
                self._shrink()
            elif signum == signal.SIGHUP and not self.stopping:
                self.rolling = sorted(self.slots)
                log.info("SIGHUP: replacing %s one at a time", plural(len(self.rolling), "worker process"))

    def _stop(self, signum: int) -> None:
        name = signal.Signals(signum).name
        now = time.monotonic()
        if self.stopping == "warm" and now - self.last_stop_signal_at < 1:
            return  # a duplicate (e.g. Ctrl+C reaching the process group); as rq does
        self.stopping = "warm" if self.stopping is None else "cold"
        self.last_stop_signal_at = now
        self.rolling = []
        log.info(
            "%s: %s shutdown of %s%s",
            name,
            self.stopping,
            plural(len(self.slots) + len(self.retiring), "worker process"),
            "; send it again for a cold shutdown" if self.stopping == "warm" else "",
        )
        for child in self._children():
            self._signal(child, signal.SIGTERM)

    def _shrink(self) -> None:
        if self.target <= 1:
            log.info("SIGTTOU: already at 1 worker process")
            return
        self.target -= 1
        log.info("SIGTTOU: worker processes %d -> %d", self.target + 1, self.target)
        for index in [index for index in self.slots if index > self.target]:
            self._retire(self.slots[index], "removed by SIGTTOU", replace=False)

    # -- children -----------------------------------------------------------------------------------

    def _children(self) -> list[Child]:
        return [*self.slots.values(), *self.retiring]

    def _child_options(self) -> WorkerOptions:
        options = self.options.for_worker_process().replace(launcher_serves_metrics=True)
        per_child = self.options.max_jobs_per_child
        if per_child:
            jittered = per_child + random.randint(0, int(per_child * JITTER))
            options = options.replace(max_jobs=jittered, recycle_after_max_jobs=True)
        return options

    def _spawn(self, index: int) -> None:
        self.spawn_count += 1
        base = os.path.join(self.workdir, f"child-{index}-{self.spawn_count}")
        liveness_file, status_file = f"{base}.alive", f"{base}.status"
        with open(liveness_file, "w"):
            pass
        started_mtime = os.stat(liveness_file).st_mtime
        env = dict(
            os.environ,
            **{
                INDEX_ENV: str(index),
                LIVENESS_ENV: liveness_file,
                STATUS_ENV: status_file,
                MASTER_PID_ENV: str(os.getpid()),
            },
        )
        if self.options.metrics_port:
            env[METRICS_DIRECTORY_ENV] = self.metrics_dir
        process = subprocess.Popen(
            [sys.executable, "-m", "rq_gevent.launcher.child"],
            stdin=subprocess.PIPE,
            env=env,
            start_new_session=True,  # terminal signals reach the master only; it forwards them
        )
        assert process.stdin is not None
        process.stdin.write(self._child_options().to_json().encode())
        process.stdin.close()
        limit = self.options.max_memory_per_child
        memory_limit = limit * (1 - random.uniform(0, JITTER)) if limit else None
        self.slots[index] = Child(index, process, liveness_file, status_file, started_mtime, memory_limit)
        self.finished.discard(index)
        log.info("spawned child %d (pid %d)", index, process.pid)

    def _signal(self, child: Child, signum: int) -> None:
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            pass

    def _kill(self, child: Child, kind: str, reason: str, first: signal.Signals = signal.SIGKILL) -> None:
        child.killed_by_master = reason
        child.kill_alert = kind
        log.warning("killing %s: %s", child.name, reason)
        if first == signal.SIGABRT:
            child.aborted_at = time.monotonic()
        self._signal(child, first)

    def _kill_if_abort_ignored(self, child: Child) -> None:
        if child.aborted_at is not None and time.monotonic() - child.aborted_at > ABORT_GRACE_SECONDS:
            child.aborted_at = None
            log.warning("%s still alive %.0f s after SIGABRT; sending SIGKILL", child.name, ABORT_GRACE_SECONDS)
            self._signal(child, signal.SIGKILL)

    def _retire(self, child: Child, reason: str, replace: bool = True) -> None:
        """Ask ``child`` to finish its running jobs and exit; start its replacement at once."""
        if child.retiring:
            return
        child.retiring = reason
        del self.slots[child.index]
        self.retiring.append(child)
        log.info("retiring %s: %s", child.name, reason)
        self._signal(child, signal.SIGTERM)
        if replace and not self.stopping:
            self._spawn(child.index)

    def _reap(self) -> None:
        for child in self._children():
            code = child.process.poll()
            if code is None:
                continue
            if child.retiring:
                self.retiring.remove(child)
            else:
                del self.slots[child.index]
            if self.metrics_server is not None:
                process_exited(self.metrics_dir, child.pid)
            status = read_status(child.status_file)
            cause = self._exit_cause(child, code, status)
            log.info("%s exited: %s", child.name, cause)
            for path in (child.liveness_file, child.status_file):
                try:
                    os.unlink(path)
                except OSError:
                    pass
            if child.kill_alert:
                self._report(child.kill_alert, "%s killed by the master: %s", child, cause)
            elif code not in (0, WORK_LOOP_DIED_EXIT) and child.ready and not self.stopping and not child.retiring:
                # (a worker whose loop died has raised its own alert, WORK_LOOP_DIED)
                self._report(alerts.WORKER_DIED, "%s died: %s", child, cause)
            if child.retiring or self.stopping:
                continue
            if code != 0:
                self.failed_exits += 1
            self._after_unplanned_exit(child, code, status, cause)

    def _exit_cause(self, child: Child, code: int, status: str) -> str:
        if code < 0:
            cause = f"killed by signal {signal.Signals(-code).name}"
        elif code > 0:
            cause = f"exit code {code}"
        else:
            cause = "exit code 0"
        for detail in (child.killed_by_master, child.retiring, status):
            if detail:
                cause += f" ({detail})"
        return cause

    def _after_unplanned_exit(self, child: Child, code: int, status: str, cause: str) -> None:
        if code == 0 and not status.startswith("recycled"):
            self.finished.add(child.index)  # burst drained, --max-jobs, --max-idle-time, rq shutdown command
            return
        if code == 0:
            return  # recycled: _maintain starts its replacement
        if child.ready:
            self.startup_failures = 0
            if time.monotonic() - child.ready_at >= CRASH_LOOP_WINDOW:
                return
            self.early_deaths += 1
            self.last_early_death_at = time.monotonic()
            what = f"died {time.monotonic() - child.ready_at:.0f} s after its start-up ({status or cause})"
            self._back_off_or_give_up(child, self.early_deaths, what)
            return
        self.startup_failures += 1
        reason = status or cause
        if code == CONFIG_ERROR_EXIT:
            self._give_up(reason)  # the same configuration would fail the same way again
            return
        if self.startup_failures >= MAX_STARTUP_FAILURES:
            self._give_up(f"worker processes failed at start-up {self.startup_failures} times in a row; last: {reason}")
            self._report(alerts.CRASH_LOOP, "crash loop, last %s: %s", child, self.fatal_error)
            return
        self._back_off_or_give_up(child, self.startup_failures, f"failed at start-up ({reason})")

    def _back_off_or_give_up(self, child: Child, failures: int, what: str) -> None:
        """The ``failures``-th failure in a row of a worker process: its replacement waits 0.5, 1, 2, 4 s;
        at ``MAX_STARTUP_FAILURES`` the master gives up (a crash loop)."""
        if failures >= MAX_STARTUP_FAILURES:
            self._give_up(f"worker processes failed {failures} times in a row; last: {child.name} {what}")
            self._report(alerts.CRASH_LOOP, "crash loop, last %s: %s", child, self.fatal_error)
            return
        delay = min(MAX_RESPAWN_DELAY, 0.5 * 2 ** (failures - 1))
        self.next_spawn_at = time.monotonic() + delay
        log.warning("%s %s; next start in %.1f s", child.name, what, delay)

    def _give_up(self, reason: str) -> None:
        self.fatal_error = reason
        log.error("%s; stopping", reason)
        self.stopping = "warm"
        for other in self._children():
            self._signal(other, signal.SIGTERM)

    # -- alerts -------------------------------------------------------------------------------------

    def _report(self, kind: str, message: str, child: Child, detail: str) -> None:
        """Hand an alert to a reporter process (the master itself never talks to Sentry)."""
        if not (self.options.sentry_dsn or self.options.config):
            return  # Sentry can only be configured by one of these
        payload = {
            "options": json.loads(self.options.for_worker_process().to_json()),
            "kind": kind,
            "message": message,
            "args": [child.name, detail],
            "details": {"child": child.index, "pid": child.pid},
        }
        try:
            process = subprocess.Popen([sys.executable, "-m", "rq_gevent.launcher.report"], stdin=subprocess.PIPE)
            assert process.stdin is not None
            process.stdin.write(json.dumps(payload).encode())
            process.stdin.close()
        except OSError as error:
            log.error("cannot start the alert reporter: %s", error)
            return
        self.reporters.append(process)

    def _reap_reporters(self) -> None:
        for process in list(self.reporters):
            code = process.poll()
            if code is None:
                continue
            self.reporters.remove(process)
            if code != 0:
                log.warning("alert reporter (pid %d) exited with code %d", process.pid, code)

    def _wait_for_reporters(self) -> None:
        deadline = time.monotonic() + REPORT_WAIT_SECONDS
        while self.reporters and time.monotonic() < deadline:
            self._reap_reporters()
            time.sleep(0.05)
        for process in self.reporters:
            log.warning("alert reporter (pid %d) still running at exit; killing it", process.pid)
            process.kill()
            process.wait()

    # -- health -------------------------------------------------------------------------------------

    def _watchdog_reason(self, child: Child, silent: float) -> str:
        if child.ready:
            return f"watchdog: its event loop has not run for {silent:.0f} s (--hub-timeout)"
        return f"watchdog: still starting {silent:.0f} s after its spawn (--startup-timeout)"

    def _watch(self) -> None:
        now = time.monotonic()
        for child in self._children():
            if child.killed_by_master:
                self._kill_if_abort_ignored(child)
                continue
            try:
                touched = os.stat(child.liveness_file).st_mtime
            except OSError:
                # Removed (a tmp cleaner): no sign of life, so a stuck process is still killed once it
                # has been silent for --hub-timeout; a healthy one recreates it within a second.
                touched = child.seen_mtime
                self._keep_workdir()
            if not child.ready and touched != child.started_mtime:
                child.ready, child.ready_at = True, now
                self.startup_failures = 0
                log.info("%s started in %.1f s", child.name, now - child.spawned_at)
            silent = child.silence(touched, now)
            if silent > (self.hub_timeout if child.ready else self.startup_timeout):
                self._kill(child, alerts.WATCHDOG_KILL, self._watchdog_reason(child, silent), first=signal.SIGABRT)
                continue
            if child.memory_limit_mb is None:
                continue
            rss = rss_mb(child.pid)
            if rss is None:
                continue
            if rss > 2 * child.memory_limit_mb:
                self._kill(child, alerts.MEMORY_KILL, f"memory {rss:.0f} MB, over twice --max-memory-per-child")
            elif rss > child.memory_limit_mb and not child.retiring:
                self._retire(child, f"recycled: memory {rss:.0f} MB > {child.memory_limit_mb:.0f} MB")

    def _keep_workdir(self) -> None:
        """Recreate the master's directory if something removed it (a tmp cleaner): its children recreate
        their liveness files in it, and replacements are spawned there."""
        try:
            os.mkdir(self.workdir, 0o700)
        except FileExistsError:
            return
        except OSError as error:
            log.warning("cannot recreate %s: %s", self.workdir, error)
            return
        if self.options.metrics_port:
            os.makedirs(self.metrics_dir, exist_ok=True)
        log.warning("recreated %s (removed while the master ran)", self.workdir)

    def _maintain(self) -> None:
        if self.stopping:
            return
        if self.early_deaths and any(
            child.ready
            and child.spawned_at > self.last_early_death_at
            and time.monotonic() - child.ready_at >= CRASH_LOOP_WINDOW
            for child in self.slots.values()
        ):
            self.early_deaths = 0  # a replacement has outlived the window: the crash loop is over
        for index in range(1, self.target + 1):
            if index not in self.slots and index not in self.finished and time.monotonic() >= self.next_spawn_at:
                self._spawn(index)
        if self.rolling and all(child.ready for child in self.slots.values()):
            index = self.rolling.pop(0)
            if index in self.slots:
                self._retire(self.slots[index], "reload (SIGHUP)")
