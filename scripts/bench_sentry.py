"""What Sentry reporting costs a worker, and what a broken Sentry endpoint costs it.

    python scripts/bench_sentry.py [--jobs 2000] [--fail-every 2] [--concurrency 100] [--rounds 3]

Runs the same jobs (a 50 ms green sleep, every ``--fail-every``-th one failing, so each of those
sends an event) through ``rq-gevent worker --burst`` once per Sentry endpoint, in one run on one
Redis: no Sentry at all, a healthy endpoint, one that never answers (``hang``), one that answers
after 5 s, one that answers 429 and one that answers 500 (scripts/peers/sentry_sink.py).  The modes
take turns each round; the median round counts.  Throughput is jobs / (last job ended - first job
started), from the jobs' own timestamps in Redis, so process start-up and the exit flush are not in
it; the exit delay (last job ended -> process exited) is reported separately.

Target: every broken endpoint within 5 % of the healthy one's throughput.  Exits 1 if a target is
missed or any job did not end finished or failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import redis  # noqa: E402
from benchjobs import io_job  # noqa: E402
from rq import Queue  # noqa: E402

from rq_gevent.embedded_redis import EmbeddedRedis, free_port  # noqa: E402

MODES = ["none", "ok", "hang", "slow:5", "429", "500"]
BROKEN = ["hang", "slow:5", "429", "500"]
TARGET_RATIO = 0.95
QUEUE = "bench-sentry"


@contextlib.contextmanager
def sentry_sink(mode: str, store: Path):
    """The DSN of a sink answering as ``mode`` (``None`` for no Sentry)."""
    if mode == "none":
        yield None
        return
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "peers" / "sentry_sink.py")]
        + ["--port", str(port), "--store", str(store), "--answer", mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if not sink.stdout.readline().startswith("ready"):
            raise SystemExit("bench_sentry: the Sentry sink did not start")
        yield f"http://benchkey@127.0.0.1:{port}/1"
    finally:
        sink.terminate()
        sink.wait()


def run_once(url: str, mode: str, args: argparse.Namespace, workdir: Path) -> dict:
    connection = redis.Redis.from_url(url)
    connection.flushdb()
    queue = Queue(QUEUE, connection=connection)
    jobs = [
        queue.enqueue(io_job, 0.05, n % args.fail_every == 0, result_ttl=600, failure_ttl=600)
        for n in range(1, args.jobs + 1)
    ]
    store = workdir / f"{mode.replace(':', '-')}-{time.monotonic_ns()}"
    with sentry_sink(mode, store) as dsn:
        command = [sys.executable, "-m", "rq_gevent", "worker", "-P", str(REPO / "scripts"), "-u", url]
        command += ["--burst", "-q", "-c", str(args.concurrency), QUEUE]
        env = {key: value for key, value in os.environ.items() if not key.startswith("SENTRY_")}
        if dsn:
            env["SENTRY_DSN"] = dsn
        worker = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        exited = time.time()
        received = len(list(store.glob("*.envelope"))) if dsn else 0
    if worker.returncode != 0:
        raise SystemExit(f"bench_sentry: worker failed in mode {mode}:\n{worker.stderr[-2000:]}")
    with connection.pipeline(transaction=False) as pipeline:
        for job in jobs:
            pipeline.hmget(job.key, "status", "started_at", "ended_at")
        rows = pipeline.execute()
    statuses = [row[0].decode() if row[0] else "missing" for row in rows]
    started = min(_timestamp(row[1]) for row in rows if row[1])
    ended = max(_timestamp(row[2]) for row in rows if row[2])
    return {
        "mode": mode,
        "jobs_per_second": len(jobs) / (ended - started),
        "exit_delay": exited - ended,
        "failed": statuses.count("failed"),
        "finished": statuses.count("finished"),
        "other": len(jobs) - statuses.count("failed") - statuses.count("finished"),
        "envelopes_received": received,
    }


def _timestamp(raw: bytes) -> float:
    return datetime.fromisoformat(raw.decode().replace("Z", "+00:00")).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--fail-every", type=int, default=2, help="every N-th job fails (default 2: half)")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        url = os.environ.get("REDIS_URL") or stack.enter_context(EmbeddedRedis()).url
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sentry-")))
        runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
        for round_number in range(args.rounds):
            order = MODES[round_number % len(MODES) :] + MODES[: round_number % len(MODES)]
            for mode in order:
                result = run_once(url, mode, args, workdir)
                runs[mode].append(result)
                print(f"round {round_number + 1} {mode:>7}: {result['jobs_per_second']:7.1f} jobs/s", flush=True)

    summary = {mode: _median(results) for mode, results in runs.items()}
    healthy = summary["ok"]["jobs_per_second"]
    print(
        f"\n{args.jobs} jobs (50 ms each, 1 in {args.fail_every} failing), -c {args.concurrency}, median of "
        f"{args.rounds} rounds"
    )
    print(f"{'endpoint':>9} {'jobs/s':>8} {'vs ok':>6} {'vs none':>8} {'exit delay':>11} {'envelopes':>9}  lost")
    failures = []
    for mode, row in summary.items():
        ratio_ok = row["jobs_per_second"] / healthy
        ratio_none = row["jobs_per_second"] / summary["none"]["jobs_per_second"]
        print(
            f"{mode:>9} {row['jobs_per_second']:8.1f} {ratio_ok:6.2f} {ratio_none:8.2f} "
            f"{row['exit_delay']:10.1f}s {row['envelopes_received']:9d}  {row['other']}"
        )
        if row["other"]:
            failures.append(f"{mode}: {row['other']} jobs neither finished nor failed")
        if mode in BROKEN and ratio_ok < TARGET_RATIO:
            failures.append(f"{mode}: {ratio_ok:.2f} x the healthy endpoint's throughput (target >= {TARGET_RATIO})")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": runs}, indent=2))
    for failure in failures:
        print(f"MISSED: {failure}")
    print("all targets met" if not failures else f"{len(failures)} target(s) missed")
    return 1 if failures else 0


def _median(results: list[dict]) -> dict:
    ranked = sorted(results, key=lambda result: result["jobs_per_second"])
    middle = ranked[len(ranked) // 2]
    return middle | {"exit_delay": statistics.median(result["exit_delay"] for result in results)}


if __name__ == "__main__":
    sys.exit(main())
