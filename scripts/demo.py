"""End-to-end demo: user registrations become activation mails and Discuz! forum accounts.

    python scripts/demo.py [--users 200] [--processes 2] [--concurrency 50] [--forum-latency 0.1]

Everything runs on this machine: Redis ($REDIS_URL, else an embedded server: Valkey 8 without one), an SMTP server
that captures the mail (scripts/peers/smtp_sink.py), and a UCenter that speaks uc_client's HTTP API
(scripts/peers/ucenter_server.py, answering after ``--forum-latency`` seconds like a remote forum;
it hashes new members with bcrypt cost 4, not UCenter's 10, so that the demo measures the workers
rather than its stand-in forum's CPU).  The script enqueues each registration as a web app would
(jobs.enqueue, with the password sealed), runs a pre-forked pool of GeventWorkers (``rq-gevent
worker -n ... --with-scheduler``, so that jobs retrying after a transient error come back) with a
live progress line, stops it (warm) once every job has finished or failed, and prints what happened:
the jobs counted by their final status, and the CPU each part used while the pool ran (from its start
to its exit), so the busiest part is named.  Three registrations are bad on purpose (an invalid
address, a shell-injection username, a forum name owned by someone else) to show how failures are
reported.  Exits non-zero unless every good registration succeeded, every bad one failed for its
stated reason and no peer printed a traceback.  What stops it from starting (a Redis it cannot use, a
peer server that does not start, a missing package) is one line on stderr, and exit code 1.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import os
import re
import resource
import secrets
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

INSTALL_HINT = "install what the demo needs: pip install -e '.[demo]'"

try:
    import redis
    from rq import Queue
    from rq.job import Job, JobStatus
    from rq.registry import (
        FailedJobRegistry,
        FinishedJobRegistry,
        ScheduledJobRegistry,
        StartedJobRegistry,
    )

    from jobs.enqueue import enqueue_activation_mail, enqueue_discuz_sync
    from jobs.outcomes import transient_failures
    from jobs.sealing import KEY_VARIABLE, SealingError, generate_key, seal
    from rq_gevent.embedded_redis import EmbeddedRedis, RedisServerNotFound
    from rq_gevent.launcher.supervision import usable_cores
    from rq_gevent.plumbing.connections import redact_url
    from rq_gevent.server_floor import UnsupportedServer, refuse_unsupported_server
    from rq_gevent.words import plural
except ModuleNotFoundError as missing:  # a checkout installed without the demo extra
    sys.exit(f"demo: {missing}; {INSTALL_HINT}")

QUEUE = "registrations"
PEERS = REPO / "scripts" / "peers"
BAD_REGISTRATIONS = [
    ("mallory", "not-an-address"),
    ("alice; rm -rf /", "alice@example.org"),
    ("taken", "t@example.org"),
]
EXPECTED_FAILURES = [  # one per failed job, in any order
    "AddressRefused: the recipient address",  # mallory's mail: the rule it broke, never the address
    "-4 (invalid e-mail address)",  # mallory's forum account
    "-1 (invalid username)",  # a shell command as a username is data, and invalid
    "belongs to another account",  # the forum name is someone else's: never overwritten
]


# The demo's sizes: what one machine can run in a few minutes.
LIMITS = {"users": (1, 10_000), "processes": (1, 8), "concurrency": (1, 200)}
FORUM_BCRYPT_COST = 4
# Transient errors retry after these seconds (jobs.outcomes), short enough to end within the demo.
RETRY_INTERVALS = "1,2,5,10"
# No job reached its end for this long: report what is left rather than wait for ever.
STALL_SECONDS = 90.0
STOP_TIMEOUT = 60.0
# A Redis that does not answer (a firewall that drops, not refuses) is reported after this long.
REDIS_CONNECT_TIMEOUT = 5.0
# A peer server that has not said "ready" by then is reported as not started.
PEER_START_TIMEOUT = 60.0


class DemoError(Exception):
    """Why the demo cannot run (a Redis it cannot use, a peer that did not start...): ``main`` prints
    it as one line on stderr, not a traceback, and exits 1."""


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def bounded_int(name: str):
    low, high = LIMITS[name]

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:,} and {high:,}, got {value:,}")
        return value

    return parse


def forum_latency(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value <= 10:
        raise argparse.ArgumentTypeError(f"must be between 0 and 10 seconds, got {text}")
    return value


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_peer(
    stack: contextlib.ExitStack, name: str, script: str, args: list[str], env: dict[str, str], log: Path
) -> tuple[subprocess.Popen, int]:
    """A peer server whose output goes to ``log`` (read back at the end), not into the progress line;
    returns it and the port it listens on (from its ``ready <port>`` line)."""
    output = stack.enter_context(open(log, "w"))
    process = subprocess.Popen(
        [sys.executable, str(PEERS / script), *args],
        stdout=subprocess.PIPE,
        stderr=output,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ, **env),
        text=True,
    )
    stack.callback(process.wait)
    stack.callback(process.terminate)
    answered = bool(select.select([process.stdout], [], [], PEER_START_TIMEOUT)[0])
    said = process.stdout.readline() if answered else ""
    words = said.split()
    if len(words) == 2 and words[0] == "ready" and words[1].isdigit():
        return process, int(words[1])
    process.terminate()
    try:
        code = process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    printed = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    if printed:
        why = one_line(printed[-1])  # a traceback's last line: the exception
    elif not answered:
        why = f"it did not say it was ready within {PEER_START_TIMEOUT:.0f} s"
    elif said:
        why = f"it said {one_line(said)!r} instead of 'ready <port>'"
    else:
        why = f"it exited with code {code}, printing nothing"
    if "ModuleNotFoundError" in why:
        why += f"; {INSTALL_HINT}"
    raise DemoError(f"the {name} ({script}) did not start: {why}")


def connect_redis(url: str) -> redis.Redis:
    """A connection to ``url`` that answered, to a server the workers accept; else a DemoError naming
    the address (its password never: redacted)."""
    where = redact_url(url)
    try:
        connection = redis.Redis.from_url(url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT)
        connection.ping()
        refuse_unsupported_server(connection, logging.getLogger("demo"))
    except (redis.exceptions.AuthenticationError, redis.exceptions.NoPermissionError) as error:
        hint = "" if "@" in where else " (none given: redis://[USER]:PASSWORD@HOST:PORT/DB)"
        raise DemoError(f"the Redis at {where} refused the demo's credentials{hint}: {one_line(error)}") from None
    except (redis.exceptions.RedisError, UnsupportedServer, ValueError, OSError) as error:
        raise DemoError(f"cannot use the Redis at {where}: {without_password(one_line(error), url)}") from None
    return connection


def without_password(text: str, url: str) -> str:
    """``text`` (an error's message about ``url``) with the URL's password, if it quotes it, masked."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    for secret in {password, password and unquote(password)} - {None, ""}:
        text = text.replace(secret, "***")
    return text


def children_cpu_seconds() -> float:
    """User + system CPU of every child this process has reaped (and of their reaped children) since it
    began, and before: the count survives exec, so a shell that ran ``pip install`` then exec'd the
    demo (``bash -c "pip install ... && python scripts/demo.py"``) hands it pip's.  Only a difference
    over a window means anything."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu_seconds(connection: redis.Redis) -> float:
    info = connection.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def progress_line(finished: int, failed: int, running: int, waiting: int, total: int, elapsed: float) -> str:
    width = 30
    ended = finished + failed
    filled = int(width * ended / total)
    rate = ended / elapsed if elapsed > 0 else 0.0
    bar = "#" * filled + "." * (width - filled)
    return (
        f"[{bar}] {ended:>5}/{total} ended: {finished} finished, {failed} failed, {running:>3} running, "
        f"{waiting} retrying, {rate:6.1f} jobs/s"
    )


def enqueue_registrations(queue: Queue, users: int) -> list:
    """What a web app's sign-up view does, once per new user."""
    registrations = [(f"user{n:05d}", f"user{n:05d}@example.org") for n in range(users)]
    registrations += BAD_REGISTRATIONS
    jobs = []
    for user_id, (username, address) in enumerate(registrations, start=1):
        link = f"https://example.org/activate/{user_id}/{secrets.token_urlsafe(16)}"
        jobs.append(enqueue_activation_mail(queue, to=address, name=username, link=link))
        password = seal(secrets.token_urlsafe(12))
        jobs.append(enqueue_discuz_sync(queue, user_id, username, address, password=password))
    return jobs


def remove_previous_runs(queue: Queue, registrations: int) -> None:
    """A previous demo against the same $REDIS_URL left jobs with these ids (the helpers give a user's
    sync a stable id, and would return such a job instead of enqueueing a new one): delete them."""
    for registry in (FinishedJobRegistry(queue=queue), FailedJobRegistry(queue=queue)):
        for job_id in registry.get_job_ids():
            registry.remove(job_id, delete_job=True)
    job_ids = [f"discuz-sync-{user_id}" for user_id in range(1, registrations + 1)]
    with queue.connection.pipeline(transaction=False) as pipeline:
        for job_id in job_ids:
            pipeline.exists(Job.key_for(job_id))
        found = [job_id for job_id, exists in zip(job_ids, pipeline.execute(), strict=True) if exists]
    for job in Job.fetch_many(found, connection=queue.connection):
        if job is not None:
            job.delete()


def fetch_all(connection: redis.Redis, job_ids: list[str]) -> list[Job | None]:
    """Every enqueued job as Redis holds it now (``None``: gone from Redis)."""
    fetched: list[Job | None] = []
    for start in range(0, len(job_ids), 500):
        fetched += Job.fetch_many(job_ids[start : start + 500], connection=connection)
    return fetched


def by_status(jobs: list[Job | None]) -> dict[str, list[Job]]:
    grouped: dict[str, list] = {}
    for job in jobs:
        status = job.get_status(refresh=False) if job is not None else "missing"
        grouped.setdefault(str(getattr(status, "value", status)), []).append(job)
    return grouped


def wait_for_the_end(worker: subprocess.Popen, queue: Queue, total: int) -> tuple[float, str]:
    """Show progress until every job finished or failed; returns (seconds taken, why it stopped)."""
    registries = (
        FinishedJobRegistry(queue=queue),
        FailedJobRegistry(queue=queue),
        StartedJobRegistry(queue=queue),
        ScheduledJobRegistry(queue=queue),
    )
    interactive = sys.stdout.isatty()
    started = last_change = time.monotonic()
    last_print, last_ended = 0.0, -1
    while True:
        time.sleep(0.2)
        now = time.monotonic()
        finished, failed, running, waiting = (len(registry) for registry in registries)
        line = progress_line(finished, failed, running, waiting, total, now - started)
        if interactive:
            print("\r" + line, end="", flush=True)
        elif now - last_print >= 1.0:
            print(line, flush=True)
            last_print = now
        if finished + failed != last_ended:
            last_ended, last_change = finished + failed, now
        if finished + failed >= total:
            why = "every job ended"
        elif worker.poll() is not None:
            why = f"the worker pool exited early (code {worker.returncode})"
        elif now - last_change > STALL_SECONDS:
            why = f"no job ended for {STALL_SECONDS:.0f} s"
        else:
            continue
        print(("\r" if interactive else "") + line, flush=True)
        return last_change - started, why


def stop(worker: subprocess.Popen) -> int:
    """Warm shutdown, as systemd would: SIGTERM, then wait for the running jobs."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        return worker.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        worker.kill()
        return worker.wait()


RETRY_LINE = re.compile(r"job \S+: (.+) \(attempt \d+ of \d+\); retrying in \d+ s")


def retry_reasons(worker_log: Path) -> collections.Counter:
    """Why jobs were retried, from the jobs' own warnings (jobs.outcomes.retry_later)."""
    text = worker_log.read_text(errors="replace") if worker_log.exists() else ""
    return collections.Counter(match.group(1) for match in RETRY_LINE.finditer(text))


def tracebacks(logs: list[Path]) -> list[str]:
    return [log.name for log in logs if log.exists() and "Traceback" in log.read_text(errors="replace")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--users", type=bounded_int("users"), default=200, help="good registrations to enqueue, 1-10,000 (default 200)"
    )
    parser.add_argument(
        "--processes", type=bounded_int("processes"), default=2, help="worker processes, 1-8 (default 2)"
    )
    parser.add_argument(
        "--concurrency", type=bounded_int("concurrency"), default=50, help="jobs per process, 1-200 (default 50)"
    )
    parser.add_argument(
        "--forum-latency", type=forum_latency, default=0.1, help="seconds each forum call takes, 0-10 (default 0.1)"
    )
    args = parser.parse_args()
    try:
        return run(args)
    except DemoError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault(KEY_VARIABLE, generate_key())  # web app and workers share it
    try:
        seal("a key that seals")
    except SealingError as error:  # a JOBS_SEALING_KEY of the user's own, malformed
        raise DemoError(one_line(error)) from None

    with contextlib.ExitStack() as stack:
        url = os.environ.get("REDIS_URL")
        if not url:
            try:
                server = stack.enter_context(EmbeddedRedis())
            except (RedisServerNotFound, RuntimeError, OSError) as error:
                raise DemoError(f"cannot start an embedded Redis server: {one_line(error).rstrip(' :')}") from None
            url = server.url
            print(f"Started an embedded redis-server ({server.binary}) at {url}")
        connection = connect_redis(url)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rq-gevent-demo-")))

        peer_logs = [workdir / "smtp.log", workdir / "forum.log"]
        smtp_args = ["--port", str(free_port()), "--maildir", str(workdir / "mail")]
        smtp, smtp_port = start_peer(stack, "local SMTP server", "smtp_sink.py", smtp_args, {}, peer_logs[0])
        uc_key = secrets.token_urlsafe(24)
        forum_args = ["--port", "0", "--appid", "2", "--latency", str(args.forum_latency)]  # 0: it picks one
        forum_args += ["--bcrypt-cost", str(FORUM_BCRYPT_COST)]
        forum, forum_port = start_peer(
            stack, "local UCenter", "ucenter_server.py", forum_args, {"UC_KEY": uc_key}, peer_logs[1]
        )
        forum_url = f"http://127.0.0.1:{forum_port}"
        seed = json.dumps({"username": "taken", "email": "owner@elsewhere.net", "password": secrets.token_hex(8)})
        seeding = urllib.request.Request(f"{forum_url}/_members", seed.encode(), method="POST")
        try:
            urllib.request.urlopen(seeding, timeout=30).close()
        except (urllib.error.URLError, OSError) as error:
            why = one_line(error)
            raise DemoError(f"the local UCenter at {forum_url} did not take its first member: {why}") from None
        print(
            f"Local SMTP server on port {smtp_port}, local UCenter at {forum_url} "
            f"({args.forum_latency:.2f} s/call, bcrypt cost {FORUM_BCRYPT_COST})"
        )

        queue = Queue(QUEUE, connection=connection)
        queue.empty()
        remove_previous_runs(queue, args.users + len(BAD_REGISTRATIONS))
        jobs = enqueue_registrations(queue, args.users)
        total = len(jobs)
        print(
            f"Enqueued {plural(total // 2, 'registration')}: {plural(total, 'job')} "
            "(activation mail + forum account each)"
        )

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
            "JOBS_RETRY_INTERVALS": RETRY_INTERVALS,
        }
        # The URL goes in the environment: in argv, its password would show in ps.
        command = ["worker", QUEUE, "-n", str(args.processes), "-c", str(args.concurrency), "--with-scheduler"]
        print(f"Running: REDIS_URL={redact_url(url)} rq-gevent", " ".join(command), "--quiet")
        log = stack.enter_context(open(workdir / "worker.log", "wb"))
        # Every part's CPU is counted over one window, the pool's run: from before it starts until it has
        # exited (its warm shutdown included) and been reaped.
        window_start = time.monotonic()
        cpu_before = {
            "worker pool": children_cpu_seconds(),
            "local forum": cpu_seconds(forum.pid),
            "local SMTP": cpu_seconds(smtp.pid),
            "Redis": redis_cpu_seconds(connection),
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "rq_gevent", *command, "--quiet"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
            env=dict(os.environ, **settings, REDIS_URL=url),
        )
        stack.callback(stop, worker)  # also if the demo fails on the way
        elapsed, why = wait_for_the_end(worker, queue, total)
        exit_code = stop(worker)
        cpu_after = {
            # The pool's master reaps its worker processes (and its check process), and is the only child
            # the demo reaps in the window (the peers and an embedded Redis are reaped at the end): the
            # difference is exactly the pool's CPU.
            "worker pool": children_cpu_seconds(),
            "local forum": cpu_seconds(forum.pid),
            "local SMTP": cpu_seconds(smtp.pid),
            "Redis": redis_cpu_seconds(connection),
        }
        window = time.monotonic() - window_start
        cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_before}

        final = fetch_all(connection, [job.id for job in jobs])
        grouped = by_status(final)
        finished = len(grouped.pop(JobStatus.FINISHED.value, []))
        failed_jobs = grouped.pop(JobStatus.FAILED.value, [])
        unfinished = {status: len(found) for status, found in grouped.items()}
        retried = sum(1 for job in final if job is not None and transient_failures(job))
        with urllib.request.urlopen(f"{forum_url}/_members", timeout=30) as response:
            created = [m for m in json.loads(response.read()) if m["username"] != "taken"]
        mails = list((workdir / "mail").glob("*.eml"))
        failures = []
        for job in failed_jobs:
            reason = (job.exc_info or "").strip().splitlines()[-1] if job.exc_info else "(no reason stored)"
            failures.append((job.description, reason))
        ended = finished + len(failed_jobs)
        noisy_peers = tracebacks(peer_logs)

        print()
        print("Summary")
        print(f"  registrations      {total // 2} ({len(BAD_REGISTRATIONS)} bad on purpose)")
        print(f"  mails delivered    {len(mails)}")
        print(f"  forum users made   {len(created)}")
        print(f"  jobs enqueued      {total}")
        print(f"  jobs finished      {finished}")
        print(f"  jobs failed        {len(failed_jobs)}")
        for description, reason in sorted(failures):
            print(f"    {description}: {reason}")
        if unfinished:
            shown = ", ".join(f"{count} {status}" for status, count in sorted(unfinished.items()))
            print(f"  jobs not ended     {sum(unfinished.values())} ({shown}): {why}")
        print(f"  jobs retried       {retried} (transient errors, back on the queue after {RETRY_INTERVALS} s)")
        for reason, count in retry_reasons(workdir / "worker.log").most_common(3):
            print(f"    {count} x {reason}")
        print(f"  wall time          {elapsed:.2f} s to the last job's end, {ended / max(elapsed, 0.001):.1f} jobs/s")
        print(f"  worker pool        {plural(args.processes, 'process')} x {plural(args.concurrency, 'greenlet')}")
        cores = usable_cores()  # its affinity (taskset, a container's cpuset), not the machine's count
        # What each part can use at most: the pool its processes (up to the cores), the others one core.
        capacity = {name: 1 for name in cpu} | {"worker pool": min(args.processes, cores)}
        busiest = max(cpu, key=lambda name: cpu[name] / capacity[name])
        shares = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in cpu.items())
        print(f"  CPU used           {shares}")
        load = cpu[busiest] / max(window, 0.001)
        share = load / capacity[busiest]
        print(
            f"  busiest            {busiest}: {load:.2f} cores on average over the pool's {window:.2f} s run, "
            f"{share:.0%} of the {plural(capacity[busiest], 'core')} it can use"
        )
        waits = [f"the forum's {args.forum_latency:g} s per call"] if args.forum_latency > 0 else []
        waits += ["retry back-off"] if retried else []
        if share < 0.5 and waits:
            print(f"                     no part used half its CPU: the run mostly waited, on {' and '.join(waits)}")
        elif share < 0.5:
            print("                     no part used half its CPU: the run mostly waited on the network")
        if noisy_peers:
            print(f"  peer tracebacks    in {', '.join(noisy_peers)}")
        print(f"  worker exit code   {exit_code}")

        reasons = [reason for _, reason in sorted(failures)]
        ok = (
            exit_code == 0
            and not unfinished
            and finished + len(failed_jobs) == total
            and len(mails) == args.users + 2  # the conflicting and the shell-looking user still get their mail
            and len(created) == args.users
            and len(reasons) == len(EXPECTED_FAILURES)
            and all(sum(want in reason for reason in reasons) == 1 for want in EXPECTED_FAILURES)
            and not noisy_peers
        )
        if not ok:
            print("demo: unexpected outcome; worker log follows", file=sys.stderr)
            print((workdir / "worker.log").read_text(errors="replace")[-4000:], file=sys.stderr)
            for peer_log in peer_logs:
                print(f"--- {peer_log.name}", peer_log.read_text(errors="replace")[-2000:], sep="\n", file=sys.stderr)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
