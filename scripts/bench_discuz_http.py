"""The ``http`` backend of ``sync_discuz_user`` over HTTPS, measured: jobs/s and connections per run.

    python scripts/bench_discuz_http.py [--jobs 2000] [--concurrency 50] [--latency 0.02 ...]
        [--rounds 3] [--code [LABEL=]DIR ...] [--json FILE]

Starts a Redis (``$REDIS_URL`` is not used: a private one, rq_gevent.embedded_redis), a throw-away CA
and certificate for 127.0.0.1 (scripts/peers/tls.py), and for each run a fresh UCenter-protocol server
(scripts/peers/ucenter_server.py over TLS, ``--bcrypt-cost 4``, answering after ``--latency`` seconds,
like a forum across a network).  Each run enqueues ``--jobs`` registrations of distinct users (the
password sealed, as an app does), then runs ``rq-gevent worker -c C --burst`` until the queue is empty.

``--code DIR`` (repeatable) runs the worker on that checkout: ``DIR`` is its working directory and
first on its ``PYTHONPATH``, so its ``rq_gevent`` and ``jobs`` are imported (each run says which file
it imported).  The runs take turns, ``--rounds`` of each code per latency, and the median of each is
reported.  The peer and this script are always this checkout's: the instrument does not change.  The
worker trusts the CA through ``DISCUZ_HTTP_CA_FILE`` and ``SSL_CERT_FILE`` (a checkout from before
``DISCUZ_HTTP_CA_FILE`` verifies through the default context, which reads the latter).

Per run: jobs/s over the worker's whole life (spawn to exit, interpreter start included) and over the
jobs' own span (first start to last end, from rq's timestamps); CPU ms per job of the worker and of
the peer; and what the peer counted: TCP connections accepted, TLS handshakes completed, API
requests.  Every job must finish with a new member, or the run is reported as failed (exit 1).
No secret is on a command line: ``UC_KEY`` and the sealing key go through the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import secrets
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(REPO))

import redis  # noqa: E402
from peers.processes import free_port, stop_process  # noqa: E402
from peers.tls import make_certificates  # noqa: E402
from rq import Queue  # noqa: E402
from rq.job import Job  # noqa: E402

from jobs.enqueue import enqueue_discuz_sync  # noqa: E402
from jobs.sealing import KEY_VARIABLE, generate_key, seal  # noqa: E402
from rq_gevent.embedded_redis import EmbeddedRedis  # noqa: E402

QUEUE = "bench-discuz"
APPID = "2"
BCRYPT_COST = 4
PASSWORD = "Bench-Pa55-密码"


@dataclass
class Run:
    code: str
    latency: float
    jobs: int
    wall_seconds: float
    span_seconds: float
    worker_cpu_ms_per_job: float
    peer_cpu_ms_per_job: float
    connections: int
    tls_handshakes: int
    api_requests: int
    finished: int
    created: int
    module: str

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.wall_seconds

    @property
    def span_jobs_per_s(self) -> float:
        return self.jobs / self.span_seconds if self.span_seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.finished == self.created == self.jobs


class Peer:
    """scripts/peers/ucenter_server.py over TLS, its stderr to a file; stopped by ``close``."""

    def __init__(self, certificates: tuple[Path, Path, Path], latency: float, key: str, log: Path):
        ca_file, cert, private_key = certificates
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._context = ssl.create_default_context(cafile=str(ca_file))
        args = ["--port", str(self.port), "--appid", APPID, "--latency", str(latency)]
        args += ["--bcrypt-cost", str(BCRYPT_COST), "--tls-cert", str(cert), "--tls-key", str(private_key)]
        self._log = open(log, "w")
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPTS / "peers" / "ucenter_server.py"), *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, UC_KEY=key),
            text=True,
        )
        if not self.process.stdout.readline().startswith("ready"):
            self.close()
            raise SystemExit(f"bench: the UCenter peer did not start: {log.read_text(errors='replace')[-2000:]}")

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}/_stats", timeout=30, context=self._context) as response:
            return json.loads(response.read())

    def close(self) -> None:
        stop_process(self.process)
        self._log.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def worker_environment(code: Path, settings: dict[str, str]) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(code), PYTHONUNBUFFERED="1", **settings)


def imported_module(code: Path, env: dict[str, str]) -> str:
    """Which ucenter_http.py a worker with this environment imports (the check that --code took)."""
    probe = "import jobs.discuz.ucenter_http as m; print(m.__file__)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=code, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"bench: {code} does not import: {result.stderr[-2000:]}")
    return result.stdout.strip()


def one_run(
    label: str,
    code: Path,
    latency: float,
    args: argparse.Namespace,
    connection: redis.Redis,
    url: str,
    certificates: tuple[Path, Path, Path],
    workdir: Path,
) -> Run:
    key = secrets.token_urlsafe(24)
    connection.flushdb()
    peer = Peer(certificates, latency, key, workdir / f"peer-{label}-{latency}.log")
    try:
        queue = Queue(QUEUE, connection=connection)
        stamp = secrets.token_hex(3)  # distinct users in every run
        sealed = seal(PASSWORD)
        jobs = [
            enqueue_discuz_sync(queue, number, f"b{stamp}{number}", f"b{stamp}{number}@example.org", password=sealed)
            for number in range(args.jobs)
        ]
        settings = {
            "DISCUZ_BACKEND": "http",
            "UC_API": peer.url,
            "UC_KEY": key,
            "UC_APPID": APPID,
            "DISCUZ_HTTP_TIMEOUT": "30",
            "DISCUZ_HTTP_CA_FILE": str(certificates[0]),
            "SSL_CERT_FILE": str(certificates[0]),
            "JOBS_RETRY_INTERVALS": "0,0",
        }
        env = worker_environment(code, settings)
        module = imported_module(code, env)
        command = [sys.executable, "-m", "rq_gevent", "worker", "-u", url, "-c", str(args.concurrency)]
        command += ["--burst", "--quiet", QUEUE]
        peer_cpu, worker_cpu = cpu_seconds(peer.process.pid), children_cpu_seconds()
        with open(workdir / f"worker-{label}-{latency}.log", "wb") as log:
            started = time.perf_counter()
            worker = subprocess.run(command, cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=1800)
            wall = time.perf_counter() - started
        worker_cpu = children_cpu_seconds() - worker_cpu
        peer_cpu = cpu_seconds(peer.process.pid) - peer_cpu
        stats = peer.stats()  # this call's own connection is counted: taken off below
        if worker.returncode != 0:
            print(f"bench: the worker exited with {worker.returncode}; see {log.name}", file=sys.stderr)
        fetched = [job for job in Job.fetch_many([job.id for job in jobs], connection=connection) if job]
        done = [job for job in fetched if job.get_status() == "finished"]
        starts = [job.started_at for job in done if job.started_at]
        ends = [job.ended_at for job in done if job.ended_at]
        span = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
        created = sum(1 for job in done if (job.return_value() or {}).get("created") is True)
        return Run(
            code=label,
            latency=latency,
            jobs=args.jobs,
            wall_seconds=wall,
            span_seconds=span,
            worker_cpu_ms_per_job=1000 * worker_cpu / args.jobs,
            peer_cpu_ms_per_job=1000 * peer_cpu / args.jobs,
            connections=stats["connections"] - 1,
            tls_handshakes=stats["tls_handshakes"] - 1,
            api_requests=stats["api_requests"],
            finished=len(done),
            created=created,
            module=module,
        )
    finally:
        peer.close()


def code_option(text: str) -> tuple[str, Path]:
    label, _, directory = text.rpartition("=")
    path = Path(directory).resolve()
    if not (path / "jobs" / "discuz" / "ucenter_http.py").is_file():
        raise argparse.ArgumentTypeError(f"{path} is not a checkout of this project")
    return label or path.name, path


def positive(kind: type):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    return parse


def table(runs: list[Run]) -> str:
    """One row per (latency, code): the median run's figures, the range of jobs/s in brackets."""
    lines = [
        "| latency | code | jobs/s (range) | span jobs/s | worker CPU ms/job | peer CPU ms/job "
        "| TCP connections | TLS handshakes | API requests |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for latency in dict.fromkeys(run.latency for run in runs):
        for code in dict.fromkeys(run.code for run in runs):
            group = [run for run in runs if run.latency == latency and run.code == code]
            rates = [run.jobs_per_s for run in group]
            median = statistics.median
            lines.append(
                f"| {latency * 1000:g} ms | {code} | {median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f}) "
                f"| {median([run.span_jobs_per_s for run in group]):,.0f} "
                f"| {median([run.worker_cpu_ms_per_job for run in group]):.2f} "
                f"| {median([run.peer_cpu_ms_per_job for run in group]):.2f} "
                f"| {median([run.connections for run in group]):,.0f} "
                f"| {median([run.tls_handshakes for run in group]):,.0f} "
                f"| {median([run.api_requests for run in group]):,.0f} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=positive(int), default=2000, help="registrations per run (default 2000)")
    parser.add_argument("--concurrency", type=positive(int), default=50, help="the worker's -c (default 50)")
    parser.add_argument(
        "--latency", type=float, action="append", help="seconds each API answer takes; repeatable (default 0.02)"
    )
    parser.add_argument("--rounds", type=positive(int), default=3, help="runs of each code per latency (default 3)")
    parser.add_argument(
        "--code",
        type=code_option,
        action="append",
        metavar="[LABEL=]DIR",
        help="a checkout to run the worker on; repeatable, the runs take turns (default: this one)",
    )
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args()
    latencies = args.latency or [0.02]
    codes = args.code or [("this", REPO)]
    os.environ.setdefault(KEY_VARIABLE, generate_key())  # this script seals, the workers open

    runs: list[Run] = []
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(EmbeddedRedis())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-discuz-http-")))
        certificates = make_certificates(workdir)
        connection = redis.Redis.from_url(server.url)
        print(f"Redis {connection.info('server')['redis_version']} at {server.url}; {args.jobs} jobs per run, "
              f"-c {args.concurrency}, bcrypt cost {BCRYPT_COST}, {os.cpu_count()} CPUs", flush=True)  # fmt: skip
        for latency in latencies:
            for round_number in range(1, args.rounds + 1):
                for label, code in codes:
                    run = one_run(label, code, latency, args, connection, server.url, certificates, workdir)
                    runs.append(run)
                    verdict = "ok" if run.ok else f"FAILED: {run.finished} finished, {run.created} created"
                    print(
                        f"latency {latency * 1000:g} ms, round {round_number}, {label} ({run.module}): "
                        f"{run.jobs_per_s:,.0f} jobs/s ({run.span_jobs_per_s:,.0f} over the jobs' span), "
                        f"{run.connections} connections, {run.tls_handshakes} handshakes, "
                        f"{run.api_requests} requests; {verdict}",
                        flush=True,
                    )
    print()
    print(f"{datetime.now(UTC):%Y-%m-%d}, medians of {args.rounds} runs each:")
    print(table(runs))
    if args.json:
        args.json.write_text(json.dumps([asdict(run) | {"jobs_per_s": run.jobs_per_s} for run in runs], indent=2))
    return 0 if all(run.ok for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
