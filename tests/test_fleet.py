"""Several worker hosts against one Redis, one of them cut off: each host a network namespace with a
``-n 2`` pool, Redis on the bridge between them.  Host 0 loses its link for longer than an execution
lives; host 1 must recover its jobs under rq's rules, and host 0 must rejoin by itself."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import redis
from conftest import REPO_DIR, SCRIPTS_DIR, TESTS_DIR, wait_until
from ledger import Ledger
from peers.hosts import Fleet, available
from rq import Retry
from rq.registry import FinishedJobRegistry
from rq.worker import Worker

from rq_gevent.embedded_redis import EmbeddedRedis

MONITORING, MAINTENANCE = 5, 5  # s: an execution lives MONITORING + 60 s without a heartbeat
CUT_SECONDS = 75  # longer than that: the cut host's executions expire while it is away


@pytest.fixture
def fleet():
    reason = available()
    if reason:
        raise RuntimeError(f"the fleet test needs network namespaces: {reason}")
    with Fleet(hosts=2) as hosts:
        yield hosts


def _worker_on(fleet: Fleet, index: int, url: str, log) -> subprocess.Popen:
    argv = [sys.executable, "-m", "rq_gevent", "worker", "-u", url, "-n", "2", "-c", "10", "--name", f"host{index}",
            "-P", str(TESTS_DIR), "-P", str(SCRIPTS_DIR), "--job-monitoring-interval", str(MONITORING),
            "--maintenance-interval", str(MAINTENANCE), "ledger"]  # fmt: skip
    return fleet.run(index, argv, cwd=str(REPO_DIR), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def test_a_cut_off_host_s_jobs_are_recovered_and_it_rejoins(fleet, tmp_path):
    bind = ["--bind", "127.0.0.1", fleet.redis_address, "--protected-mode", "no"]
    with EmbeddedRedis(extra_args=bind) as server:
        connection = redis.Redis(port=server.port)
        url = f"redis://{fleet.redis_address}:{server.port}/0"
        ledger = Ledger(connection)
        ledger.enqueue(400, seconds=2.0, retry=Retry(max=2))
        logs = [open(tmp_path / f"host{index}.log", "w") for index in range(2)]
        workers = [_worker_on(fleet, index, url, logs[index]) for index in range(2)]
        try:
            wait_until(lambda: len(Worker.all(connection=connection)) == 4, timeout=30, what="4 worker processes")
            wait_until(lambda: len(FinishedJobRegistry(queue=ledger.queue)) >= 40, timeout=30, what="jobs finishing")
            cut_at = time.monotonic()
            fleet.cut(0)
            # Host 1 keeps working; host 0's executions expire and host 1's maintenance retries them.
            wait_until(lambda: ledger.account().lines == {"finished": 400}, timeout=CUT_SECONDS, interval=1,
                       what="host 1 finishing every job, host 0's included")  # fmt: skip
            recovered_after = time.monotonic() - cut_at
            print(f"every job finished {recovered_after:.0f} s after the cut: {ledger.account()}")
            time.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - cut_at)))
            fleet.restore(0)
            restored_at = time.time()

            def host0_beating() -> bool:
                beats = [w.last_heartbeat for w in Worker.all(connection=connection) if w.name.startswith("host0")]
                return len(beats) == 2 and all(beat and beat.timestamp() > restored_at for beat in beats)

            wait_until(host0_beating, timeout=60, interval=1, what="host 0 rejoining")
            rejoined_after = time.time() - restored_at
            ledger.settle(timeout=120)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                try:
                    worker.wait(60)
                except subprocess.TimeoutExpired:
                    worker.kill()
            for log in logs:
                log.close()
        account = ledger.account()
        print(f"host 0 rejoined {rejoined_after:.0f} s after its link came back; ledger: {account}")
        host0 = (tmp_path / "host0.log").read_text(errors="replace")
        assert account.pending == 0 and account.lost == [], account
        assert account.lines == {"finished": 400}, account
        assert account.duplicates >= 1, account  # host 0's interrupted runs, retried by host 1
        assert "Traceback" not in host0, host0[-3000:]
        assert [worker.returncode for worker in workers] == [0, 0], host0[-3000:]
