"""The README's first command: the demo runs real jobs end to end and reports them."""

import os
import subprocess
import sys

from conftest import REPO_DIR


def test_demo_runs_every_job(redis_url):
    result = subprocess.run(
        [sys.executable, "scripts/demo.py", "--jobs", "40", "--concurrency", "20", "--latency", "0.1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(REPO_DIR),
        env=dict(os.environ, REDIS_URL=redis_url),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "jobs finished      40 of 40" in result.stdout
    assert "jobs failed        0" in result.stdout
    assert "Running: rq-gevent worker demo --burst" in result.stdout


def test_demo_starts_its_own_redis_when_none_is_configured():
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    result = subprocess.run(
        [sys.executable, "scripts/demo.py", "--jobs", "10", "--latency", "0.05"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(REPO_DIR),
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Started an embedded redis-server" in result.stdout
    assert "jobs finished      10 of 10" in result.stdout
