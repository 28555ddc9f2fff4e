"""rq-gevent against the workers users would pick instead, in one run on one machine.

    pip install -e '.[bench]'
    python scripts/bench.py [--jobs 2000] [--concurrency 50,100] [--processes 2]
                            [--repeat 1] [--systems a,b,...] [--workloads noop,io50,mail]
                            [--busy-loops 0] [--out scripts/bench_results]

Starts its own redis-server (and, for the ``mail`` workload, a local SMTP server), then for each
workload, and each number of slots C of ``--concurrency``, runs the same ``--jobs`` jobs through
each system, one system at a time (``--repeat`` rounds of that; each system's run with the median
jobs/s is reported, with the range beside it).  Every concurrent system runs C jobs at once, in all
its processes together: comparing systems at unequal concurrency measures the settings, not the
code (an io50 job holds its slot 50 ms: C slots can do at most C / 50 ms jobs/s, the ceiling).

==================  =====================================================
``rq-gevent``       ``rq-gevent worker -c C`` (one process)
``rq-gevent-rqcode`` ``rq-gevent worker -c C -w benchworkers.RqOwnCodeWorker``: rq's own code for the
                    writes the Lua scripts make (the scripts' worth)
``rq-gevent-nP``    ``rq-gevent worker -n P -c C/P`` (the pre-fork launcher)
``rq-gevent-metrics`` ``rq-gevent worker -c C --metrics-port`` scraped every second
``rq-gevent-nP-metrics`` ``rq-gevent worker -n P -c C/P --metrics-port`` scraped every second
``rq``              ``rq worker`` (forks a work horse per job; one slot, run once per workload)
``rq-simple``       ``rq worker -w rq.worker.SimpleWorker`` (one slot, run once per workload)
``rq-pool``         ``rq worker-pool -n P`` (P slots, run once per workload)
``celery``          ``celery worker -P gevent -c C`` (Redis broker, no result backend)
``dramatiq``        ``dramatiq-gevent -p 1 -t C`` (Redis broker)
``dramatiq-nP``     ``dramatiq-gevent -p P -t C/P``
``floor``           the job bodies alone, in a gevent pool of C (``scripts/bench_floor.py``)
==================  =====================================================

Workloads: ``noop``; ``io50``, a 50 ms ``time.sleep`` (green where gevent patched the process);
``mail``, one real mail to the local SMTP server.  Every job body is the same function
(``scripts/benchjobs.py``) and records itself with one RPUSH (enqueued, started, ended).  Every
system logs at WARNING.  The queue is filled before the worker starts.  ``rq_gevent`` and these
scripts are compiled to bytecode first, as installing a wheel does.  Per run:

* jobs/s: jobs / (worker spawned -> last job ended); steady: from the first job's end to the last's;
* CPU ms per job of the worker's process tree and of redis-server, over the steady window;
* peak RSS of the worker's process tree (RSS summed over processes), and of its largest process;
* Redis commands and round trips per job over the steady window, from ``INFO commandstats`` and
  ``total_reads_processed`` (one read event per request or pipeline the server receives), minus
  the jobs' own RPUSH and this script's polling.

Then, per system, enqueue-to-start latency of an idle worker (``--latency-jobs`` no-op jobs, one at a
time, timed from just before the enqueue call), and the peak RSS of one rq-gevent process running
1,000 jobs at once.  Writes ``bench.json``, ``bench.md`` (the tables) and ``bench.png`` (the chart)
to ``--out``; prints the tables and the targets.  Throughput targets are ratios of steady jobs/s at
equal concurrency (issue #38); the ratio over the whole run (N jobs from spawning the worker) and
both systems' CPU per job are shown beside each; worker CPU per job and peak RSS against Dramatiq
too.  Redis CPU and commands per job are reported, with no target: rq's data model costs about 26
commands a job against Dramatiq's 6.  A last table turns CPU per job into what one core does: jobs/s per worker core,
and jobs/s one Redis can serve (the fleet's ceiling); and gives each system's CPU and Redis CPU per
job above the ``floor``'s: what the system itself costs, the job body taken out.  Exits 1 if a
target is missed or a run failed.

``--busy-loops N`` makes the day a slow one: N processes that only spin run beside everything for
the whole run, as other tenants of a shared machine would (4 on 2 cores: each process of the run gets
about a third of a core when it wants one).  CPU per job is still each system's own; jobs/s then
shows who turns a scarce CPU into the most jobs.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import itertools
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(SCRIPTS))

import psutil  # noqa: E402
import redis  # noqa: E402
from benchjobs import DONE_KEY, FLOOR_PLAN_KEY  # noqa: E402
from rq import Queue  # noqa: E402
from rq.registry import StartedJobRegistry  # noqa: E402

from rq_gevent.embedded_redis import EmbeddedRedis, free_port  # noqa: E402

RQ_QUEUE = "bench"
BIN = Path(sys.executable).parent
WORKLOADS = ["noop", "io50", "mail"]
IO_SECONDS = 0.05
INFLIGHT_JOBS = 1000
INFLIGHT_JOB_SECONDS = 5.0
METRICS_PORT = free_port()
# Prometheus scrapes every 15-60 s; once a second makes any cost of scraping show.
SCRAPE_INTERVAL = 1.0
# Each system with --metrics-port, and the same command without it.
WITH_METRICS = {"rq-gevent-metrics": "rq-gevent", "rq-gevent-nP-metrics": "rq-gevent-nP"}


@dataclass
class Options:
    jobs: int
    concurrency: list[int]  # the numbers of slots compared, each run by every concurrent system
    processes: int
    latency_jobs: int
    busy_loops: int = 0


@dataclass
class System:
    name: str
    family: str  # how jobs are enqueued: rq, celery or dramatiq
    command: Callable[[str, Options, int], list[str]]  # (Redis URL, options, slots)
    concurrent: bool = True  # runs once at each --concurrency; else once per workload, its own slots

    def slots(self, options: Options, slots: int) -> int:
        """Jobs it runs at once when asked for ``slots``: all its processes together."""
        if not self.concurrent:
            return options.processes if self.name == "rq-pool" else 1
        return per_process(slots, options) * options.processes if self.name.endswith(("-nP", "-nP-metrics")) else slots


def per_process(slots: int, options: Options) -> int:
    return max(1, slots // options.processes)


def _rq_gevent(*args: str) -> Callable[[str, Options, int], list[str]]:
    """``rq-gevent worker -c C`` with ``args``; ``-n P -c C/P`` where ``args`` hold ``-n``."""

    def command(url: str, o: Options, slots: int) -> list[str]:
        each = per_process(slots, o) if "-n" in args else slots
        options = [str(o.processes) if word == "P" else word for word in args]
        return [str(BIN / "rq-gevent"), "worker", "-u", url, "-q", *options, "-c", str(each), RQ_QUEUE]

    return command


_METRICS = ("--metrics-port", str(METRICS_PORT), "--metrics-host", "127.0.0.1")

SYSTEMS = [
    System("rq-gevent", "rq", _rq_gevent()),
    System("rq-gevent-rqcode", "rq", _rq_gevent("-w", "benchworkers.RqOwnCodeWorker")),
    System("rq-gevent-nP", "rq", _rq_gevent("-n", "P")),
    System("rq-gevent-metrics", "rq", _rq_gevent(*_METRICS)),
    System("rq-gevent-nP-metrics", "rq", _rq_gevent("-n", "P", *_METRICS)),
    System("rq", "rq", lambda url, o, c: [str(BIN / "rq"), "worker", "-u", url, "-q", RQ_QUEUE], concurrent=False),
    System("rq-simple", "rq", lambda url, o, c: [str(BIN / "rq"), "worker", "-u", url, "-q",
                                                 "-w", "rq.worker.SimpleWorker", RQ_QUEUE], concurrent=False),
    System("rq-pool", "rq", lambda url, o, c: [str(BIN / "rq"), "worker-pool", "-u", url, "-q",
                                               "-n", str(o.processes), RQ_QUEUE], concurrent=False),
    System("celery", "celery", lambda url, o, c: [str(BIN / "celery"), "-A", "benchapp_celery", "worker",
                                                  "-P", "gevent", "-c", str(c), "--loglevel", "WARNING"]),
    System("dramatiq", "dramatiq", lambda url, o, c: [str(BIN / "dramatiq-gevent"), "benchapp_dramatiq",
                                                      "-p", "1", "-t", str(c)]),
    System("dramatiq-nP", "dramatiq", lambda url, o, c: [str(BIN / "dramatiq-gevent"), "benchapp_dramatiq",
                                                         "-p", str(o.processes), "-t", str(per_process(c, o))]),
    System("floor", "floor", lambda url, o, c: [sys.executable, str(SCRIPTS / "bench_floor.py"), "-c", str(c)]),

]  # fmt: skip
SYSTEM_BY_NAME = {system.name: system for system in SYSTEMS}


def label(system: System, options: Options, slots: int) -> str:
    """The command a reader would type, shortened: ``rq-gevent -n 2 -c 50``."""
    processes, each = options.processes, per_process(slots, options)
    return {
        "rq-gevent": f"rq-gevent -c {slots}",
        "rq-gevent-rqcode": f"rq-gevent -c {slots}, rq's code for the scripts' writes",
        "rq-gevent-nP": f"rq-gevent -n {processes} -c {each}",
        "rq-gevent-metrics": f"rq-gevent -c {slots} --metrics-port, scraped 1/s",
        "rq-gevent-nP-metrics": f"rq-gevent -n {processes} -c {each} --metrics-port, scraped 1/s",
        "rq": "rq worker",
        "rq-simple": "rq worker -w SimpleWorker",
        "rq-pool": f"rq worker-pool -n {processes}",
        "celery": f"celery -P gevent -c {slots}",
        "dramatiq": f"dramatiq-gevent -p 1 -t {slots}",
        "dramatiq-nP": f"dramatiq-gevent -p {processes} -t {each}",
        "floor": f"floor: job bodies, gevent pool of {slots}",
    }[system.name]


# -- enqueueing, in each system's own API ------------------------------------------------------------


class Enqueuer:
    def __init__(self, family: str, connection: redis.Redis, smtp_port: int) -> None:
        self.family = family
        self.smtp_port = smtp_port
        self.connection = connection
        if family == "rq":
            self.queue = Queue(RQ_QUEUE, connection=connection)
        elif family == "celery":
            import benchapp_celery

            self.app = benchapp_celery
        elif family == "dramatiq":
            import benchapp_dramatiq

            self.app = benchapp_dramatiq

    def args(self, workload: str, enqueued_at: float) -> tuple:
        return {
            "noop": (enqueued_at,),
            "io50": (IO_SECONDS, enqueued_at),
            "inflight": (INFLIGHT_JOB_SECONDS, enqueued_at),
            "mail": (self.smtp_port, enqueued_at),
        }[workload]

    def function(self, workload: str) -> str:
        return {"noop": "noop", "io50": "io", "inflight": "io", "mail": "mail"}[workload]

    def many(self, workload: str, count: int) -> None:
        function = self.function(workload)
        if self.family == "floor":
            plan = [[f"bench_{function}", self.args(workload, time.time())] for _ in range(count)]
            self.connection.set(FLOOR_PLAN_KEY, json.dumps(plan))
            return
        if self.family == "rq":
            for start in range(0, count, 500):
                self.queue.enqueue_many([
                    Queue.prepare_data(f"benchjobs.bench_{function}", args=self.args(workload, time.time()))
                    for _ in range(min(500, count - start))
                ])  # fmt: skip
            return
        for _ in range(count):
            self.one(workload, function)

    def one(self, workload: str, function: str | None = None) -> None:
        function = function or self.function(workload)
        args = self.args(workload, time.time())
        if self.family == "rq":
            self.queue.enqueue(f"benchjobs.bench_{function}", args=args)
        elif self.family == "celery":
            getattr(self.app, function).apply_async(args)
        else:
            getattr(self.app, function).send(*args)


# -- watching the worker's processes -----------------------------------------------------------------


class ProcessTree:
    """CPU and memory of a process and all its descendants (forked children included)."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak_rss = 0
        self.peak_process_rss = 0  # of its largest process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def processes(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """CPU of the live processes plus, through their children_* times, of those already reaped."""
        total = 0.0
        for process in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            rss = 0
            for process in self.processes():
                with contextlib.suppress(psutil.NoSuchProcess):
                    one = process.memory_info().rss
                    rss += one
                    self.peak_process_rss = max(self.peak_process_rss, one)
            self.peak_rss = max(self.peak_rss, rss)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def running(system: System, url: str, options: Options, slots: int, log: Path) -> Iterator[subprocess.Popen]:
    env = dict(os.environ, BENCH_REDIS_URL=url, PYTHONPATH=os.pathsep.join([str(SCRIPTS), str(REPO)]))
    with open(log, "ab") as log_file:
        process = subprocess.Popen(system.command(url, options, slots), stdout=log_file, stderr=subprocess.STDOUT,
                                   env=env, cwd=SCRIPTS, start_new_session=True)  # fmt: skip
        try:
            yield process
        finally:
            stop(process)


@contextlib.contextmanager
def scraping(system: System, run: Run) -> Iterator[None]:
    """For a system with metrics: fetch /metrics every SCRAPE_INTERVAL while the run lasts."""
    if system.name not in WITH_METRICS:
        yield
        return
    import urllib.request

    done = threading.Event()

    def scrape() -> None:
        while not done.wait(SCRAPE_INTERVAL):
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as response:
                    response.read()
                run.scrapes += 1

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stray children of a master that exited


# -- one throughput run ------------------------------------------------------------------------------


@dataclass
class RedisSnapshot:
    commands: int
    reads: int
    cpu: float
    own_requests: int  # this script's own requests (polls) so far

    @classmethod
    def take(cls, connection: redis.Redis, own_requests: int) -> RedisSnapshot:
        info = connection.info("all")
        commands = sum(value["calls"] for key, value in info.items() if key.startswith("cmdstat_"))
        return cls(commands, info["total_reads_processed"], info["used_cpu_user"] + info["used_cpu_sys"], own_requests)


@dataclass
class Run:
    system: str
    label: str
    workload: str
    jobs: int
    slots: int  # jobs it runs at once, all its processes together
    error: str = ""
    jobs_per_s: float = 0.0
    steady_jobs_per_s: float = 0.0
    cpu_ms_per_job: float = 0.0
    redis_cpu_ms_per_job: float = 0.0
    peak_rss_mb: float = 0.0
    peak_process_rss_mb: float = 0.0  # its largest process
    redis_commands_per_job: float = 0.0
    round_trips_per_job: float = 0.0
    scrapes: int = 0  # rq-gevent-metrics: answered fetches of /metrics during the run
    jobs_per_s_of_each_run: list[float] = field(default_factory=list)


def median_run(repeats: list[Run]) -> Run:
    """The run with the median jobs/s (a failed run wins: failures are reported, not averaged away)."""
    failed = [r for r in repeats if r.error]
    if failed:
        return failed[0]
    ranked = sorted(repeats, key=lambda r: r.jobs_per_s)
    median = ranked[(len(ranked) - 1) // 2]
    median.jobs_per_s_of_each_run = [r.jobs_per_s for r in repeats]
    return median


def throughput_run(system: System, workload: str, url: str, options: Options, slots: int, smtp_port: int,
                   log: Path) -> Run:  # fmt: skip
    connection = redis.Redis.from_url(url)
    connection.flushall()
    run = Run(system.name, label(system, options, slots), workload, options.jobs, system.slots(options, slots))
    Enqueuer(system.family, connection, smtp_port).many(workload, options.jobs)
    deadline = time.monotonic() + 60 + options.jobs / 5
    requests = 0
    spawned = time.time()
    with running(system, url, options, slots, log) as process, scraping(system, run):
        tree = ProcessTree(process.pid)
        first: tuple[int, float, RedisSnapshot] | None = None
        done = 0
        while done < options.jobs:
            if time.monotonic() > deadline or process.poll() is not None:
                run.error = f"{done} of {options.jobs} jobs done, " + (
                    f"worker exited {process.returncode}" if process.poll() is not None else "timed out"
                )
                break
            time.sleep(0.05)
            done = connection.llen(DONE_KEY)
            requests += 1
            if first is None and done:
                first = (done, tree.cpu_seconds(), RedisSnapshot.take(connection, requests))
                requests += 1
        last = (done, tree.cpu_seconds(), RedisSnapshot.take(connection, requests))
        tree.stop()
    run.peak_rss_mb = tree.peak_rss / 2**20
    run.peak_process_rss_mb = tree.peak_process_rss / 2**20
    if run.error or first is None:
        return run
    ended = sorted(float(record.split()[2]) for record in connection.lrange(DONE_KEY, 0, -1))
    run.jobs_per_s = len(ended) / (ended[-1] - spawned)
    run.steady_jobs_per_s = (len(ended) - 1) / (ended[-1] - ended[0]) if ended[-1] > ended[0] else 0.0
    jobs = last[0] - first[0]
    if jobs > 0:
        before, after = first[2], last[2]
        own = after.own_requests - before.own_requests
        run.cpu_ms_per_job = (last[1] - first[1]) / jobs * 1000
        run.redis_cpu_ms_per_job = (after.cpu - before.cpu) / jobs * 1000
        run.redis_commands_per_job = (after.commands - before.commands - own - jobs) / jobs
        run.round_trips_per_job = (after.reads - before.reads - own - jobs) / jobs
    return run


# -- latency of an idle worker, and memory with many jobs in flight ---------------------------------


@dataclass
class Latency:
    system: str
    label: str
    jobs: int
    error: str = ""
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    samples_ms: list[float] = field(default_factory=list, repr=False)


def latency_run(system: System, url: str, options: Options, log: Path) -> Latency:
    """With the largest ``--concurrency``."""
    connection = redis.Redis.from_url(url)
    connection.flushall()
    slots = max(options.concurrency)
    result = Latency(system.name, label(system, options, slots), options.latency_jobs)
    enqueuer = Enqueuer(system.family, connection, 0)
    with running(system, url, options, slots, log):
        enqueuer.one("noop")  # warm up: the worker is up once this is done
        if connection.blpop([DONE_KEY], 120) is None:
            result.error = "the worker ran no job within 120 s"
            return result
        time.sleep(1.0)
        rng = random.Random(7)
        for _ in range(options.latency_jobs):
            enqueuer.one("noop")
            popped = connection.blpop([DONE_KEY], 30)
            if popped is None:
                result.error = "a job did not run within 30 s"
                return result
            enqueued, started, _ = (float(part) for part in popped[1].split())
            result.samples_ms.append((started - enqueued) * 1000)
            time.sleep(rng.uniform(0.01, 0.05))
    samples = sorted(result.samples_ms)
    result.p50_ms = statistics.median(samples)
    result.p90_ms = samples[int(len(samples) * 0.9) - 1]
    result.p99_ms = samples[max(int(len(samples) * 0.99) - 1, 0)]
    return result


def inflight_run(url: str, options: Options, log: Path) -> dict:
    """Peak RSS of one rq-gevent process with ``INFLIGHT_JOBS`` jobs running at once."""
    connection = redis.Redis.from_url(url)
    connection.flushall()
    Enqueuer("rq", connection, 0).many("inflight", INFLIGHT_JOBS)
    system = next(s for s in SYSTEMS if s.name == "rq-gevent")
    started_key = StartedJobRegistry(RQ_QUEUE, connection=connection).key
    most = 0
    with running(system, url, options, INFLIGHT_JOBS, log) as process:
        tree = ProcessTree(process.pid)
        deadline = time.monotonic() + 120
        while connection.llen(DONE_KEY) < INFLIGHT_JOBS and time.monotonic() < deadline:
            most = max(most, connection.zcard(started_key))
            time.sleep(0.1)
        tree.stop()
    done = connection.llen(DONE_KEY)
    return {"label": label(system, options, INFLIGHT_JOBS), "jobs": INFLIGHT_JOBS, "job_seconds": INFLIGHT_JOB_SECONDS,
            "most_in_flight": most, "done": done, "peak_rss_mb": tree.peak_rss / 2**20}  # fmt: skip


@contextlib.contextmanager
def busy_loops(count: int) -> Iterator[None]:
    """``count`` processes that only spin, at the run's own priority, until the block ends."""
    spinning = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for process in spinning:
            process.kill()
            process.wait()


@contextlib.contextmanager
def smtp_server(workdir: Path) -> Iterator[int]:
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "peers" / "smtp_sink.py")]
        + ["--port", str(port), "--maildir", str(workdir / "mail")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if not sink.stdout.readline().startswith("ready"):
            raise SystemExit("bench: the SMTP server did not start")
        yield port
    finally:
        sink.terminate()
        sink.wait()


# -- targets and report ------------------------------------------------------------------------------


@dataclass
class Target:
    what: str
    measured: float
    goal: float | None  # None: reported, no goal
    higher_is_better: bool = True
    whole: float | None = None  # the same ratio over the whole run (from spawning the worker), shown beside it
    cpu: str = ""  # CPU ms per job of the two systems compared, shown beside a throughput ratio

    @property
    def met(self) -> bool:
        if self.goal is None:
            return True
        return self.measured >= self.goal if self.higher_is_better else self.measured <= self.goal


def targets(runs: list[Run], latencies: list[Latency], inflight: dict | None, options: Options) -> list[Target]:
    """Issue #38's targets at equal concurrency (and the earlier ones that still hold), for each
    number of slots; ``None`` goals are reported only."""

    def run_of(system: str, workload: str, slots: int) -> Run | None:
        return next((r for r in runs if r.system == system and r.workload == workload and not r.error
                     and (r.slots == slots or not SYSTEM_BY_NAME[system].concurrent)), None)  # fmt: skip

    found: list[Target] = []

    def throughput(what: str, workload: str, slots: int, mine: str, theirs: str, goal: float | None) -> None:
        ours, their = run_of(mine, workload, slots), run_of(theirs, workload, slots)
        if ours is None or their is None or not their.steady_jobs_per_s or not their.jobs_per_s:
            return
        found.append(Target(f"{workload}, {slots} slots: {what}", ours.steady_jobs_per_s / their.steady_jobs_per_s,
                            goal, whole=ours.jobs_per_s / their.jobs_per_s,
                            cpu=f"{ours.cpu_ms_per_job:.2f} / {their.cpu_ms_per_job:.2f}"))  # fmt: skip

    def per_job(what: str, workload: str, slots: int, measure: Callable[[Run], float], goal: float | None) -> None:
        ours, dramatiq = run_of("rq-gevent", workload, slots), run_of("dramatiq", workload, slots)
        if ours is not None and dramatiq is not None and measure(dramatiq):
            found.append(Target(f"{workload}, {slots} slots: {what}, rq-gevent / dramatiq-gevent",
                                measure(ours) / measure(dramatiq), goal, higher_is_better=False))  # fmt: skip

    largest = max(options.concurrency)
    for slots in options.concurrency:
        for workload, goal in (("io50", 1.0), ("noop", 1.0), ("mail", None)):
            throughput("rq-gevent / dramatiq-gevent", workload, slots, "rq-gevent", "dramatiq", goal)
        ours = run_of("rq-gevent", "io50", slots)
        if ours is not None:
            ceiling = slots / IO_SECONDS
            found.append(Target(f"io50, {slots} slots: rq-gevent / the ceiling ({ceiling:.0f} jobs/s)",
                                ours.steady_jobs_per_s / ceiling, 0.9 if slots == 100 else None,
                                whole=ours.jobs_per_s / ceiling))  # fmt: skip
        per_job("worker CPU per job", "noop", slots, lambda r: r.cpu_ms_per_job, 1.0)
        per_job("peak RSS of one process", "noop", slots, lambda r: r.peak_process_rss_mb,
                1.2 if slots == 100 else None)  # fmt: skip
        for workload in WORKLOADS:
            per_job("Redis CPU per job", workload, slots, lambda r: r.redis_cpu_ms_per_job, None)
            throughput(f"rq-gevent -n {options.processes} / dramatiq-gevent -p {options.processes}", workload, slots,
                       "rq-gevent-nP", "dramatiq-nP", None)  # fmt: skip
        throughput("rq-gevent / celery -P gevent", "io50", slots, "rq-gevent", "celery", 2)
        for metered, plain in WITH_METRICS.items():  # metrics on and scraped: within noise of off (issue 19)
            for workload in ("noop", "io50"):
                throughput(f"{metered} / {plain}", workload, slots, metered, plain, 0.95)
        # A pool against one process that runs one job at a time (issue 7), at the most slots.
        if slots == largest:
            throughput("rq-gevent / SimpleWorker", "io50", slots, "rq-gevent", "rq-simple", 20)
            throughput("rq-gevent / SimpleWorker", "noop", slots, "rq-gevent", "rq-simple", 2)
            throughput(f"rq-gevent -n {options.processes} / rq-gevent", "noop", slots, "rq-gevent-nP", "rq-gevent",
                       None)  # fmt: skip
    for run in runs:
        without = WITH_METRICS.get(run.system)
        plain = None if without is None else run_of(without, run.workload, run.slots)
        if not run.error and plain is not None and plain.cpu_ms_per_job:
            found.append(Target(f"{run.workload}, {run.slots} slots: CPU per job, {run.system} / {without}",
                                run.cpu_ms_per_job / plain.cpu_ms_per_job, 1.05, False))  # fmt: skip
        if run.system == "rq-gevent" and not run.error and run.workload in ("noop", "io50"):
            found.append(Target(f"{run.workload}, {run.slots} slots: Redis round trips per job",
                                run.round_trips_per_job, 11, False))  # fmt: skip
    for latency in latencies:
        if latency.system == "rq-gevent" and not latency.error:
            found.append(Target("idle enqueue-to-start p50 (ms)", latency.p50_ms, 5, False))
    if inflight is not None:
        found.append(Target(f"RSS with {inflight['most_in_flight']} jobs in flight (MB)", inflight["peak_rss_mb"], 150,
                            False))  # fmt: skip
    return found


def markdown(runs: list[Run], latencies: list[Latency], inflight: dict | None, found: list[Target]) -> str:
    lines = [
        "| workload | slots | system | jobs/s | steady jobs/s | io50 ceiling | CPU ms/job | Redis CPU ms/job "
        "| peak RSS MB | largest process MB | Redis commands/job | round trips/job |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        if run.error:
            lines.append(f"| {run.workload} | {run.slots} | `{run.label}` | failed: {run.error} | | | | | | | | |")
            continue
        each = run.jobs_per_s_of_each_run
        digits = 0 if min(each, default=0) >= 100 else 1
        spread = f" ({min(each):.{digits}f}-{max(each):.{digits}f})" if len(each) > 1 else ""
        ceiling = f"{run.slots / IO_SECONDS:.0f}" if run.workload == "io50" else ""
        lines.append(
            f"| {run.workload} | {run.slots} | `{run.label}` | {run.jobs_per_s:.1f}{spread} "
            f"| {run.steady_jobs_per_s:.1f} | {ceiling} | {run.cpu_ms_per_job:.2f} | {run.redis_cpu_ms_per_job:.2f} "
            f"| {run.peak_rss_mb:.0f} | {run.peak_process_rss_mb:.0f} | {run.redis_commands_per_job:.1f} "
            f"| {run.round_trips_per_job:.1f} |"
        )
    if latencies:
        lines += ["", "| idle worker | enqueue-to-start p50 ms | p90 ms | p99 ms |", "| --- | ---: | ---: | ---: |"]
        for latency in latencies:
            if latency.error:
                lines.append(f"| `{latency.label}` | failed: {latency.error} | | |")
            else:
                lines.append(
                    f"| `{latency.label}` | {latency.p50_ms:.1f} | {latency.p90_ms:.1f} | {latency.p99_ms:.1f} |"
                )
    if inflight is not None:
        lines += [
            "",
            f"`{inflight['label']}` with {inflight['most_in_flight']} jobs of {inflight['job_seconds']:.0f} s in "
            f"flight: peak RSS {inflight['peak_rss_mb']:.0f} MB ({inflight['done']} of {inflight['jobs']} done).",
        ]
    if found:
        lines += ["", "| target | measured | goal | | whole-run ratio | CPU ms/job, ours / theirs |",
                  "| --- | ---: | ---: | --- | ---: | ---: |"]  # fmt: skip
        for target in found:
            sign = ">=" if target.higher_is_better else "<="
            whole = "" if target.whole is None else f"{target.whole:.2f}"
            goal, verdict = ("", "reported") if target.goal is None else (
                f"{sign} {target.goal:g}", "met" if target.met else "MISSED")  # fmt: skip
            lines.append(f"| {target.what} | {target.measured:.2f} | {goal} | {verdict} | {whole} | {target.cpu} |")
    fleet = [run for run in runs if not run.error and run.cpu_ms_per_job and run.redis_cpu_ms_per_job]
    if fleet:
        lines += ["", "What one core does, from CPU per job: jobs/s one worker core runs, jobs/s one Redis (one core) "
                  "serves: the fleet's ceiling, whatever the number of worker hosts; and CPU ms per job above the "
                  "floor's (the job body alone in a gevent pool): the system's own cost.", "",
                  "| workload | system | jobs/s per worker core | fleet ceiling: jobs/s per Redis | worker cores one "
                  "Redis feeds | CPU ms/job above the floor | Redis CPU ms/job above the floor |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for run in fleet:
            per_core, ceiling = 1000 / run.cpu_ms_per_job, 1000 / run.redis_cpu_ms_per_job
            feeds = ceiling / per_core
            floor = next((r for r in fleet if r.system == "floor" and r.workload == run.workload
                          and r.slots == run.slots), None)  # fmt: skip
            above = ("| | |" if floor is None or run is floor else
                     f"| {run.cpu_ms_per_job - floor.cpu_ms_per_job:.2f} "
                     f"| {run.redis_cpu_ms_per_job - floor.redis_cpu_ms_per_job:.2f} |")  # fmt: skip
            lines.append(f"| {run.workload} | `{run.label}` | {per_core:.0f} | {ceiling:.0f} | {feeds:.1f} {above}")
    return "\n".join(lines) + "\n"


def chart(runs: list[Run], path: Path) -> None:
    """Steady jobs/s, one group of bars per workload and number of slots: systems at equal
    concurrency side by side (one-slot systems in a group of their own)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"noop": "no-op", "io50": "I/O wait 50 ms", "mail": "real mail (SMTP)"}
    groups = list(dict.fromkeys((r.workload, r.slots if SYSTEM_BY_NAME[r.system].concurrent else 0) for r in runs))
    systems = list(dict.fromkeys(r.system for r in runs))
    figure, axes = plt.subplots(figsize=(max(11, 1.6 * len(groups)), 5.5))
    width = 0.8 / max(len(systems), 1)
    for index, system in enumerate(systems):
        values = [next((r.steady_jobs_per_s for r in runs if r.system == system and r.workload == workload
                        and (r.slots == slots or not slots and not SYSTEM_BY_NAME[system].concurrent)), 0.0)
                  for workload, slots in groups]  # fmt: skip
        positions = [g + (index - (len(systems) - 1) / 2) * width for g in range(len(groups))]
        bars = axes.bar(positions, values, width, label=system)
        axes.bar_label(bars, labels=[f"{v:.0f}" if v else "" for v in values], fontsize=7, padding=2)
    axes.set_xticks(range(len(groups)), [f"{names[w]}\n" + (f"{c} slots" if c else "rq's workers") for w, c in groups])
    axes.set_yscale("log")
    axes.set_ylabel("steady jobs/s (log scale)")
    axes.set_title("Jobs per second at equal concurrency, one run on one 2-core machine (scripts/bench.py)")
    axes.legend(fontsize=8, ncols=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def versions(url: str) -> dict[str, str]:
    found = {"python": platform.python_version(), "cpus": str(os.cpu_count()),
             "redis-server": redis.Redis.from_url(url).info("server")["redis_version"]}  # fmt: skip
    for package in ("rq-gevent", "rq", "redis", "hiredis", "gevent", "celery", "kombu", "dramatiq"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def slot_counts(text: str) -> list[int]:
    """``--concurrency``: ``50,100``."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"each number of slots must be at least 1: {text!r}")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per system and workload (default 2000)")
    parser.add_argument("--concurrency", type=slot_counts, default=[50, 100],
                        help="comma-separated numbers of slots; every concurrent system runs at each: rq-gevent -c, "
                             "celery -c, dramatiq-gevent -t, all processes together (default 50,100)")  # fmt: skip
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="rq-gevent -n, dramatiq-gevent -p and rq worker-pool -n of the *-nP systems (default 2)",
    )
    parser.add_argument("--latency-jobs", type=int, default=200, help="jobs timed one by one per system (default 200)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="throughput runs per system and workload, in rounds; the median is reported (default 1)",
    )
    parser.add_argument("--systems", default=",".join(s.name for s in SYSTEMS), help="comma-separated subset")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated subset")
    parser.add_argument("--no-latency", action="store_true", help="skip the idle-latency runs")
    parser.add_argument("--no-inflight", action="store_true", help="skip the 1,000-jobs-in-flight run")
    parser.add_argument("--busy-loops", type=int, default=0,
                        help="processes that only spin beside the whole run: a slow day on a shared machine "
                             "(default 0)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=SCRIPTS / "bench_results", help="where results are written")
    args = parser.parse_args()
    for value, name in ((args.jobs, "--jobs"), (args.processes, "--processes"),
                        (args.latency_jobs, "--latency-jobs"), (args.repeat, "--repeat")):  # fmt: skip
        if value < 1:
            parser.error(f"{name} must be at least 1")
    if args.busy_loops < 0:
        parser.error("--busy-loops must be at least 0")
    by_name = SYSTEM_BY_NAME
    unknown = [n for n in args.systems.split(",") if n not in by_name] + [
        w for w in args.workloads.split(",") if w not in WORKLOADS]  # fmt: skip
    if unknown:
        parser.error(f"unknown system or workload: {', '.join(unknown)} (systems: {', '.join(by_name)}; "
                     f"workloads: {', '.join(WORKLOADS)})")  # fmt: skip
    systems = [by_name[n] for n in args.systems.split(",")]
    options = Options(args.jobs, args.concurrency, args.processes, args.latency_jobs, args.busy_loops)
    args.out.mkdir(parents=True, exist_ok=True)
    # As installing a wheel does: an editable checkout (or PYTHONDONTWRITEBYTECODE) would otherwise
    # have every worker process compile rq_gevent from source, ~35-50 ms no user's worker spends.
    for directory in (REPO / "rq_gevent", SCRIPTS):
        compileall.compile_dir(directory, maxlevels=0, quiet=1)
    runs: list[Run] = []
    latencies: list[Latency] = []
    inflight = None
    with (tempfile.TemporaryDirectory(prefix="rq-gevent-bench-") as tmp, EmbeddedRedis() as server,
          busy_loops(args.busy_loops)):  # fmt: skip
        workdir = Path(tmp)
        log = args.out / "workers.log"
        log.unlink(missing_ok=True)
        machine = versions(server.url)
        machine["busy loops"] = str(args.busy_loops)
        os.environ["BENCH_REDIS_URL"] = server.url  # the Celery and Dramatiq apps' broker, here and in workers
        print("bench:", ", ".join(f"{k} {v}" for k, v in machine.items()), flush=True)
        with smtp_server(workdir) as smtp_port:
            for workload in args.workloads.split(","):
                concurrent = [system for system in systems if system.concurrent]
                one_slot = [system for system in systems if not system.concurrent]
                rounds = [(slots, concurrent) for slots in options.concurrency if concurrent]
                rounds += [(max(options.concurrency), one_slot)] if one_slot else []
                for slots, these in rounds:
                    repeats: dict[str, list[Run]] = {system.name: [] for system in these}
                    for _, system in itertools.product(range(args.repeat), these):
                        run = throughput_run(system, workload, server.url, options, slots, smtp_port, log)
                        repeats[system.name].append(run)
                        print(f"  {workload:5} {run.label:34} " + (f"FAILED: {run.error}" if run.error else
                              f"{run.jobs_per_s:7.1f} jobs/s, steady {run.steady_jobs_per_s:7.1f}, "
                              f"CPU {run.cpu_ms_per_job:5.2f} ms/job, RSS {run.peak_process_rss_mb:4.0f} MB, "
                              f"{run.round_trips_per_job:4.1f} round trips/job"), flush=True)  # fmt: skip
                    runs += [median_run(of_system) for of_system in repeats.values()]
        if not args.no_latency:
            for system in (s for s in systems if s.family != "floor"):  # it has no queue to wait on
                latency = latency_run(system, server.url, options, log)
                latencies.append(latency)
                print(f"  latency {latency.label:28} " + (f"FAILED: {latency.error}" if latency.error else
                      f"p50 {latency.p50_ms:.1f} ms, p90 {latency.p90_ms:.1f}, p99 {latency.p99_ms:.1f}"),
                      flush=True)  # fmt: skip
        if not args.no_inflight and "rq-gevent" in by_name and "rq-gevent" in args.systems.split(","):
            inflight = inflight_run(server.url, options, log)
            most, peak = inflight["most_in_flight"], inflight["peak_rss_mb"]
            print(f"  in flight: {most} jobs, peak RSS {peak:.0f} MB", flush=True)
    found = targets(runs, latencies, inflight, options)
    table = markdown(runs, latencies, inflight, found)
    if args.busy_loops:
        table = f"A slow day: {args.busy_loops} processes spinning beside the whole run (`--busy-loops`).\n\n" + table
    print()
    print(table)
    (args.out / "bench.md").write_text(table)
    report = {"machine": machine, "options": asdict(options), "runs": [asdict(r) for r in runs],
              "latency": [asdict(r) for r in latencies], "inflight": inflight,
              "targets": [dict(asdict(t), met=t.met) for t in found]}  # fmt: skip
    (args.out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    if runs:
        chart(runs, args.out / "bench.png")
    print(f"bench: wrote {args.out / 'bench.md'}, bench.json and bench.png")
    failed = any(r.error for r in runs) or any(latency.error for latency in latencies)
    return 1 if failed or not all(t.met for t in found) else 0


if __name__ == "__main__":
    sys.exit(main())
