"""What ``--metrics-port`` costs a worker's hot path, measured in the worker process itself.

    python scripts/bench_metrics.py [--jobs 4000] [--rounds 5] [--concurrency 100] [--seconds 0]

Each round runs the same jobs (``benchjobs.io_job``: a green sleep of ``--seconds``) through a
GeventWorker in a fresh process, once per mode, the modes taking turns:

* ``off``: no metrics (``NO_METRICS``);
* ``lone``: a lone worker's metrics, served by the worker process itself and scraped every second;
* ``pool``: a launcher's worker process: samples written to files (prometheus_client's multiprocess
  mode), read every second by another process, as the launcher does.

It reports the worker process's CPU per job (``time.process_time`` over ``work(burst=True)``, so
interpreter start-up and enqueueing are not in it) and jobs/s, the median round of each mode, and
the ratio to ``off``.  Target: CPU per job with metrics within 5 % of ``off``.  Exits 1 if missed.
A side-by-side run of whole commands is in ``scripts/bench.py`` (``rq-gevent-metrics``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

MODES = ["off", "lone", "pool"]
TARGET_RATIO = 1.05
SCRAPE_INTERVAL = 1.0
QUEUE = "bench-metrics"


def one_round(mode: str, url: str, jobs: int, concurrency: int, seconds: float, port: int) -> dict:
    """In a fresh process (``--one``): enqueue, then time ``work(burst=True)``; print the result."""
    from rq_gevent.patching import patch

    patch()
    import redis
    from benchjobs import io_job
    from rq import Queue

    from rq_gevent import GeventWorker
    from rq_gevent.integrations.metrics import NO_METRICS, PrometheusMetrics, serve

    connection = redis.Redis.from_url(url)
    connection.flushall()
    queue = Queue(QUEUE, connection=connection)
    with connection.pipeline() as pipeline:
        for _ in range(jobs):
            queue.enqueue(io_job, seconds, pipeline=pipeline)
        pipeline.execute()
    metrics = NO_METRICS
    if mode != "off":
        if mode == "lone":
            serve(port, "127.0.0.1")
        metrics = PrometheusMetrics()
    worker = GeventWorker([QUEUE], connection=connection, concurrency=concurrency, metrics=metrics)
    cpu, wall = time.process_time(), time.monotonic()
    worker.work(burst=True, logging_level="WARNING")
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    done = Queue(QUEUE, connection=connection).finished_job_registry.count
    return {"mode": mode, "jobs": done, "cpu_ms_per_job": cpu / jobs * 1000, "jobs_per_s": jobs / wall}


def scraper(mode: str, port: int, directory: str, stop: threading.Event) -> threading.Thread:
    def scrape() -> None:
        while not stop.wait(SCRAPE_INTERVAL):
            try:
                if mode == "lone":
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                        response.read()
                else:
                    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

                    registry = CollectorRegistry()
                    multiprocess.MultiProcessCollector(registry, path=directory)
                    generate_latest(registry)
            except OSError:
                pass  # the worker is still starting

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    return thread


def run_mode(mode: str, url: str, args: argparse.Namespace) -> dict:
    from rq_gevent.embedded_redis import free_port

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="rq-gevent-bench-metrics-") as directory:
        env = dict(os.environ)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if mode == "pool":
            env["PROMETHEUS_MULTIPROC_DIR"] = directory
        stop = threading.Event()
        thread = scraper(mode, port, directory, stop) if mode != "off" else None
        command = [sys.executable, __file__, "--one", mode, url, str(args.jobs), str(args.concurrency),
                   str(args.seconds), str(port)]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        stop.set()
        if thread is not None:
            thread.join()
    if result.returncode != 0:
        raise SystemExit(f"bench_metrics: the {mode} round failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    if sys.argv[1:2] == ["--one"]:
        mode, url, jobs, concurrency, seconds, port = sys.argv[2:8]
        print(json.dumps(one_round(mode, url, int(jobs), int(concurrency), float(seconds), int(port))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=0.0, help="each job's green sleep (default 0)")
    args = parser.parse_args()
    from rq_gevent.embedded_redis import EmbeddedRedis

    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    with EmbeddedRedis() as server:
        for round_number in range(1, args.rounds + 1):
            for mode in MODES:
                found = run_mode(mode, server.url, args)
                if found["jobs"] != args.jobs:
                    raise SystemExit(f"bench_metrics: {mode} finished {found['jobs']} of {args.jobs} jobs")
                results[mode].append(found)
                print(f"round {round_number}  {mode:<4}  {found['cpu_ms_per_job']:.3f} ms CPU/job  "
                      f"{found['jobs_per_s']:7.1f} jobs/s", flush=True)  # fmt: skip
    median = {mode: statistics.median(r["cpu_ms_per_job"] for r in runs) for mode, runs in results.items()}
    rates = {mode: statistics.median(r["jobs_per_s"] for r in runs) for mode, runs in results.items()}
    print(f"\n{args.jobs} jobs x {args.rounds} rounds, -c {args.concurrency}, {args.seconds:g} s each")
    print("| mode | CPU ms/job (median) | range | jobs/s (median) | CPU / off |")
    print("| --- | ---: | --- | ---: | ---: |")
    missed = False
    for mode, runs in results.items():
        cpus = sorted(r["cpu_ms_per_job"] for r in runs)
        ratio = median[mode] / median["off"]
        missed |= mode != "off" and ratio > TARGET_RATIO
        print(f"| {mode} | {median[mode]:.3f} | {cpus[0]:.3f}-{cpus[-1]:.3f} | {rates[mode]:.0f} | {ratio:.3f} |")
    print(f"\ntarget: CPU per job with metrics <= {TARGET_RATIO}x off: {'MISSED' if missed else 'met'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
