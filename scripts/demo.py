"""End-to-end demo: user registrations become activation mails and Discuz! forum accounts.

    python scripts/demo.py [--users 200] [--processes 2] [--concurrency 50] [--forum-latency 0.1]

Everything runs on this machine: Redis ($REDIS_URL, else an embedded redis-server), an SMTP server
that captures the mail (scripts/peers/smtp_sink.py), and a UCenter that speaks uc_client's HTTP API
(scripts/peers/ucenter_server.py, answering after ``--forum-latency`` seconds like a remote forum).
The script enqueues each registration as a web app would (jobs.enqueue, with the password sealed),
runs a pre-forked pool of GeventWorkers (``rq-gevent worker -n``) with a live progress line, and
prints what happened.  Three registrations are bad on purpose (an invalid address, a shell-injection
username, a forum name owned by someone else) to show how failures are reported.  Exits non-zero
unless every good registration succeeded and every bad one failed for its stated reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import redis  # noqa: E402
from rq import Queue  # noqa: E402
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry  # noqa: E402

from jobs.enqueue import enqueue_activation_mail, enqueue_discuz_sync  # noqa: E402
from jobs.sealing import KEY_VARIABLE, generate_key, seal  # noqa: E402
from rq_gevent.embedded_redis import EmbeddedRedis  # noqa: E402

QUEUE = "registrations"
PEERS = REPO / "scripts" / "peers"
BAD_REGISTRATIONS = [
    ("mallory", "not-an-address"),
    ("alice; rm -rf /", "alice@example.org"),
    ("taken", "t@example.org"),
]
EXPECTED_FAILURES = [  # one per failed job, in any order
    "invalid recipient address",  # mallory's mail
    "-4 (invalid e-mail address)",  # mallory's forum account
    "-1 (invalid username)",  # a shell command as a username is data, and invalid
    "belongs to another account",  # the forum name is someone else's: never overwritten
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_peer(stack: contextlib.ExitStack, script: str, args: list[str], env: dict[str, str]) -> None:
    process = subprocess.Popen(
        [sys.executable, str(PEERS / script), *args],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ, **env),
        text=True,
    )
    stack.callback(process.wait)
    stack.callback(process.terminate)
    if not process.stdout.readline().startswith("ready"):
        raise SystemExit(f"demo: {script} did not start")


def progress_line(done: int, failed: int, running: int, total: int, elapsed: float) -> str:
    width = 30
    filled = int(width * (done + failed) / total)
    rate = (done + failed) / elapsed if elapsed > 0 else 0.0
    bar = "#" * filled + "." * (width - filled)
    return f"[{bar}] {done + failed:>5}/{total} done, {failed} failed, {running:>3} running, {rate:6.1f} jobs/s"


def enqueue_registrations(queue: Queue, users: int) -> list:
    """What a web app's sign-up view does, once per new user."""
    registrations = [(f"user{n:04d}", f"user{n:04d}@example.org") for n in range(users)]
    registrations += BAD_REGISTRATIONS
    jobs = []
    for user_id, (username, address) in enumerate(registrations, start=1):
        link = f"https://example.org/activate/{user_id}/{secrets.token_urlsafe(16)}"
        jobs.append(enqueue_activation_mail(queue, to=address, name=username, link=link))
        password = seal(secrets.token_urlsafe(12))
        jobs.append(enqueue_discuz_sync(queue, user_id, username, address, password=password))
    return jobs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200, help="good registrations to enqueue (default 200)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=50, help="jobs at once per process (default 50)")
    parser.add_argument("--forum-latency", type=float, default=0.1, help="seconds each forum call takes")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        url = os.environ.get("REDIS_URL")
        if not url:
            server = stack.enter_context(EmbeddedRedis())
            url = server.url
            print(f"Started an embedded redis-server ({server.binary}) at {url}")
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rq-gevent-demo-")))
        os.environ.setdefault(KEY_VARIABLE, generate_key())  # web app and workers share it

        smtp_port, forum_port = free_port(), free_port()
        start_peer(stack, "smtp_sink.py", ["--port", str(smtp_port), "--maildir", str(workdir / "mail")], {})
        uc_key = secrets.token_urlsafe(24)
        forum_args = ["--port", str(forum_port), "--appid", "2", "--latency", str(args.forum_latency)]
        start_peer(stack, "ucenter_server.py", forum_args, {"UC_KEY": uc_key})
        forum_url = f"http://127.0.0.1:{forum_port}"
        seed = json.dumps({"username": "taken", "email": "owner@elsewhere.net", "password": secrets.token_hex(8)})
        urllib.request.urlopen(urllib.request.Request(f"{forum_url}/_members", seed.encode(), method="POST"))
        print(f"Local SMTP server on port {smtp_port}, local UCenter at {forum_url} ({args.forum_latency:.2f} s/call)")

        connection = redis.Redis.from_url(url)
        queue = Queue(QUEUE, connection=connection)
        queue.empty()
        for registry in (FinishedJobRegistry(queue=queue), FailedJobRegistry(queue=queue)):
            for job_id in registry.get_job_ids():
                registry.remove(job_id, delete_job=True)  # a previous demo run against the same $REDIS_URL
        jobs = enqueue_registrations(queue, args.users)
        print(f"Enqueued {len(jobs) // 2} registrations: {len(jobs)} jobs (activation mail + forum account each)")

        settings = {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "SMTP_SECURITY": "none",
            "MAIL_FROM": "Example <noreply@example.org>",
            "MAIL_SITE_NAME": "Example",
            "DISCUZ_BACKEND": "http",
            "UC_API": forum_url,
            "UC_KEY": uc_key,
            "UC_APPID": "2",
        }
        command = ["worker", QUEUE, "--burst", "-u", url, "-n", str(args.processes), "-c", str(args.concurrency)]
        print("Running: rq-gevent", " ".join(command), "--quiet")
        log = stack.enter_context(open(workdir / "worker.log", "wb"))
        started = time.monotonic()
        worker = subprocess.Popen(
            [sys.executable, "-m", "rq_gevent", *command, "--quiet"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
            env=dict(os.environ, **settings),
        )
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

        with urllib.request.urlopen(f"{forum_url}/_members") as response:
            created = [m for m in json.loads(response.read()) if m["username"] != "taken"]
        mails = list((workdir / "mail").glob("*.eml"))
        failures = []
        for job_id in failed_registry.get_job_ids():
            job = queue.fetch_job(job_id)
            reason = (job.exc_info or "").strip().splitlines()[-1] if job else "(job gone)"
            failures.append((job.description if job else job_id, reason))

        print()
        print("Summary")
        print(f"  registrations      {len(jobs) // 2} ({len(BAD_REGISTRATIONS)} bad on purpose)")
        print(f"  mails delivered    {len(mails)}")
        print(f"  forum users made   {len(created)}")
        print(f"  jobs finished      {finished} of {len(jobs)}")
        print(f"  jobs failed        {failed}")
        for description, reason in sorted(failures):
            print(f"    {description}: {reason}")
        print(f"  wall time          {elapsed:.2f} s, {len(jobs) / elapsed:.1f} jobs/s")
        print(f"  worker pool        {args.processes} processes x {args.concurrency} greenlets")
        print(f"  worker exit code   {worker.returncode}")

        reasons = [reason for _, reason in sorted(failures)]
        ok = (
            worker.returncode == 0
            and len(mails) == args.users + 2  # the conflicting and the shell-looking user still get their mail
            and len(created) == args.users
            and len(reasons) == len(EXPECTED_FAILURES)
            and all(sum(want in reason for reason in reasons) == 1 for want in EXPECTED_FAILURES)
        )
        if not ok:
            print("demo: unexpected outcome; worker log follows", file=sys.stderr)
            print((workdir / "worker.log").read_text(errors="replace")[-4000:], file=sys.stderr)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
