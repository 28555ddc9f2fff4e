"""The README's first command: the registration pipeline runs end to end and reports what happened."""

import os
import re
import resource
import secrets
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest
from conftest import REPO_DIR

# Runs once, not on each rq, Python and server (docs/contributing.md):
# the demo script's processes and its summary.
pytestmark = pytest.mark.once


def run_demo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/demo.py", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=str(REPO_DIR),
        env=env,
    )


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def counted(count: str, noun: str, plural: str) -> str:
    return f"{count} {noun if count == '1' else plural}"


@pytest.fixture
def password_url(connection, redis_url):
    """A ``redis://USER:PASSWORD@...`` URL of the test server (an ACL user, gone afterwards); and the password."""
    user, password = "demo-user", secrets.token_hex(8)
    connection.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    address = urlsplit(redis_url)
    yield f"redis://{user}:{password}@{address.netloc}{address.path}", password
    connection.acl_deluser(user)


def test_demo_delivers_mail_creates_forum_users_and_reports_failures(redis_url):
    result = run_demo(
        "--users", "40", "--processes", "2", "--concurrency", "20", env=dict(os.environ, REDIS_URL=redis_url)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"Running: REDIS_URL={redis_url} rq-gevent worker registrations -n 2 -c 20 --with-scheduler" in out
    assert "mails delivered    42" in out
    assert "forum users made   40" in out
    assert "jobs enqueued      86" in out
    assert "jobs finished      82" in out
    assert "jobs failed        4" in out
    assert "jobs not ended" not in out
    assert (
        "sync_discuz_user(user_id=42): jobs.discuz.errors.ForumRejected: UCenter refused the registration: -1 "
        "(invalid username)" in out
    )
    assert "alice; rm -rf /" not in out  # descriptions carry no personal field
    assert "worker exit code   0" in out


def test_demo_starts_its_own_redis_when_none_is_configured():
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "JOBS_SEALING_KEY")}
    result = run_demo("--users", "5", "--forum-latency", "0", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Started an embedded redis-server" in result.stdout
    assert "forum users made   5" in result.stdout


@pytest.mark.parametrize(
    ("users", "processes", "concurrency"),
    [("1", "1", "1"), ("1000", "2", "100")],  # the smallest run, and the size that once lost jobs
)
def test_demo_counts_every_job_at_any_size(redis_url, users, processes, concurrency):
    """Finished and failed add up to what was enqueued; no peer prints a traceback; the summary names
    the busiest part (the stand-in forum must not be it)."""
    result = run_demo(
        "--users", users, "--processes", processes, "--concurrency", concurrency,
        env=dict(os.environ, REDIS_URL=redis_url),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"worker pool        {counted(processes, 'process', 'processes')} x " in out
    assert f" x {counted(concurrency, 'greenlet', 'greenlets')}\n" in out
    cores, noun = re.search(r"of the (\d+) (\w+) it can use", out).groups()
    assert noun == counted(cores, "core", "cores").split()[1], out
    total = 2 * (int(users) + 3)
    finished = int(re.search(r"jobs finished +(\d+)", out).group(1))
    failed = int(re.search(r"jobs failed +(\d+)", out).group(1))
    assert f"jobs enqueued      {total}" in out
    assert (finished, failed) == (total - 4, 4)
    assert "Traceback" not in out + result.stderr
    busiest = re.search(r"busiest +([a-zA-Z ]+?):", out).group(1)
    assert busiest != "local forum", out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "0"], "argument --users: must be between 1 and 10,000, got 0"),
        (["--processes", "9"], "argument --processes: must be between 1 and 8, got 9"),
        (["--concurrency", "lots"], "argument --concurrency: expected a whole number, got 'lots'"),
        (["--forum-latency", "-1"], "argument --forum-latency: must be between 0 and 10 seconds, got -1"),
    ],
)
def test_demo_refuses_sizes_it_does_not_support(args, message):
    result = run_demo(*args, env=dict(os.environ))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"demo.py: error: {message}"


@pytest.mark.every_version  # a returned Retry with a delay, then rq's scheduler: rq's own code on each version
def test_demo_against_a_redis_a_stopped_run_left_jobs_in(connection, redis_url):
    """A demo interrupted with jobs still scheduled (a retry) or started leaves them under the stable
    ids the helpers use; the next run must not take them for its own."""
    from datetime import UTC, datetime, timedelta

    from rq import Queue

    queue = Queue("registrations", connection=connection)
    queue.enqueue_at(datetime.now(UTC) + timedelta(hours=1), print, "left over", job_id="discuz-sync-2")
    result = run_demo("--users", "5", "--forum-latency", "0", env=dict(os.environ, REDIS_URL=redis_url))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "forum users made   5" in result.stdout
    assert "jobs not ended" not in result.stdout


@pytest.mark.every_version  # a returned Retry with a delay, then rq's scheduler: rq's own code on each version
def test_demo_summary_stays_correct_when_the_forum_times_out():
    """Every forum call outlasts the job's HTTP timeout: the sync jobs retry (the scheduler brings them
    back), then fail; the summary counts them, names why, and the demo exits non-zero."""
    env = dict(os.environ, DISCUZ_HTTP_TIMEOUT="0.3")
    env.pop("REDIS_URL", None)
    result = run_demo("--users", "3", "--forum-latency", "0.6", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "jobs enqueued      12" in out
    finished = int(re.search(r"jobs finished +(\d+)", out).group(1))
    failed = int(re.search(r"jobs failed +(\d+)", out).group(1))
    # 5 mails finish; mallory's mail, 2 syncs refused without the forum (a bad address, a bad name)
    # and the 4 that need the forum fail: each timed out 5 times (4 retries).
    assert (finished, failed) == (5, 7), out
    assert "jobs not ended" not in out
    assert "jobs retried       4 " in out
    assert "16 x UCenter unreachable: TimeoutError: timed out" in out
    assert "the run mostly waited, on the forum's 0.6 s per call and retry back-off" in out
    assert "Traceback" not in out


BURNT = 2.0  # CPU seconds a child of the shell burns before the shell execs the demo


def test_demo_counts_the_worker_pool_cpu_of_its_run_only(password_url):
    """As ``bash -c "pip install ... && python scripts/demo.py"`` runs it on a fresh machine: the shell
    reaps a child that burnt CPU, then execs the demo, which inherits that child's CPU in its
    RUSAGE_CHILDREN (exec keeps it).  The pool's CPU must be the pool's own, in its window: a share
    the cores cannot give (once 284% of 2) and more CPU than the whole process tree used are wrong.
    One run with one process also checks the singular wordings, and the password's absence."""
    url, password = password_url
    burn = f"import time\nwhile time.process_time() < {BURNT}: pass"
    shell = '"$0" -c "$1" && exec "$0" scripts/demo.py --users 1 --processes 1 --forum-latency 0'
    before = children_cpu_seconds()
    result = subprocess.run(
        ["sh", "-c", shell, sys.executable, burn],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=str(REPO_DIR),
        env=dict(os.environ, REDIS_URL=url),
    )
    tree = children_cpu_seconds() - before  # the shell, the burner, the demo and everything it reaped
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "  worker pool        1 process x 50 greenlets\n" in out
    assert "of the 1 core it can use" in out
    assert password not in out + result.stderr
    # The Running: line; the URL goes to the pool in its environment, not in argv (ps would show it).
    assert f"Running: REDIS_URL={url.replace(password, '***')} rq-gevent worker " in out
    cpu = dict(re.findall(r"([a-zA-Z ]+?) ([0-9.]+) s", re.search(r"CPU used +(.*)", out).group(1)))
    share = int(re.search(r"busiest +[a-zA-Z ]+: [0-9.]+ cores on average.*, (\d+)% of the", out).group(1))
    assert share <= 100, out
    reported = sum(float(seconds) for part, seconds in cpu.items() if part.strip() != "Redis")
    assert 0 < reported <= tree - BURNT + 0.15, (out, tree)  # 0.15: three figures rounded to 0.1


@pytest.mark.parametrize(
    "case",
    ["dead Redis", "no scheme", "malformed port", "wrong password", "no SMTP server package", "malformed key"],
)
def test_demo_says_in_one_line_why_it_cannot_start(case, tmp_path, redis_url, password_url):
    """Each start-up failure the demo can meet is one line on stderr, with the address and without a
    password, not a traceback, and a quick non-zero exit."""
    good_url, password = password_url
    address = urlsplit(redis_url).netloc
    env = dict(os.environ, REDIS_URL=good_url)
    expected = {
        "dead Redis": "cannot use the Redis at redis://:***@127.0.0.1:1/0: ",  # then redis-py's reason
        "no scheme": "cannot use the Redis at 127.0.0.1:6379: ",
        "malformed port": "cannot use the Redis at redis://:***@127.0.0.1:6379x/0: ",
        "wrong password": f"the Redis at redis://demo-user:***@{address}/0 refused the demo's credentials: ",
        "no SMTP server package": "the local SMTP server (smtp_sink.py) did not start: ModuleNotFoundError: "
        "No module named 'aiosmtpd'; install what the demo needs: pip install -e '.[demo]'",
        "malformed key": "JOBS_SEALING_KEY is malformed",
    }[case]
    if case == "dead Redis":
        env["REDIS_URL"] = f"redis://:{password}@127.0.0.1:1/0"
    elif case == "no scheme":
        env["REDIS_URL"] = "127.0.0.1:6379"
    elif case == "malformed port":
        env["REDIS_URL"] = f"redis://:{password}@127.0.0.1:6379x/0"
    elif case == "wrong password":
        env["REDIS_URL"] = good_url.replace(password, password[::-1])
    elif case == "no SMTP server package":  # as if aiosmtpd were not installed: only the SMTP peer imports it
        (tmp_path / "aiosmtpd").mkdir()
        missing = "raise ModuleNotFoundError(\"No module named 'aiosmtpd'\", name='aiosmtpd')\n"
        (tmp_path / "aiosmtpd" / "__init__.py").write_text(missing)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    elif case == "malformed key":
        env["JOBS_SEALING_KEY"] = "not-a-key"
    started = time.monotonic()
    result = run_demo("--users", "1", env=env)
    took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("demo: "), result.stderr
    assert expected in lines[0]
    assert password not in result.stdout + result.stderr
    assert password[::-1] not in result.stdout + result.stderr
    assert took < 20, took
