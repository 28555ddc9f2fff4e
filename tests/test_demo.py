"""The README's first command: the registration pipeline runs end to end and reports what happened."""

import os
import subprocess
import sys

from conftest import REPO_DIR


def run_demo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/demo.py", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=str(REPO_DIR),
        env=env,
    )


def test_demo_delivers_mail_creates_forum_users_and_reports_failures(redis_url):
    result = run_demo(
        "--users", "40", "--processes", "2", "--concurrency", "20", env=dict(os.environ, REDIS_URL=redis_url)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Running: rq-gevent worker registrations --burst" in out and "-n 2 -c 20" in out
    assert "mails delivered    42" in out
    assert "forum users made   40" in out
    assert "jobs finished      82 of 86" in out
    assert "jobs failed        4" in out
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
