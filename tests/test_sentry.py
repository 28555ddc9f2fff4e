"""Sentry reporting end to end: real workers, real signals, a real HTTP server speaking Sentry's
envelope protocol in its own process (scripts/peers/sentry_sink.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest
import redis
import sentryjobs
import testjobs
from conftest import REPO_DIR, wait_until
from jobrun import run_burst
from rq import Queue, Retry
from rq.command import send_stop_job_command
from rq.job import JobStatus
from rq.worker import Worker

from jobs.discuz.sync import sync_discuz_user
from jobs.mail.activation import send_activation_mail
from jobs.sealing import seal
from rq_gevent import __version__
from rq_gevent.core.error_text import WITHHELD
from rq_gevent.embedded_redis import EmbeddedRedis, free_port
from rq_gevent.integrations.scrubbing import FILTERED

# Talks to Sentry: also run with the oldest sentry-sdk setup.cfg declares (noxfile.py).
pytestmark = pytest.mark.sentry

RELEASE = f"rq-gevent@{__version__}"


def tags(event: dict) -> dict:
    return event.get("tags") or {}


def exception_text(event: dict) -> str:
    return "\n".join(f"{value['type']}: {value.get('value', '')}" for value in event["exception"]["values"])


def breadcrumb_messages(event: dict) -> list[str]:
    return [crumb.get("message") or "" for crumb in (event.get("breadcrumbs") or {}).get("values", [])]


def timestamp(job, field: str) -> datetime:
    job.refresh()
    return getattr(job, field)


def job_events(sink) -> list[dict]:
    return [event for event in sink.events() if "rq.job_id" in tags(event)]


def test_concurrent_failures_each_carry_only_their_own_tags_and_breadcrumbs(
    connection, redis_url, worker_process, sentry_sink
):
    sink = sentry_sink()
    queue = Queue("mail", connection=connection)
    jobs = {f"m{n:02d}": queue.enqueue(sentryjobs.fail_marked, f"m{n:02d}", 0.5) for n in range(20)}
    worker = worker_process(
        "-u", redis_url, "--burst", "-c", "20", "--name", "tagger", "--sentry-dsn", sink.dsn(),
        "--sentry-environment", "staging", "mail",
    )  # fmt: skip
    assert worker.wait(60) == 0, worker.output()

    # They really ran at once: every job started before the first one ended.
    assert max(timestamp(job, "started_at") for job in jobs.values()) < min(
        timestamp(job, "ended_at") for job in jobs.values()
    )
    events = sink.events()
    assert len(events) == 20
    for event in events:
        marker = tags(event)["test.marker"]  # set by the job's own code
        job = jobs[marker]
        assert exception_text(event) == f"ValueError: boom {marker}"
        assert tags(event) == {
            "test.marker": marker,
            "rq.job_id": job.id,
            "rq.func": "sentryjobs.fail_marked",
            "rq.queue": "mail",
            "rq.worker": "tagger",
            "rq.attempt": "1",
            "rq.outcome": "failed",
        }
        marked = [message for message in breadcrumb_messages(event) if message.startswith(("breadcrumb of", "still"))]
        assert marked == [f"breadcrumb of {marker}", f"still {marker}"], breadcrumb_messages(event)
        assert event["release"] == RELEASE and event["environment"] == "staging"
        assert event["extra"]["rq-job"]["job_id"] == job.id
    # No Redis-command breadcrumbs: the Redis integration is off (it costs throughput, see README).
    assert not any(crumb.startswith(("HSET", "PERSIST")) for event in events for crumb in breadcrumb_messages(event))


def test_a_retried_job_reports_once_on_its_final_failure(connection, redis_url, worker_process, sentry_sink):
    sink = sentry_sink()
    queue = Queue(connection=connection)
    retried = queue.enqueue(sentryjobs.fail_marked, "retried", retry=Retry(max=2))
    recovered = queue.enqueue(testjobs.fail_then_succeed, "test:recovers", 1, retry=Retry(max=2))
    worker = worker_process("-u", redis_url, "--burst", "--sentry-dsn", sink.dsn())
    assert worker.wait(60) == 0, worker.output()

    assert retried.get_status(refresh=True) == JobStatus.FAILED, worker.output()
    assert recovered.get_status(refresh=True) == JobStatus.FINISHED
    retried.refresh()
    recovered.refresh()
    assert (retried.retries_left, recovered.retries_left) == (0, 1)  # 2 retries of one, 1 of the other
    events = sink.events()
    assert len(events) == 1
    assert tags(events[0])["rq.job_id"] == retried.id
    assert tags(events[0])["rq.attempt"] == "3"


def test_timeouts_are_grouped_per_function(connection, redis_url, worker_process, sentry_sink):
    sink = sentry_sink()
    queue = Queue(connection=connection)
    first = [queue.enqueue(sentryjobs.sleep_long, 30, job_timeout=1) for _ in range(2)]
    other = queue.enqueue(sentryjobs.also_sleep_long, 30, job_timeout=1)
    worker = worker_process("-u", redis_url, "--burst", "--sentry-dsn", sink.dsn())
    assert worker.wait(60) == 0, worker.output()

    by_job = {tags(event)["rq.job_id"]: event for event in sink.events()}
    assert set(by_job) == {job.id for job in [*first, other]}
    for job in first:
        assert by_job[job.id]["fingerprint"] == ["rq", "JobTimeoutException", "sentryjobs.sleep_long"]
    assert by_job[other.id]["fingerprint"] == ["rq", "JobTimeoutException", "sentryjobs.also_sleep_long"]
    assert {tags(event)["rq.outcome"] for event in by_job.values()} == {"timeout"}


def test_a_stopped_job_is_reported_apart_from_crashes(connection, redis_url, worker_process, sentry_sink):
    sink = sentry_sink()
    queue = Queue(connection=connection)
    stopped = queue.enqueue(sentryjobs.sleep_long, 60)
    crashed = queue.enqueue(sentryjobs.fail_marked, "crash", 0.5)
    worker = worker_process("-u", redis_url, "--sentry-dsn", sink.dsn())
    wait_until(lambda: stopped.get_status(refresh=True) == JobStatus.STARTED, what="job started")
    send_stop_job_command(connection, stopped.id)
    wait_until(lambda: stopped.get_status(refresh=True) == JobStatus.STOPPED, what="job stopped")
    wait_until(lambda: crashed.get_status(refresh=True) == JobStatus.FAILED, what="job failed")
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(15) == 0, worker.output()

    by_job = {tags(event)["rq.job_id"]: event for event in sink.events()}
    assert sorted(tags(event)["rq.job_id"] for event in sink.events()) == sorted([stopped.id, crashed.id])
    stop, crash = by_job[stopped.id], by_job[crashed.id]
    assert stop["level"] == "warning" and tags(stop)["rq.outcome"] == "stopped"
    assert stop["exception"]["values"][-1]["type"] == "JobStopped"
    assert stop["fingerprint"] == ["rq-gevent", "stopped", "sentryjobs.sleep_long"]
    assert crash["level"] == "error" and tags(crash)["rq.outcome"] == "failed"


@pytest.mark.parametrize("shutdown", ["warm", "cold"])
def test_failures_just_before_a_shutdown_are_delivered(connection, redis_url, worker_process, sentry_sink, shutdown):
    sink = sentry_sink("slow:0.2")  # each delivery takes a while: events are still queued at the signal
    queue = Queue(connection=connection)
    long_running = queue.enqueue(sentryjobs.sleep_long, 2 if shutdown == "warm" else 60)
    failing = [queue.enqueue(sentryjobs.fail_marked, f"late{n}") for n in range(5)]
    worker = worker_process("-u", redis_url, "-c", "10", "--sentry-dsn", sink.dsn())
    wait_until(lambda: all(job.get_status(refresh=True) == JobStatus.FAILED for job in failing), what="failures")
    worker.shut_down(cold=shutdown == "cold")
    assert worker.wait(30) == 0, worker.output()

    assert sorted(tags(event)["rq.job_id"] for event in sink.events()) == sorted(job.id for job in failing)
    expected = JobStatus.FINISHED if shutdown == "warm" else JobStatus.QUEUED  # cold: requeued, no event
    assert long_running.get_status(refresh=True) == expected


def test_a_stop_signal_during_the_last_flush_does_not_cut_it_short(connection, redis_url, worker_process, sentry_sink):
    sink = sentry_sink("slow:0.4")  # three deliveries: ~1.2 s of flushing after the worker stopped
    queue = Queue(connection=connection)
    failing = [queue.enqueue(sentryjobs.fail_marked, f"flush{n}") for n in range(3)]
    worker = worker_process("-u", redis_url, "--burst", "--sentry-dsn", sink.dsn())
    wait_until(lambda: all(job.get_status(refresh=True) == JobStatus.FAILED for job in failing), what="failures")
    wait_until(lambda: not Worker.all(connection=connection), what="the worker to stop and deregister")
    assert len(sink.events()) < 3, "the flush was over before the signal: the test proves nothing"
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()

    assert sorted(tags(event)["rq.job_id"] for event in sink.events()) == sorted(job.id for job in failing)


def test_each_pre_forked_child_reports_and_flushes_before_it_is_recycled(
    connection, redis_url, worker_process, sentry_sink
):
    sink = sentry_sink("slow:0.2")
    queue = Queue(connection=connection)
    failing = [queue.enqueue(sentryjobs.fail_marked, f"r{n}") for n in range(8)]
    master = worker_process("-u", redis_url, "-n", "2", "--max-jobs-per-child", "2", "--sentry-dsn", sink.dsn())
    wait_until(lambda: all(job.get_status(refresh=True) == JobStatus.FAILED for job in failing), what="failures")
    wait_until(lambda: len(sink.events()) == 8, timeout=15, what="8 events")
    # A child's events reach the sink before it exits and the master notes the recycling.
    wait_until(lambda: master.output().count("recycled after") >= 3, timeout=15, what="3 recycled children")
    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0, master.output()

    events = sink.events()
    assert sorted(tags(event)["rq.job_id"] for event in events) == sorted(job.id for job in failing)
    # At most 2 jobs (+10 % jitter) per process: at least 4 processes, each one initialised Sentry itself.
    assert len({tags(event)["rq.worker"] for event in events}) >= 4
    assert master.output().count("recycled after") >= 3


def test_the_master_reports_a_watchdog_kill(connection, redis_url, worker_process, sentry_sink):
    sink = sentry_sink()
    queue = Queue(connection=connection)
    spinner = queue.enqueue(testjobs.spin, 600)
    # One child, and a hub timeout an idle child does not reach on a loaded machine (at 2 s, with other
    # suites running, the idle second child of "-n 2" was killed as well).
    master = worker_process("-u", redis_url, "-n", "1", "--hub-timeout", "4", "--sentry-dsn", sink.dsn())
    wait_until(lambda: spinner.get_status(refresh=True) == JobStatus.STARTED, what="spinning job started")
    wait_until(lambda: sink.events(), timeout=20, what="the watchdog alert")
    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0, master.output()

    events = sink.events()
    assert len(events) == 1, ([event.get("logentry") for event in events], master.output()[-5000:])
    [event] = events
    assert tags(event)["rq_gevent.alert"] == "watchdog-kill"
    assert event["fingerprint"] == ["rq-gevent", "alert", "watchdog-kill"]
    assert "killed by the master" in event["logentry"]["message"]
    assert "watchdog: its event loop has not run" in str(event["logentry"]["params"])
    assert event["level"] == "error"


def test_the_master_reports_a_crash_loop_before_it_exits(worker_process, sentry_sink, redis_that_answers_once):
    sink = sentry_sink()
    master = worker_process("-u", redis_that_answers_once, "-n", "2", "--sentry-dsn", sink.dsn())
    assert master.wait(60) == 1

    [event] = sink.events()  # delivered before the master exited
    assert tags(event)["rq_gevent.alert"] == "crash-loop"
    assert "failed at start-up 5 times in a row" in str(event["logentry"])


def test_redis_unreachable_for_longer_than_the_threshold_is_reported_once(worker_process, sentry_sink):
    sink = sentry_sink()
    with EmbeddedRedis() as private_redis:
        queue = Queue(connection=redis.Redis.from_url(private_redis.url))
        worker = worker_process("-u", private_redis.url, "--redis-alert-after", "2", "--sentry-dsn", sink.dsn())
        wait_until(lambda: "Listening on" in worker.output(), what="worker listening")
        private_redis.restart(down_for=5)
        wait_until(lambda: "Redis reachable again" in worker.output(), timeout=30, what="reconnection")
        done = queue.enqueue(testjobs.green_sleep, 0, "after the outage")
        wait_until(lambda: done.get_status(refresh=True) == JobStatus.FINISHED, what="serving again")
        os.kill(worker.pid, signal.SIGTERM)
        assert worker.wait(15) == 0, worker.output()

    [event] = sink.events()
    assert tags(event)["rq_gevent.alert"] == "redis-unreachable"
    assert tags(event)["rq.worker"] in worker.output()
    assert "Redis unavailable for" in str(event["logentry"])


def test_no_secret_given_to_a_sensitive_job_reaches_sentry(connection, redis_url, worker_process, sentry_sink):
    sink = sentry_sink()
    queue = Queue(connection=connection)
    marked_secret, pattern_secret, control_secret = "Marked-S3cret-1", "Pattern-S3cret-2", "Control-S3cret-3"
    marked = queue.enqueue(sentryjobs.leak_marked, "alice", marked_secret)
    by_pattern = queue.enqueue(sentryjobs.leak_by_pattern, "bob", pattern_secret)
    control = queue.enqueue(sentryjobs.leak_unmarked, "carol", control_secret)
    # The Discuz sync is sensitive out of the box; without forum settings it fails at once.
    forum_address = "forum-user@example.org"
    discuz = queue.enqueue(sync_discuz_user, "forum-user", forum_address, seal(marked_secret))
    # Plain enqueues of the mail job (its link is a credential) and of an unsealed password.
    link, mail_address, unsealed = (
        "https://example.com/activate?token=Link-S3cret-4",
        "mail-user@example.org",
        "Unsealed-5",
    )
    mail = queue.enqueue(send_activation_mail, mail_address, "Mail Person", link)
    plain = queue.enqueue(sync_discuz_user, "plain-user", "plain-user@example.org", unsealed)
    worker = worker_process(
        "-u", redis_url, "--burst", "--config", "sentry_config", env={"TEST_SENTRY_DSN": sink.dsn()}
    )
    assert worker.wait(60) == 0, worker.output()

    by_job = {tags(event)["rq.job_id"]: event for event in sink.events()}
    assert set(by_job) == {marked.id, by_pattern.id, control.id, discuz.id, mail.id, plain.id}
    received = b"".join(sink.received())
    # Control: a job that is not marked shows the secret in its description, message, breadcrumbs.
    assert received.count(control_secret.encode()) >= 3
    assert control_secret in by_job[control.id]["extra"]["rq-job"]["description"]
    # No job's args or kwargs, whatever sentry-sdk's version would send (docs/sentry.md, "Secrets").
    for event in by_job.values():
        assert {event["extra"]["rq-job"].get(key, "[Filtered]") for key in ("args", "kwargs")} == {"[Filtered]"}
    for job in (marked, by_pattern):
        event = by_job[job.id]
        assert event["extra"]["rq-job"]["description"] == "[Filtered]"
        assert exception_text(event) == f"CalledProcessError: {WITHHELD}\nRuntimeError: {WITHHELD}"
        # The subprocess, without its argv.
        assert f"{os.path.basename(sys.executable)} [Filtered]" in breadcrumb_messages(event)
        assert not any("vars" in frame for value in event["exception"]["values"] for frame in
                       value["stacktrace"]["frames"])  # fmt: skip
    assert by_job[discuz.id]["extra"]["rq-job"]["description"] == "[Filtered]"
    assert exception_text(by_job[discuz.id]) == f"SettingsError: {WITHHELD}"  # DISCUZ_BACKEND is not set
    for secret in (marked_secret, pattern_secret, forum_address, link, mail_address, "Mail Person", unsealed):
        assert secret.encode() not in received, secret
    for secret in (forum_address, link, mail_address, "Mail Person", unsealed):  # the leak_* jobs print theirs
        assert secret not in worker.output(), secret
    # The worker logs a sensitive job by id, an ordinary one by description.
    assert f"default: {marked.id}\n" in worker.output() and f"default: {by_pattern.id}\n" in worker.output()
    assert "leak_marked('alice'" not in worker.output() and "leak_by_pattern('bob'" not in worker.output()
    assert f"default: sentryjobs.leak_unmarked('carol', '{control_secret}') ({control.id})" in worker.output()
    assert event["environment"] == "from-config"


def test_a_sensitive_jobs_event_keeps_file_and_function_names(
    connection, redis_url, worker_process, sentry_sink, smtp_sink, ucenter
):
    """Keyword arguments named like words of every event (``name``, ``username``, ``email``): their
    values are scrubbed, never their names."""
    sink, smtp, forum = sentry_sink(), smtp_sink("gone-7q@example.org=550"), ucenter()
    forum.add_member("Taken-Name-7q", "owner-7q@elsewhere.net", "their-password")
    queue = Queue("jobs", connection=connection)
    link = "https://example.com/activate?token=Link-Token-7q"
    mail = queue.enqueue(send_activation_mail, to="gone-7q@example.org", name="Gone Person", link=link, locale="en")
    discuz = queue.enqueue(
        sync_discuz_user, username="Taken-Name-7q", email="mine-7q@example.org", password=seal("Forum-Pw-7q")
    )
    run_burst(worker_process, redis_url, {**smtp.settings(), **forum.settings()}, "--sentry-dsn", sink.dsn())

    assert mail.get_status(refresh=True) == discuz.get_status(refresh=True) == JobStatus.FAILED
    by_job = {tags(event)["rq.job_id"]: event for event in sink.events()}
    received = b"".join(sink.received())
    assert b"send_activation_mail" in received and b"_already_there" in received  # the searched payload
    # The jobs' own errors (jobs.outcomes) have public messages; any other exception's is withheld.
    expected = {
        mail.id: ("PermanentError", "jobs/mail/activation.py", "send_activation_mail", "SMTP server 127.0.0.1:"),
        discuz.id: ("ForumConflict", "jobs/discuz/sync.py", "_already_there", "the forum username belongs to"),
    }
    for job_id, (kind, path, function, message) in expected.items():
        values = by_job[job_id]["exception"]["values"]
        frames = [frame for value in values for frame in value["stacktrace"]["frames"]]
        assert all({"filename", "abs_path", "function", "lineno"} <= set(frame) for frame in frames), frames
        assert FILTERED not in str(values)  # file names, function names, source lines, messages
        assert any(frame["filename"].endswith(path) and frame["function"] == function for frame in frames)
        assert values[-1]["type"] == kind and values[-1]["value"].startswith(message), values[-1]["value"]
    for secret in ("gone-7q@example.org", "Gone Person", "Link-Token-7q", "Taken-Name-7q", "mine-7q@example.org"):
        assert secret.encode() not in received, secret
    assert b"Forum-Pw-7q" not in received


@pytest.mark.parametrize("answer", ["hang", "slow:5", "429", "500", "refused"])
def test_a_broken_sentry_endpoint_costs_no_job(connection, redis_url, worker_process, sentry_sink, answer):
    if answer == "refused":
        dsn = f"http://publickey@127.0.0.1:{free_port()}/1"  # nothing listens there
    else:
        dsn = sentry_sink(answer).dsn()
    queue = Queue(connection=connection)
    # More failures than sentry-sdk queues (100), so a stuck endpoint overflows its queue too.
    jobs = [queue.enqueue(testjobs.fail if n % 3 else testjobs.green_sleep, 0.05) for n in range(240)]
    worker = worker_process("-u", redis_url, "--burst", "-c", "50", "--sentry-dsn", dsn)
    assert worker.wait(60) == 0, worker.output()
    exited = time.time()

    statuses = [job.get_status(refresh=True) for job in jobs]
    assert statuses.count(JobStatus.FAILED) == 160 and statuses.count(JobStatus.FINISHED) == 80
    # The operator learns that failures go unreported.
    assert "error events not delivered" in worker.output()
    last_ended = max(timestamp(job, "ended_at") for job in jobs).timestamp()
    # Exit waits for delivery at most rq_gevent.integrations.sentry.FLUSH_SECONDS (2 s), whatever the endpoint does.
    assert exited - last_ended < 2 + 3


@pytest.mark.parametrize("source", ["option", "environment", "config"])
def test_the_dsn_comes_from_the_option_the_environment_or_the_config_module(
    connection, redis_url, worker_process, sentry_sink, source
):
    sink = sentry_sink()
    dsn = sink.dsn(secret_key="raven-style-secret")  # a DSN written for raven, with a secret key
    queue = Queue(connection=connection)
    job = queue.enqueue(sentryjobs.fail_marked, source)
    args, env = ["-u", redis_url, "--burst"], {}
    if source == "option":
        args += ["--sentry-dsn", dsn]
    elif source == "environment":
        env["SENTRY_DSN"] = dsn
    else:
        args += ["--config", "sentry_config"]
        env["TEST_SENTRY_DSN"] = dsn
    worker = worker_process(*args, env=env)
    assert worker.wait(60) == 0, worker.output()

    [event] = sink.events()
    assert tags(event)["rq.job_id"] == job.id
    assert "sentry_secret=raven-style-secret" in sink.requests_headers()[0]["X-Sentry-Auth"]
    assert "raven-style-secret" not in worker.output()
    assert f"reporting errors to Sentry at http://127.0.0.1:{sink.port}/1" in worker.output()
    assert "sys.argv" not in event.get("extra", {})  # argv may hold credentials


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--sentry-dsn", "ftp://key:hidden-secret@host/1"], {}, "invalid Sentry DSN: Unsupported scheme 'ftp'"),
        (["--sentry-dsn", "http://key:hidden-secret@host/project"], {}, "invalid Sentry DSN: Invalid project"),
        (["--config", "sentry_config"], {"TEST_SENTRY_DSN": "http://@host/1"}, "invalid Sentry DSN: Missing public"),
        (["--config", "bad_sensitive_config"], {}, "SENSITIVE_JOBS must be a list of dotted function names"),
    ],
)
def test_bad_sentry_settings_are_one_clear_line(args, env, message):
    result = subprocess.run(
        [sys.executable, "-m", "rq_gevent", "worker", "-P", "tests", "-u", "redis://127.0.0.1:1/0", *args],
        capture_output=True,
        text=True,
        cwd=str(REPO_DIR),
        env=dict(os.environ, **env),
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"rq-gevent: error: {message}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "hidden-secret" not in result.stderr + result.stdout


def test_the_master_reports_a_worker_process_that_died_on_its_own(connection, redis_url, worker_process, sentry_sink):
    sink = sentry_sink()
    master = worker_process("-u", redis_url, "-n", "2", "--sentry-dsn", sink.dsn())
    wait_until(lambda: len(Worker.all(connection=connection)) == 2, what="2 workers registered")
    victim = Worker.all(connection=connection)[0].pid
    time.sleep(1.5)  # let it prove itself alive to the master (a death at start-up is not this alert)
    os.kill(victim, signal.SIGKILL)  # as the OOM killer would
    wait_until(lambda: sink.events(), timeout=15, what="the alert")
    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0, master.output()

    [event] = sink.events()
    assert tags(event)["rq_gevent.alert"] == "worker-died"
    assert f"(pid {victim})" in str(event["logentry"]["params"])
    assert "killed by signal SIGKILL" in str(event["logentry"]["params"])
