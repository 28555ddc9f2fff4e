"""End-to-end demo: enqueue jobs as a web app would and run them with ``rq-gevent worker``.

    python scripts/demo.py [--jobs 200] [--concurrency 50] [--latency 0.2]

Uses $REDIS_URL if set, else starts an embedded redis-server (``pip install -e '.[demo]'``).  Each
job calls a real HTTP API on this machine that answers after ``--latency`` seconds, so the run shows
how many network waits one worker process overlaps.  Exits non-zero if any job fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import redis  # noqa: E402
from rq import Queue  # noqa: E402
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry  # noqa: E402

from jobs.api_call import call_api  # noqa: E402
from rq_gevent.embedded_redis import EmbeddedRedis  # noqa: E402


def slow_api(latency: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            time.sleep(latency)
            body = json.dumps({"user": self.path.rsplit("/", 1)[-1], "plan": "free"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def progress_line(done: int, failed: int, running: int, total: int, elapsed: float) -> str:
    width = 30
    filled = int(width * (done + failed) / total)
    rate = (done + failed) / elapsed if elapsed > 0 else 0.0
    bar = "#" * filled + "." * (width - filled)
    return f"[{bar}] {done + failed:>5}/{total} done, {failed} failed, {running:>3} running, {rate:6.1f} jobs/s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the local API takes to answer")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        url = os.environ.get("REDIS_URL")
        if not url:
            server = stack.enter_context(EmbeddedRedis())
            url = server.url
            print(f"Started an embedded redis-server ({server.binary}) at {url}")
        connection = redis.Redis.from_url(url)
        api = slow_api(args.latency)
        stack.callback(api.shutdown)
        api_url = f"http://127.0.0.1:{api.server_address[1]}/users"

        queue = Queue("demo", connection=connection)
        queue.empty()
        jobs = [queue.enqueue(call_api, f"{api_url}/{n}", result_ttl=600) for n in range(args.jobs)]
        print(f"Enqueued {len(jobs)} jobs calling a local API that answers in {args.latency:.2f} s")

        log = stack.enter_context(tempfile.NamedTemporaryFile(prefix="rq-gevent-demo-", suffix=".log", delete=False))
        command = [
            sys.executable,
            "-m",
            "rq_gevent",
            "worker",
            "demo",
            "--burst",
            "-u",
            url,
            "-c",
            str(args.concurrency),
            "--quiet",
        ]
        print("Running: rq-gevent", " ".join(command[3:]))
        started = time.monotonic()
        worker = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        finished_registry, failed_registry = FinishedJobRegistry(queue=queue), FailedJobRegistry(queue=queue)
        started_registry = StartedJobRegistry(queue=queue)
        interactive = sys.stdout.isatty()
        last_print = 0.0
        while worker.poll() is None:
            time.sleep(0.2)
            elapsed = time.monotonic() - started
            counts = len(finished_registry), len(failed_registry), len(started_registry)
            line = progress_line(*counts, len(jobs), elapsed)
            if interactive:
                print("\r" + line, end="", flush=True)
            elif elapsed - last_print >= 1.0:
                print(line, flush=True)
                last_print = elapsed
        elapsed = time.monotonic() - started
        finished, failed = len(finished_registry), len(failed_registry)
        print(("\r" if interactive else "") + progress_line(finished, failed, 0, len(jobs), elapsed))

        sample = jobs[0].return_value()
        serial = len(jobs) * args.latency
        print()
        print("Summary")
        print(f"  jobs finished      {finished} of {len(jobs)}")
        print(f"  jobs failed        {failed}")
        print(f"  wall time          {elapsed:.2f} s (one at a time would take >= {serial:.1f} s)")
        print(f"  throughput         {len(jobs) / elapsed:.1f} jobs/s with -c {args.concurrency}")
        print(f"  sample result      {sample}")
        print(f"  worker exit code   {worker.returncode} (log: {log.name})")
        ok = worker.returncode == 0 and finished == len(jobs) and failed == 0
        if not ok:
            print(Path(log.name).read_text()[-3000:])
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
