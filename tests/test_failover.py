"""A failover that loses a job's last writes: the new primary lacks what the old one acknowledged.

A real primary and its real replica behind one address (``blackhole_proxy.py --failover-target``,
as a managed Redis fails over), replication cut at a chosen moment of a job's run, then the
failover.  Whatever part of the run the new primary lacks (its outcome, its start, or its pop too),
the run that happened must end recorded there: the job finished, its id in no list, not left queued
for rq's maintenance to requeue ten minutes later.  The Sentinel tests (test_sentinel.py) meet the
same losses at random moments.
"""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
import redis
import testjobs
from conftest import wait_until
from ledger import Ledger, ledger_job, runs_of
from peers.processes import PEERS_DIR, ServerProcess, free_port
from rq import Queue, Retry
from rq.command import send_stop_job_command
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.worker import Worker

from rq_gevent import GeventWorker
from rq_gevent.core.running import RunningJob
from rq_gevent.embedded_redis import EmbeddedRedis

# Where replication is cut: the worker class whose gate it happens at (None: before the worker
# starts), and how many runs of the job the new primary may count.  The job counts its run itself:
# that count reached the new primary when only the outcome was lost.  A new primary that never saw
# the pop has the job queued, and a worker may take it again before the lost run is recorded there:
# at least once, then, but never lost.
LOST = {
    "the outcome": ("testworkers.GatedOutcomeWorker", {1}),  # the start and the run reached the replica
    "the start": ("testworkers.GatedPrepareWorker", {0}),  # the pop reached it, not the start
    "the pop and the start": (None, {0, 1}),  # nothing of the run reached it
}


@pytest.fixture
def primary_and_replica():
    with EmbeddedRedis() as old, EmbeddedRedis(extra_args=["--replicaof", "127.0.0.1", str(old.port)]) as new:
        old_client, new_client = redis.Redis.from_url(old.url), redis.Redis.from_url(new.url)
        wait_until(lambda: new_client.info("replication")["master_link_status"] == "up", what="replica in sync")
        proxy_port = free_port()
        targets = ["--target", f"127.0.0.1:{old.port}", "--failover-target", f"127.0.0.1:{new.port}"]
        proxy = ServerProcess(PEERS_DIR / "blackhole_proxy.py", [*targets, "--port", str(proxy_port)])
        yield SimpleNamespace(old=old_client, new=new_client, proxy=proxy, url=f"redis://127.0.0.1:{proxy_port}/0")
        proxy.stop()


def _cut_replication(servers) -> None:
    """Everything the primary has so far reaches the replica, then nothing more."""
    assert servers.old.execute_command("WAIT", 1, 5000) == 1
    servers.new.replicaof("NO", "ONE")


def _fail_over_once_recorded(servers, worker, tmp_path, job: Job, status: JobStatus) -> Job:
    """Replication cut as the gated worker is about to record ``job``'s outcome; the failover once the
    old primary has it (``status``) and the worker is idle.  The job on the new primary, after the
    worker said it recorded the outcome there again."""
    wait_until(lambda: (tmp_path / "reached").exists(), what="the worker about to record the outcome")
    _cut_replication(servers)
    (tmp_path / "go").touch()
    wait_until(lambda: job.get_status(refresh=True) == status, what=f"{status.value}, on the old primary")
    # The job's greenlet is over (the worker idle): the outcome's transaction had its reply before the
    # failover.  Else the failover may cut that reply, and the job's own greenlet records it on the new
    # primary (also right, but not the recheck these tests are about).
    wait_until(lambda: [worker.get_state() for worker in Worker.all(connection=servers.old)] == ["idle"],
               what="the worker idle again")  # fmt: skip
    new_job = Job.fetch(job.id, connection=servers.new)
    assert new_job.get_status(refresh=True) == JobStatus.STARTED  # the instrument: the new primary lacks it

    os.kill(servers.proxy.pid, signal.SIGWINCH)
    try:
        wait_until(lambda: "recorded again" in worker.output(), timeout=30, what="the outcome recorded again")
    finally:
        print(worker.output())
    new_job.refresh()
    return new_job


@pytest.mark.parametrize("lost", LOST)
def test_a_run_the_new_primary_lacks_ends_recorded_there(primary_and_replica, worker_process, tmp_path, lost):
    servers = primary_and_replica
    (job_id,) = Ledger(servers.old).enqueue(1, seconds=0)
    gated_class, runs_on_new_primary = LOST[lost]
    if gated_class is None:
        _cut_replication(servers)
        worker = worker_process("-u", servers.url, "ledger")
    else:
        worker = worker_process("-u", servers.url, "--worker-class", gated_class, "ledger",
                                env={"TEST_GATE_DIR": str(tmp_path)})  # fmt: skip
        wait_until(lambda: (tmp_path / "reached").exists(), what="the worker at its gate")
        _cut_replication(servers)
        (tmp_path / "go").touch()
    old_job = Job.fetch(job_id, connection=servers.old)
    wait_until(lambda: old_job.get_status(refresh=True) == JobStatus.FINISHED, what="the job finished, old primary")
    assert runs_of(servers.old, job_id) == 1
    new_job = Job.fetch(job_id, connection=servers.new)
    assert new_job.get_status(refresh=True) != JobStatus.FINISHED  # the instrument: the new primary lacks it

    os.kill(servers.proxy.pid, signal.SIGWINCH)
    ledger = Ledger(servers.new)
    ledger.job_ids = [job_id]
    try:
        wait_until(lambda: new_job.get_status(refresh=True) == JobStatus.FINISHED, timeout=30,
                   what="the run recorded on the new primary")  # fmt: skip
        ledger.settle(timeout=10)
    finally:
        print(worker.output())
    worker.shut_down()
    assert worker.wait(30) == 0, worker.output()

    account = ledger.account()
    print(f"ledger on the new primary after losing {lost}: {account}")
    assert account.lines == {"finished": 1} and account.pending == 0, account
    assert servers.new.llen(ledger.queue.key) == 0 and servers.new.llen(ledger.queue.intermediate_queue_key) == 0
    assert len(StartedJobRegistry(queue=ledger.queue)) == 0
    assert runs_of(servers.new, job_id) in runs_on_new_primary
    assert "Traceback" not in worker.output(), worker.output()


def test_a_stopped_job_whose_outcome_the_new_primary_lacks_is_recorded_stopped_there(
    primary_and_replica, worker_process, tmp_path
):
    """The outcome recorded again after a failover is recorded by another greenlet than the job's own:
    rq's ``_stopped_job_id`` there said no job was stopped, so a stopped job was recorded FAILED on the
    new primary and, having a Retry, run again."""
    servers = primary_and_replica
    job = Queue("ledger", connection=servers.old).enqueue(testjobs.green_sleep, 60, retry=Retry(max=1))
    worker = worker_process("-u", servers.url, "--worker-class", "testworkers.GatedOutcomeWorker", "ledger",
                            env={"TEST_GATE_DIR": str(tmp_path)})  # fmt: skip
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.STARTED, what="the job started")
    send_stop_job_command(servers.old, job.id)
    new_job = _fail_over_once_recorded(servers, worker, tmp_path, job, JobStatus.STOPPED)
    assert new_job.get_status() == JobStatus.STOPPED and new_job.retries_left == 1, worker.output()
    assert new_job.id in FailedJobRegistry(queue=Queue("ledger", connection=servers.new))
    worker.shut_down()
    assert worker.wait(30) == 0, worker.output()


@pytest.mark.parametrize("on_primary", [True, False], ids=["on the primary", "anywhere"])
def test_the_outcome_check_writes_nothing_on_a_replica(primary_and_replica, on_primary):
    """A replica has the job as it was before the run (popped, never started): the check would write
    the start back, and a replica refuses that.  Either way it raises a ConnectionError (the worker asks
    again), never "recorded"."""
    servers = primary_and_replica
    queue = Queue("ledger", connection=servers.old)
    job = queue.enqueue(ledger_job, 0)
    servers.old.lmove(queue.key, queue.intermediate_queue_key)
    assert servers.old.execute_command("WAIT", 1, 5000) == 1
    worker = GeventWorker([Queue("ledger", connection=servers.new)], connection=servers.new, name="checker")
    job.started_at = datetime.now(UTC)  # this run's start, which no server has
    running = RunningJob(job=Job.fetch(job.id, connection=servers.new), queue=worker.queues[0],
                         execution=Execution("run-1", job.id, connection=servers.new))  # fmt: skip
    running.job.started_at = job.started_at

    with pytest.raises(redis.exceptions.ConnectionError, match=r"not the primary|refuses writes \(READONLY"):
        worker.job_writes.outcome_recorded(running, on_primary=on_primary)
    assert servers.new.hget(job.key, "status") == b"queued"
    assert servers.new.lrange(queue.intermediate_queue_key, 0, -1) == [job.id.encode()]


def test_a_retry_whose_outcome_the_new_primary_lacks_is_scheduled_there(primary_and_replica, worker_process, tmp_path):
    """A failed job's retry, recorded again on the new primary from what the worker kept of it (the
    job's hash before the step, not the job object): scheduled, one retry used, the run not left started."""
    servers = primary_and_replica
    job = Queue("ledger", connection=servers.old).enqueue(testjobs.fail, "the API answered 503",
                                                          retry=Retry(max=2, interval=600))  # fmt: skip
    worker = worker_process("-u", servers.url, "--worker-class", "testworkers.GatedOutcomeWorker", "ledger",
                            env={"TEST_GATE_DIR": str(tmp_path)})  # fmt: skip
    new_job = _fail_over_once_recorded(servers, worker, tmp_path, job, JobStatus.SCHEDULED)
    new_queue = Queue("ledger", connection=servers.new)
    assert new_job.get_status() == JobStatus.SCHEDULED and new_job.retries_left == 1, worker.output()
    assert new_job.id in new_queue.scheduled_job_registry
    assert new_job.id not in StartedJobRegistry(queue=new_queue)
    worker.shut_down()
    assert worker.wait(30) == 0, worker.output()
