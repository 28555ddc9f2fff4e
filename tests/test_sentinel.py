"""Redis Sentinel: a real primary, a replica and three redis-sentinel processes.  The launcher's
workers must take jobs through Sentinel and follow a failover, whether the primary steps down
(``SENTINEL FAILOVER``) or is killed (``kill -9``)."""

from __future__ import annotations

import os
import time

import pytest
from conftest import wait_until
from ledger import Ledger
from peers.sentinel import MASTER_NAME, SentinelSet
from redis.exceptions import RedisError
from redis.sentinel import Sentinel
from rq.registry import FinishedJobRegistry
from rq.worker import Worker

from rq_gevent.connections import follow_failovers

JOBS, SECONDS = 800, 0.5  # about 10 s of work for 2 processes x 20 greenlets


@pytest.fixture
def redis_ha(tmp_path):
    with SentinelSet(tmp_path / "sentinel") as peers:
        yield peers


def _through_failover(predicate):
    """``predicate``, read as False while the test's own client is cut off by the failover."""

    def checked() -> bool:
        try:
            return bool(predicate())
        except RedisError:
            return False

    return checked


class _Count:
    """``len()`` of a registry by ZCARD alone (rq 2's ``count`` first cleans up: a write)."""

    def __init__(self, connection, key: str):
        self.connection, self.key = connection, key

    def __len__(self) -> int:
        return self.connection.zcard(self.key)


def _registered_since(connection, moment: float) -> set[str]:
    """Workers whose heartbeat reached the current primary after ``moment`` (wall clock)."""
    return {worker.name for worker in Worker.all(connection=connection)
            if worker.last_heartbeat is not None and worker.last_heartbeat.timestamp() > moment}  # fmt: skip


@pytest.mark.parametrize("how", ["failover", "kill -9"])
def test_workers_follow_the_primary_through_a_failover(redis_ha, worker_process, tmp_path, how):
    (tmp_path / "sentinel_settings.py").write_text(f"SENTINEL = {redis_ha.settings()!r}\n")
    connection = Sentinel(redis_ha.settings()["INSTANCES"], socket_timeout=2).master_for(MASTER_NAME, socket_timeout=5)
    follow_failovers(connection)  # the test's own reads follow the primary as the workers' do
    ledger = Ledger(connection)
    ledger.enqueue(JOBS, seconds=SECONDS)
    replicas = len(redis_ha.replicas)
    assert connection.execute_command("WAIT", replicas, 5000) == replicas  # acknowledged and replicated to all
    worker = worker_process("--config", "sentinel_settings", "-P", str(tmp_path), "-n", "2", "-c", "20", "ledger")
    finished = _Count(connection, FinishedJobRegistry(queue=ledger.queue).key)
    wait_until(lambda: len(finished) >= 100, timeout=30, what="jobs finishing through Sentinel")
    wait_until(lambda: len(_registered_since(connection, time.time() - 30)) == 2, what="both processes registered")

    promoted_at = redis_ha.failover() if how == "failover" else redis_ha.kill_primary()
    promoted_wall = time.time() - (time.monotonic() - promoted_at)
    # Until a replica follows the new primary it refuses writes (min-replicas-to-write 1): how long
    # that takes is the sentinels' doing (1.5 to 17 s seen), so the workers' delay counts from then.
    writable_at = redis_ha.wait_until_writable()
    done_then: list[int] = []
    wait_until(_through_failover(lambda: done_then or done_then.append(len(finished))), what="the count then")
    wait_until(_through_failover(lambda: len(finished) >= done_then[0] + 40), timeout=30,
               what="work resuming on the new primary")  # fmt: skip
    resumed_after = time.monotonic() - writable_at
    wait_until(_through_failover(lambda: len(_registered_since(connection, promoted_wall)) == 2), timeout=30,
               what="both processes registered on the new primary")  # fmt: skip
    print(f"{how}: the new primary took writes {writable_at - promoted_at:.1f} s after its promotion, work "
          f"resumed {resumed_after:.1f} s after that")  # fmt: skip
    assert resumed_after <= 15, worker.output()[-20000:]  # what the workers did meanwhile, for a slow run

    ledger.settle(timeout=int(os.environ.get("SETTLE", "240")))
    if os.environ.get("DUMP"):
        open(os.environ["DUMP"], "w").write(worker.output())
    worker.shut_down()
    assert worker.wait(60) == 0, worker.output()[-3000:]
    account = ledger.account()
    print(f"ledger after {how}: {account}")
    assert account.pending == 0 and account.lost == [], account
    assert account.lines == {"finished": JOBS}, account
