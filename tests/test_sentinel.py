"""Redis Sentinel: a real primary, a replica and three redis-sentinel processes.  The launcher's
workers must take jobs through Sentinel and follow a failover, whether the primary steps down
(``SENTINEL FAILOVER``) or is killed (``kill -9``)."""

from __future__ import annotations

import os
import re
import time

import gevent
import pytest
from conftest import wait_until
from ledger import Ledger
from peers.sentinel import MASTER_NAME, SentinelSet
from redis.exceptions import RedisError
from redis.sentinel import Sentinel
from rq.registry import FinishedJobRegistry
from rq.worker import Worker

from rq_gevent.plumbing.connections import follow_failovers

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


class _Writability:
    """Whether the primary the sentinels name takes writes, sampled every 0.1 s in a greenlet.  Under
    load a sentinel may take the primary it just promoted for down and fail over again (seen: a second
    promotion a second after the first, then no writes for 12 s, until the first one was made a replica
    of the second), so the workers' delay counts from when writes were last taken again."""

    def __init__(self, redis_ha: SentinelSet):
        self.samples: list[tuple[float, bool]] = []
        self._greenlet = gevent.spawn(self._sample, redis_ha)

    def _sample(self, redis_ha: SentinelSet) -> None:
        while True:
            self.samples.append((time.monotonic(), redis_ha.accepts_writes()))
            gevent.sleep(0.1)

    def stop(self) -> None:
        self._greenlet.kill()

    def last_became_writable(self, before: float) -> float:
        """When the stretch of writability that ``before`` falls in (or the last one before it) began."""
        began = None
        for moment, writable in self.samples:
            if moment > before:
                break
            if writable and began is None:
                began = moment
            elif not writable:
                began = None
        return began if began is not None else before

    def stretches(self) -> int:
        """How many times writes began to be taken."""
        flags = [writable for _, writable in self.samples]
        before = [False, *flags[:-1]]
        return sum(1 for previous, writable in zip(before, flags, strict=True) if writable and not previous)


def _registered_since(connection, moment: float) -> set[str]:
    """Workers whose heartbeat reached the current primary after ``moment`` (wall clock)."""
    return {worker.name for worker in Worker.all(connection=connection)
            if worker.last_heartbeat is not None and worker.last_heartbeat.timestamp() > moment}  # fmt: skip


# A job's routine lines, left out of what a slow failover shows.
ROUTINE = re.compile(r"Job OK|result is kept|Successfully completed|: ledger\.ledger_job\(")


def _unusual_lines(output: str) -> str:
    return "\n".join(line for line in output.splitlines() if not ROUTINE.search(line))[-20000:]


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
    writability = _Writability(redis_ha)
    first_writable_at = redis_ha.wait_until_writable()
    done_then: list[int] = []
    wait_until(_through_failover(lambda: done_then or done_then.append(len(finished))), what="the count then")
    wait_until(_through_failover(lambda: len(finished) >= done_then[0] + 40), timeout=30,
               what="work resuming on the new primary")  # fmt: skip
    resumed_at = time.monotonic()
    writability.stop()
    writable_at = writability.last_became_writable(resumed_at)
    resumed_after = resumed_at - writable_at
    wait_until(_through_failover(lambda: len(_registered_since(connection, promoted_wall)) == 2), timeout=30,
               what="both processes registered on the new primary")  # fmt: skip
    print(f"{how}: the new primary took writes {first_writable_at - promoted_at:.1f} s after its promotion "
          f"(writes began {writability.stretches()} time(s); the last {writable_at - promoted_at:.1f} s after it), "
          f"work resumed {resumed_after:.1f} s after that")  # fmt: skip
    assert resumed_after <= 15, _unusual_lines(worker.output())  # what the workers did meanwhile, for a slow run

    ledger.settle(timeout=int(os.environ.get("SETTLE", "240")))
    if os.environ.get("DUMP"):
        open(os.environ["DUMP"], "w").write(worker.output())
    worker.shut_down()
    assert worker.wait(60) == 0, worker.output()[-3000:]
    account = ledger.account()
    print(f"ledger after {how}: {account}")
    assert account.pending == 0 and account.lost == [], account
    assert account.lines == {"finished": JOBS}, account
