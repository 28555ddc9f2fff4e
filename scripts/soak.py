"""Soak: many jobs through a pre-forked pool while faults hit it at random times; no job may be lost.

    python scripts/soak.py [--jobs 100000] [--minutes 10] [--processes 2] [--concurrency 50]
                           [--fault-every 15:45] [--seed N] [--job-seconds 0.25] [--settle-minutes 10]
                           [--hosts 1] [--cut-seconds 60]

Starts its own redis-server (AOF on, so a restart keeps the data) and ``rq-gevent worker -n P -c C``,
enqueues ``--jobs`` jobs of the ledger (scripts/ledger.py: unique ids, each run counted)
spread evenly over ``--minutes``, and meanwhile injects, at random intervals within
``--fault-every`` seconds, one of these (each once per round of five, in a random order):

* ``kill -9`` of a worker process mid-job (the launcher replaces it);
* Redis restarted (down 1-5 s; one time in five, 30 s);
* ``CLIENT KILL`` of every worker connection, five times in two seconds;
* SIGTERM of the pool (warm shutdown), or SIGTERM twice (cold), then a new pool.

With ``--hosts N`` (N >= 2; root), each pool runs on a host of its own, a network namespace
(scripts/peers/hosts.py) reaching Redis over a bridge, and one more fault joins the round: a host's
link cut for ``--cut-seconds``, silently, then restored.  The other faults hit a random host's pool.

Then it lets the system recover, stops the pool and prints the ledger: every job finished, failed
with its reason, still pending, or lost; and the duplicates (jobs that ran more than once).
Exits 1 if any job is lost or still pending, 0 otherwise.  The workers' log is kept in a file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(SCRIPTS))

import redis  # noqa: E402
from ledger import Ledger  # noqa: E402
from peers.hosts import Fleet  # noqa: E402

from rq_gevent.core.shutdown import COLD_SHUTDOWN_HINT  # noqa: E402
from rq_gevent.embedded_redis import EmbeddedRedis  # noqa: E402

# Results and failures outlive the soak, so the final account can read every job.
KEEP = {"result_ttl": 24 * 3600, "failure_ttl": 24 * 3600}
BATCH = 100
LONG_EVERY, LONG_SECONDS = 10, 3.0
# Executions of killed workers expire 65 s after their last heartbeat; maintenance every 30 s.
WORKER_ARGS = ["--job-monitoring-interval", "5", "--maintenance-interval", "30"]
# How long the systemd unit we ship (scripts/rq-gevent.service, RestartSec) waits before starting a
# pool that exited on its own.
RESTART_SECONDS = 2


class Pool:
    """``rq-gevent worker -n P -c C`` as a subprocess; the soak stops and starts it again."""

    def __init__(self, url: str, processes: int, concurrency: int, log_path: Path, host: list[str] = ()) -> None:
        self.command = [
            *host, sys.executable, "-m", "rq_gevent", "worker", "-P", str(SCRIPTS), "-u", url,
            "-n", str(processes), "-c", str(concurrency), *WORKER_ARGS, "ledger",
        ]  # fmt: skip
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.process: subprocess.Popen | None = None
        self.cold_shutdowns_unchecked = 0  # second SIGTERMs sent before every child had taken the first
        self.restarts_on_exit: list[int] = []  # exit codes of a pool that stopped on its own
        self._lock = threading.Lock()  # between the soak's own stop-and-start and the supervisor's restart
        self._stopping = False
        threading.Thread(target=self._supervise, daemon=True).start()

    def start(self) -> None:
        with self._lock:
            self._spawn()
            self._stopping = False

    def _spawn(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)

    def _supervise(self) -> None:
        """Start the pool again RESTART_SECONDS after it exits on its own, as the systemd unit we ship does
        (``Restart=always``): a pool started while Redis is down gives up after five start-ups (its
        crash-loop rule) and exits 1."""
        while True:
            time.sleep(0.5)
            with self._lock:
                code = None if self.process is None or self._stopping else self.process.poll()
            if code is None:
                continue
            time.sleep(RESTART_SECONDS)
            with self._lock:
                if self._stopping or self.process.poll() is None:
                    continue
                self.restarts_on_exit.append(code)
                print(f"soak: the pool exited with code {code} on its own; started again after "
                      f"{RESTART_SECONDS} s, as systemd's Restart=always would", flush=True)  # fmt: skip
                self._spawn()

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except OSError:
            return []

    def shut_down(self, cold: bool = False, timeout: float = 120) -> int:
        with self._lock:
            self._stopping = True
        children, log_offset = self.children(), self.log_path.stat().st_size
        self.process.send_signal(signal.SIGTERM)
        if cold:
            self._wait_for_warm_shutdowns(children, log_offset)
            time.sleep(1.1)  # a second signal within 1 s of a process's first is taken for a duplicate
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"soak: pool did not stop within {timeout} s; killing it", flush=True)
            self.process.kill()
            return self.process.wait()

    def _wait_for_warm_shutdowns(self, children: list[int], log_offset: int, timeout: float = 30) -> None:
        """Until each of ``children`` logged that it took the first SIGTERM (the launcher passed it on), or
        exited: the second one is then a second one to every process, not a duplicate."""
        deadline = time.monotonic() + timeout
        waiting = set(children)
        while waiting and time.monotonic() < deadline:
            with open(self.log_path, "rb") as log:
                log.seek(log_offset)
                lines = log.read().decode(errors="replace").splitlines()
            begun = {pid for pid in waiting for line in lines if f" pid {pid}] " in line and COLD_SHUTDOWN_HINT in line}
            waiting = {pid for pid in waiting - begun if Path(f"/proc/{pid}").exists()}
            time.sleep(0.05)
        if waiting:
            print(f"soak: children {sorted(waiting)} did not log a warm shutdown within {timeout:.0f} s", flush=True)
            self.cold_shutdowns_unchecked += 1


class Faults:
    def __init__(
        self,
        rng: random.Random,
        pools: list[Pool],
        server: EmbeddedRedis,
        connection: redis.Redis,
        fleet: Fleet | None = None,
        cut_seconds: float = 60.0,
    ) -> None:
        self.rng = rng
        self.pools = pools
        self.fleet = fleet
        self.cut_seconds = cut_seconds
        self.cuts: list[threading.Thread] = []
        self.pool = pools[0]  # the one the next fault hits
        self.server = server
        self.connection = connection
        self.done: Counter[str] = Counter()
        self.connections_killed = 0
        self._order: list[str] = []

    def inject_one(self) -> None:
        kinds = {
            "kill -9": self._kill_9,
            "Redis restart": self._redis_restart,
            "CLIENT KILL": self._client_kill,
            "SIGTERM warm": self._sigterm_warm,
            "SIGTERM cold": self._sigterm_cold,
        }
        if self.fleet is not None:
            kinds["host cut"] = self._cut_host
        if not self._order:  # every kind once per round, in a random order
            self._order = self.rng.sample(sorted(kinds), len(kinds))
        kind = self._order.pop()
        self.pool = self.rng.choice(self.pools)
        kinds[kind]()
        self.done[kind] += 1
        print(f"soak: fault injected: {kind}", flush=True)

    def _kill_9(self) -> None:
        children = self.pool.children()
        if children:
            os.kill(self.rng.choice(children), signal.SIGKILL)

    def _redis_restart(self) -> None:
        down_for = 30 if self.rng.random() < 0.2 else self.rng.uniform(1, 5)
        self.server.restart(down_for=down_for)
        self.done[f"Redis down {down_for:.0f} s"] += 1

    def _client_kill(self) -> None:
        for _ in range(5):
            for kind in ("normal", "pubsub"):
                try:
                    self.connections_killed += self.connection.client_kill_filter(_type=kind, skipme=True)
                except redis.RedisError:
                    pass
            time.sleep(0.4)

    def _sigterm_warm(self) -> None:
        self.pool.shut_down()
        self.pool.start()

    def _sigterm_cold(self) -> None:
        self.pool.shut_down(cold=True)
        self.pool.start()

    def _cut_host(self) -> None:
        host = self.pools.index(self.pool)
        self.fleet.cut(host)

        def restore_later() -> None:
            time.sleep(self.cut_seconds)
            self.fleet.restore(host)
            print(f"soak: host {host}'s link restored after {self.cut_seconds:.0f} s", flush=True)

        self.cuts.append(threading.Thread(target=restore_later, daemon=True))
        self.cuts[-1].start()

    def wait_for_cuts(self) -> None:
        for cut in self.cuts:
            cut.join()


def enqueue_spread(ledger: Ledger, total: int, seconds: float, job_seconds: float, stop: threading.Event) -> None:
    """Enqueue ``total`` jobs in batches spread evenly over ``seconds``, riding out Redis faults.
    One job in ``LONG_EVERY`` waits ``LONG_SECONDS``, so a cold shutdown (its second SIGTERM comes
    1.1 s after the first) finds jobs to interrupt."""
    started = time.monotonic()
    batches = max(1, -(-total // BATCH))
    for number in range(batches):
        time.sleep(max(0.0, started + number * seconds / batches - time.monotonic()))
        if stop.is_set():
            return
        count = min(BATCH, total - len(ledger.job_ids))
        long_ones = count // LONG_EVERY
        _enqueue(ledger, count - long_ones, job_seconds)
        _enqueue(ledger, long_ones, LONG_SECONDS)


def _enqueue(ledger: Ledger, count: int, job_seconds: float) -> None:
    while count:
        try:
            ledger.enqueue(count, seconds=job_seconds, **KEEP)
            return
        except redis.RedisError:
            time.sleep(0.5)
            # One MULTI: it applied entirely or not at all. Only its answer may have been lost.
            if _exists(ledger.connection, f"rq:job:{ledger.next_ids(count)[0]}"):
                ledger.job_ids += ledger.next_ids(count)
                return


def _exists(connection: redis.Redis, key: str) -> bool:
    while True:
        try:
            return bool(connection.exists(key))
        except redis.RedisError:
            time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, default=10.0, help="spread the jobs over this long")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--fault-every", default="15:45", help="MIN:MAX seconds between faults")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--job-seconds", type=float, default=0.25, help="each job waits this long (green)")
    parser.add_argument("--settle-minutes", type=float, default=10.0, help="time allowed to recover at the end")
    parser.add_argument("--hosts", type=int, default=1, help="pools, each on a host (network namespace) of its own")
    parser.add_argument("--cut-seconds", type=float, default=60.0, help="how long a host cut lasts (--hosts >= 2)")
    options = parser.parse_args()
    if options.hosts < 1:
        parser.error("--hosts must be at least 1")
    low, _, high = options.fault_every.partition(":")
    fault_every = (float(low), float(high or low))
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(10**6)
    rng = random.Random(seed)

    work_dir = Path(tempfile.mkdtemp(prefix="rq-gevent-soak-"))
    log_path = work_dir / "workers.log"
    print(f"soak: {options.jobs} jobs over {options.minutes} min, {options.processes} processes x "
          f"{options.concurrency} greenlets, faults every {options.fault_every} s, seed {seed}; log {log_path}",
          flush=True)  # fmt: skip
    with contextlib.ExitStack() as stack:
        fleet = stack.enter_context(Fleet(options.hosts)) if options.hosts > 1 else None
        bind = ["--bind", "127.0.0.1", fleet.redis_address, "--protected-mode", "no"] if fleet else []
        server = stack.enter_context(EmbeddedRedis(appendonly=True, extra_args=bind))
        connection = redis.Redis.from_url(server.url)
        ledger = Ledger(connection)
        url = f"redis://{fleet.redis_address}:{server.port}/0" if fleet else server.url
        pools = [
            Pool(url, options.processes, options.concurrency, log_path, ["ip", "netns", "exec", host] if fleet else [])
            for host in (fleet.hosts if fleet else [None])
        ]
        faults = Faults(rng, pools, server, connection, fleet, options.cut_seconds)
        for pool in pools:
            pool.start()
        started = time.monotonic()
        stop = threading.Event()
        producer = threading.Thread(
            target=enqueue_spread,
            args=(ledger, options.jobs, options.minutes * 60, options.job_seconds, stop),
            daemon=True,
        )
        producer.start()
        next_fault = started + rng.uniform(*fault_every)
        next_report = started + 30
        while producer.is_alive():
            time.sleep(0.2)
            now = time.monotonic()
            if now >= next_fault:
                faults.inject_one()
                next_fault = time.monotonic() + rng.uniform(*fault_every)
            if now >= next_report:
                _report_progress(connection, ledger, started)
                next_report = now + 30
        enqueued_in = time.monotonic() - started

        print(f"soak: all {len(ledger.job_ids)} enqueued; letting the pools recover", flush=True)
        faults.wait_for_cuts()
        ledger.settle(timeout=options.settle_minutes * 60)
        elapsed = time.monotonic() - started
        exit_code = max(pool.shut_down() for pool in pools)
        account = ledger.account()

    log_text = log_path.read_text(errors="replace")
    crashes = log_text.count("unhandled exception in the work loop")
    tracebacks = log_text.count("Traceback (most recent call last)")
    print()
    print(f"soak: {len(ledger.job_ids)} jobs enqueued over {enqueued_in:.0f} s, all settled after {elapsed:.0f} s "
          f"({len(ledger.job_ids) / elapsed:.0f} jobs/s); seed {seed}")  # fmt: skip
    print(f"faults: {', '.join(f'{count} {kind}' for kind, count in sorted(faults.done.items()))}; "
          f"{faults.connections_killed} connections killed")  # fmt: skip
    print(f"ledger: {account}")
    restarted = [code for pool in pools for code in pool.restarts_on_exit]
    print(
        f"pool exit code {exit_code}; work-loop crashes {crashes}; tracebacks in the log {tracebacks} ({log_path}); "
        f"pools that exited on their own and were started again: {len(restarted)} (exit codes {restarted})"
    )
    for lost in account.lost[:20]:
        print(f"  lost: {lost}")
    unchecked = sum(pool.cold_shutdowns_unchecked for pool in pools)
    if account.lost or account.pending or unchecked:
        print(f"soak: FAILED: {len(account.lost)} lost, {account.pending} still pending, {unchecked} cold "
              "shutdowns whose second SIGTERM may have been taken for a duplicate")  # fmt: skip
        return 1
    print("soak: no job lost")
    return 0


def _report_progress(connection: redis.Redis, ledger: Ledger, started: float) -> None:
    try:
        finished = connection.zcard("rq:finished:ledger")
    except redis.RedisError:
        finished = "?"
    print(f"soak: {time.monotonic() - started:.0f} s: {len(ledger.job_ids)} enqueued, {finished} finished", flush=True)


if __name__ == "__main__":
    sys.exit(main())
