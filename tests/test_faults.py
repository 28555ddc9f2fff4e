"""Faults under load, accounted for with the ledger (scripts/ledger.py): no job may be lost.

Real redis-server, real ``rq-gevent`` processes, real signals.  Each test prints its account.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import time
from types import SimpleNamespace

import gevent
import pytest
import redis
import testjobs
from conftest import registered_as, start_worker_greenlet, wait_until
from ledger import Ledger, ledger_job, runs_of
from peers.processes import PEERS_DIR, ServerProcess, free_port
from rq import Callback, Queue, Retry
from rq.command import send_stop_job_command
from rq.job import JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.worker import SimpleWorker, Worker

from rq_gevent import GeventWorker
from rq_gevent.core.error_text import WITHHELD
from rq_gevent.embedded_redis import EmbeddedRedis

# Executions of killed workers expire in ~2 s and are reaped every second.
FAST_REAPING = ["--worker-class", "testworkers.ShortTTLWorker", "--job-monitoring-interval", "1"]
FAST_REAPING += ["--maintenance-interval", "1"]


def assert_nothing_lost(account) -> None:
    print(f"ledger: {account}")
    assert account.pending == 0, account
    assert account.lost == [], account


def test_the_ledger_reports_a_lost_job_and_a_duplicate(connection):
    """The instrument can fail: a job with no hash, and one queued but in no list, are lost."""
    ledger = Ledger(connection)
    gone, dropped, fine = ledger.enqueue(3)
    connection.delete(f"rq:job:{gone}")
    connection.lrem(ledger.queue.key, 1, dropped)
    connection.sadd(f"ledger:runs:{fine}", "run 1", "run 2")

    account = ledger.account()
    assert [line.split()[0] for line in account.lost] == [gone, dropped]
    assert account.lines == {"lost": 2, "pending: queued": 1}
    assert account.duplicates == 1


def test_kill_9_of_a_worker_process_under_load(connection, redis_url, worker_process):
    ledger = Ledger(connection)
    ledger.enqueue(300, seconds=0.2)
    master = worker_process("-u", redis_url, "-n", "2", "-c", "20", *FAST_REAPING, "ledger")
    wait_until(lambda: len(Worker.all(connection=connection)) == 2, what="2 workers")
    wait_until(lambda: len(StartedJobRegistry(queue=ledger.queue)) >= 30, what="jobs running")
    victim = Worker.all(connection=connection)[0].pid
    os.kill(victim, signal.SIGKILL)

    # Jobs the killed process had popped but not yet started wait in rq's intermediate list until
    # maintenance finds them there a minute later and requeues them.
    ledger.settle(timeout=120)
    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0, master.output()
    account = ledger.account()
    assert_nothing_lost(account)
    assert account.lines.get("finished", 0) >= 250  # only the killed process's jobs (<= 20) are abandoned
    assert set(account.lines) <= {"finished", "failed: abandoned"}, account


def test_client_kill_of_the_workers_connections_repeatedly(worker_process):
    # A Redis of the test's own: the kills, and their count, reach this worker's connections only, not a
    # leftover worker's on the session's server.
    with EmbeddedRedis() as server, redis.Redis.from_url(server.url) as connection:
        ledger = Ledger(connection)
        ledger.enqueue(400, seconds=0.05)
        worker = worker_process("-u", server.url, "-c", "20", *FAST_REAPING, "ledger")
        wait_until(lambda: len(Worker.all(connection=connection)) == 1, what="worker")
        kills = 0
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            gevent.sleep(0.3)
            kills += connection.client_kill_filter(_type="normal", skipme=True)
            kills += connection.client_kill_filter(_type="pubsub", skipme=True)
        # A pop whose answer died with its connection leaves its job in rq's intermediate list: rq's
        # maintenance finds it after a minute, and the worker requeues it (it never ran).
        ledger.settle(timeout=120)
        os.kill(worker.pid, signal.SIGTERM)
        assert worker.wait(15) == 0, worker.output()
        account = ledger.account()
    print(f"{kills} connections killed")
    assert kills >= 20
    assert_nothing_lost(account)
    # Every job ran and recorded its outcome: a job whose bookkeeping met a killed connection was
    # requeued if it had not run, or recorded its outcome on a new connection if it had.
    assert account.lines == {"finished": 400}, account


# rq gives the worker's connections a socket timeout of (dequeue timeout 10 s) + 10 s; the
# blocking pop's own client has the same.
SOCKET_TIMEOUT = 20


@pytest.fixture
def proxy(connection, redis_url):
    """blackhole_proxy.py between a worker and Redis: ``proxy.url`` reaches Redis through it, ``proxy.pid``
    takes its signals."""
    redis_port = connection.connection_pool.connection_kwargs["port"]
    proxy_port = free_port()
    server = ServerProcess(
        PEERS_DIR / "blackhole_proxy.py", ["--target", f"127.0.0.1:{redis_port}", "--port", str(proxy_port)]
    )
    yield SimpleNamespace(pid=server.pid, url=redis_url.replace(f":{redis_port}", f":{proxy_port}"))
    server.stop()


def test_a_silently_dead_path_to_redis_is_noticed_and_the_worker_resumes(connection, proxy, worker_process):
    """The "stuck in BRPOP forever" case: a proxy between worker and Redis stops forwarding, closing nothing."""
    ledger = Ledger(connection)
    ledger.enqueue(300, seconds=0.2)
    # A pop whose answer the proxy swallowed is asked again once the path is back (its receipt; proved
    # without maintenance by test_a_batch_pop_whose_reply_is_lost_is_taken_again).  Maintenance every
    # second stays as the backstop it is in production, at test speed.
    worker = worker_process(
        "-u", proxy.url, "-c", "20", "--maintenance-interval", "1",
        "ledger",
    )  # fmt: skip
    wait_until(lambda: len(StartedJobRegistry(queue=ledger.queue)) >= 10, what="jobs running")
    os.kill(proxy.pid, signal.SIGUSR1)
    blackholed_at = time.monotonic()
    try:
        wait_until(
            lambda: "timeout reading from" in worker.output().lower(),
            timeout=2 * SOCKET_TIMEOUT + 5,
            what="the worker noticing",
        )
    finally:
        print(worker.output())
    noticed_after = time.monotonic() - blackholed_at
    print(f"dead path noticed after {noticed_after:.1f} s")
    assert noticed_after <= 2 * SOCKET_TIMEOUT
    gevent.sleep(5)
    os.kill(proxy.pid, signal.SIGUSR2)  # new connections work again; the old ones stay dead

    ledger.settle(timeout=150)
    # Commands reach the worker again: its listener left the dead connection.
    job = ledger.queue.enqueue(testjobs.green_sleep, 120)
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.STARTED, timeout=30, what="job started")

    def stopped() -> bool:
        send_stop_job_command(connection, job.id)  # pub/sub: lost while nobody listens
        return job.get_status(refresh=True) == JobStatus.STOPPED

    wait_until(stopped, timeout=3 * SOCKET_TIMEOUT, interval=1, what="stop-job obeyed")
    assert "Command listener on" in worker.output()
    worker.shut_down()
    assert worker.wait(30) == 0, worker.output()
    account = ledger.account()
    assert_nothing_lost(account)
    assert account.lines == {"finished": 300}, account


def test_a_pop_whose_reply_is_lost_loses_no_job(connection, proxy, worker_process):
    """An idle worker blocks in its pop; the path then drops Redis's replies only (the command still
    runs), a job arrives and Redis answers into the void.  At default settings the job must run soon
    after the path is back, once, and the listener and every pooled connection must recover without
    a traceback."""
    ledger = Ledger(connection)
    worker = worker_process("-u", proxy.url, "ledger")
    # Jobs holding connections at once leave the worker's pools with many idle connections, all of
    # which the muted path kills: each one waiting out its own socket timeout would add 20 s.
    holders = [ledger.queue.enqueue(testjobs.block_in_redis, "nothing-comes", 1) for _ in range(8)]
    wait_until(lambda: all(job.get_status(refresh=True) == JobStatus.FINISHED for job in holders), what="holders")
    wait_until(lambda: _blocked(connection, worker), what="a client blocked in the pop")
    os.kill(proxy.pid, signal.SIGHUP)  # replies dropped, requests delivered
    (job_id,) = ledger.enqueue(1, seconds=0.1)
    wait_until(lambda: not _blocked(connection, worker), timeout=5, what="Redis answering the pop")
    time.sleep(2)
    os.kill(proxy.pid, signal.SIGUSR2)
    healed_at = time.monotonic()
    wait_until(lambda: runs_of(connection, job_id) >= 1, timeout=45, what="the job running")
    ran_after = time.monotonic() - healed_at
    print(f"job ran {ran_after:.1f} s after the path came back")
    assert ran_after <= 30
    ledger.settle(timeout=30)
    time.sleep(3)
    assert runs_of(connection, job_id) == 1
    assert not connection.lrange(ledger.queue.intermediate_queue_key, 0, -1)
    # A job's own connections were muted too, and wait worker_ttl - 5 s for a reply: none is reused.
    user = ledger.queue.enqueue(testjobs.block_in_redis, "nothing-comes", 1)
    wait_until(lambda: user.get_status(refresh=True) == JobStatus.FINISHED, timeout=15, what="a job using Redis")
    # The command listener's connection was muted too: it must be replaced and hear again.
    job = ledger.queue.enqueue(testjobs.green_sleep, 120)
    wait_until(lambda: job.get_status(refresh=True) == JobStatus.STARTED, timeout=30, what="job started")

    def stopped() -> bool:
        send_stop_job_command(connection, job.id)
        return job.get_status(refresh=True) == JobStatus.STOPPED

    wait_until(stopped, timeout=3 * SOCKET_TIMEOUT, interval=1, what="stop-job obeyed")
    worker.shut_down()
    assert worker.wait(60) == 0, worker.output()
    assert "Traceback" not in worker.output() and "Invalid file object" not in worker.output(), worker.output()
    account = ledger.account()
    assert_nothing_lost(account)
    assert account.lines == {"finished": 1} and account.duplicates == 0, account


def test_a_batch_pop_whose_reply_is_lost_is_taken_again(connection, proxy, worker_process, tmp_path):
    """The pop script runs (its ids move to ``:intermediate``) and its reply is lost: the worker asks
    again with the same token and gets those ids, instead of leaving them to rq's maintenance (the
    next one 600 s away at default settings)."""
    ledger = Ledger(connection)
    worker = worker_process("-u", proxy.url, "--worker-class", "testworkers.GatedPopWorker", "ledger",
                            env={"TEST_GATE_DIR": str(tmp_path)})  # fmt: skip
    try:
        wait_until(lambda: _blocked(connection, worker), what="the worker idle in its pop")
        ledger.enqueue(5, seconds=0.1)  # one wakes the idle pop, the next pop takes the rest
        wait_until(lambda: (tmp_path / "reached").exists(), what="the worker about to pop the rest")
        os.kill(proxy.pid, signal.SIGHUP)  # replies dropped, requests delivered
        (tmp_path / "go").touch()
        wait_until(lambda: connection.llen(ledger.queue.key) == 0, timeout=5, what="Redis running the pop")
        popped = ledger.account().lines.get("pending: popped", 0)
        assert popped >= 4, ledger.account()  # the instrument: ids in :intermediate the worker never heard of
        time.sleep(1)
        os.kill(proxy.pid, signal.SIGUSR2)
        healed_at = time.monotonic()
        ledger.settle(timeout=2 * SOCKET_TIMEOUT + 10)
        print(
            f"{popped} jobs whose pop reply was lost ran {time.monotonic() - healed_at:.1f} s after the path came back"
        )
    finally:
        print(worker.output())
    worker.shut_down()
    assert worker.wait(60) == 0, worker.output()
    account = ledger.account()
    assert_nothing_lost(account)
    assert account.lines == {"finished": 5} and account.duplicates == 0, account
    assert "requeued" not in worker.output()  # the worker ran them, not maintenance's requeue


def _blocked(connection, worker) -> bool:
    """The worker's own pop client (not a leftover's on the session's server) is blocked on Redis now."""
    registered = registered_as(connection, worker.pid)
    pop_client = registered and f"{registered.name}:dequeue"
    clients = connection.client_list()
    return any(client.get("name") == pop_client and "b" in client.get("flags", "") for client in clients)


def pop_and_abandon(connection, queue, job) -> None:
    """What a worker that lost its pop's answer (or died right after it) leaves behind: the id in
    rq's intermediate list, seen there by maintenance two minutes ago."""
    connection.lmove(queue.key, queue.intermediate_queue_key)
    connection.set(queue.intermediate_queue.get_first_seen_key(job.id), time.time() - 120)


def test_a_job_popped_but_never_started_is_requeued_not_failed(connection):
    """rq's maintenance would fail it as stuck; the worker puts it back instead (it never ran)."""
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 0, "ran once")
    pop_and_abandon(connection, queue, job)

    GeventWorker([queue], connection=connection).work(burst=True)  # maintenance runs first

    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert job.return_value() == "ran once"
    assert job.id not in FailedJobRegistry(queue=queue)
    assert connection.llen(queue.intermediate_queue_key) == 0


def test_a_job_that_never_starts_again_and_again_ends_failed(connection):
    """A poison job (say, one that kills its worker every time) is requeued 3 times, then failed."""
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 0, "never", meta={"rq_gevent_requeues": 3})
    pop_and_abandon(connection, queue, job)

    GeventWorker([queue], connection=connection).work(burst=True)

    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert "stuck in intermediate queue" in job.exc_info
    assert connection.llen(queue.intermediate_queue_key) == 0


def test_a_stale_id_in_the_intermediate_list_does_not_fail_a_finished_job(connection):
    """rq's maintenance would overwrite the finished job with "stuck in intermediate queue"."""
    queue = Queue(connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 0, "done")
    GeventWorker([queue], connection=connection).work(burst=True)
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    connection.rpush(queue.intermediate_queue_key, job.id)
    connection.set(queue.intermediate_queue.get_first_seen_key(job.id), time.time() - 120)

    GeventWorker([queue], connection=connection).work(burst=True)  # maintenance runs first

    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert job.return_value() == "done"
    assert connection.llen(queue.intermediate_queue_key) == 0


def test_a_queued_job_with_a_stale_id_in_the_intermediate_list_runs_once(connection):
    queue = Queue(connection=connection)
    job = queue.enqueue(ledger_job, 0)  # on the queue, and its id also left in :intermediate
    connection.rpush(queue.intermediate_queue_key, job.id)
    connection.set(queue.intermediate_queue.get_first_seen_key(job.id), time.time() - 120)

    GeventWorker([queue], connection=connection).work(burst=True)  # maintenance requeues it first

    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert runs_of(connection, job.id) == 1
    assert connection.llen(queue.intermediate_queue_key) == 0 and connection.llen(queue.key) == 0


@pytest.mark.parametrize(
    ("worker_class", "requeued", "queues"),
    [
        ("testworkers.GatedPrepareWorker", True, ["gated"]),
        ("testworkers.GatedPrepareWorker", True, ["gated", "other"]),
        ("testworkers.GatedPerformWorker", False, ["gated"]),
    ],
    ids=["marking it started", "marking it started, popped from 2 queues", "just before its function"],
)
def test_a_job_whose_bookkeeping_fails_before_it_runs_is_requeued_when_redis_is_back(
    worker_process, tmp_path, worker_class, requeued, queues
):
    """Redis down while rq marks the job started: the job never ran and is requeued.  Down just after
    (GeventWorker.prepare_job_execution sends ``Job.perform``'s PERSIST with the start, so no Redis call is left
    between the start and the function): the job runs once and its outcome waits for Redis.  Popped from
    several queues, its id was in no list meanwhile (rq's intermediate list is for one queue's pops)."""
    with EmbeddedRedis(appendonly=True) as private_redis:
        connection = redis.Redis.from_url(private_redis.url)
        queue = Queue("gated", connection=connection)
        job = queue.enqueue(ledger_job, 0, on_failure=Callback(testjobs.record_failure))
        worker = worker_process(
            "-u", private_redis.url, "--worker-class", worker_class, *queues,
            env={"TEST_GATE_DIR": str(tmp_path)},
        )  # fmt: skip
        wait_until(lambda: (tmp_path / "reached").exists(), what="the job about to be marked started")
        private_redis.stop()
        (tmp_path / "go").touch()
        if requeued:
            wait_until(lambda: f"will requeue job {job.id} once it answers" in worker.output(), timeout=20,
                       what="retrying")  # fmt: skip
        else:
            gevent.sleep(0.3)  # the job's function runs meanwhile; its own SADD retries until Redis answers
        private_redis.start()
        wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, timeout=60, what="job finished")
        os.kill(worker.pid, signal.SIGTERM)
        assert worker.wait(15) == 0, worker.output()

        assert runs_of(connection, job.id) == 1  # it ran once, after the outage
        assert connection.lrange("test:callbacks", 0, -1) == []  # no failure callback: it never failed
        assert job.id not in FailedJobRegistry(queue=queue)
        assert connection.llen(queue.intermediate_queue_key) == 0
        assert (f"job {job.id} never started (Redis failed), requeued" in worker.output()) == requeued


@pytest.mark.parametrize("meanwhile", ["run elsewhere", "deleted"])
def test_a_job_taken_over_while_its_worker_was_cut_off_is_not_requeued(connection, redis_url, worker_process,
                                                                       tmp_path, meanwhile):  # fmt: skip
    """A worker cut off from Redis while marking a job started (it never ran) requeues it once Redis
    answers, unless another worker recovered and ran it meanwhile: the fleet test saw host 0, back
    after a cut, put 7 jobs host 1 had finished back as QUEUED.  A deleted job's hash would have been
    written again.  The proxy's process stops: this worker's path to Redis is gone, not Redis."""
    redis_port = connection.connection_pool.connection_kwargs["port"]
    proxy_port = free_port()
    proxy_args = ["--target", f"127.0.0.1:{redis_port}", "--port", str(proxy_port)]
    proxy = ServerProcess(PEERS_DIR / "blackhole_proxy.py", proxy_args)
    queue = Queue("gated", connection=connection)
    job = queue.enqueue(ledger_job, 0)
    worker = worker_process(
        "-u", redis_url.replace(f":{redis_port}", f":{proxy_port}"), "--worker-class", "testworkers.GatedPrepareWorker",
        "gated", env={"TEST_GATE_DIR": str(tmp_path)},
    )  # fmt: skip
    wait_until(lambda: (tmp_path / "reached").exists(), what="the job about to be marked started")
    proxy.stop()
    (tmp_path / "go").touch()
    wait_until(lambda: f"will requeue job {job.id} once it answers" in worker.output(), timeout=20, what="retrying")

    if meanwhile == "deleted":  # rq's job.delete(), or its hash expired
        job.delete()
    else:  # another worker's maintenance finds it stuck in the intermediate list, and it runs there
        connection.set(queue.intermediate_queue.get_first_seen_key(job.id), time.time() - 120)
        GeventWorker([queue], connection=connection).work(burst=True)
        assert job.get_status(refresh=True) == JobStatus.FINISHED and runs_of(connection, job.id) == 1

    proxy = ServerProcess(PEERS_DIR / "blackhole_proxy.py", proxy_args)
    try:
        wait_until(lambda: "not requeued" in worker.output(), timeout=30, what="the worker back")
    finally:
        proxy.stop()
    why = "its hash is gone" if meanwhile == "deleted" else "taken over meanwhile (now finished"
    assert f"job {job.id} never started (Redis failed), not requeued: {why}" in worker.output(), worker.output()
    assert connection.llen(queue.key) == 0 and connection.llen(queue.intermediate_queue_key) == 0
    if meanwhile == "deleted":
        assert not connection.exists(job.key)
    else:
        assert job.get_status(refresh=True) == JobStatus.FINISHED and runs_of(connection, job.id) == 1


OUTCOMES = {
    # name: (job function and arguments, retry policy, final status, where it counts its runs, runs)
    "success": ((testjobs.fail_then_succeed, "test:runs", 0), None, JobStatus.FINISHED, "test:runs", 1),
    "failure": ((testjobs.fail_then_succeed, "test:runs", 9), None, JobStatus.FAILED, "test:runs", 1),
    "failure retried by policy": (
        (testjobs.fail_then_succeed, "test:runs", 1), Retry(max=1), JobStatus.FINISHED, "test:runs", 2,
    ),
    "returned Retry": ((testjobs.return_retry_until, 2), None, JobStatus.FINISHED, "test:attempts:{id}", 2),
}  # fmt: skip


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_an_outcome_redis_refuses_is_recorded_once_redis_is_back(worker_process, tmp_path, outcome):
    call, retry, final_status, run_counter, runs = OUTCOMES[outcome]
    with EmbeddedRedis(appendonly=True) as private_redis:
        connection = redis.Redis.from_url(private_redis.url)
        queue = Queue("gated", connection=connection)
        job = queue.enqueue(*call, retry=retry, on_failure=Callback(testjobs.record_failure))
        worker = worker_process(
            "-u", private_redis.url, "--worker-class", "testworkers.GatedOutcomeWorker", "gated",
            env={"TEST_GATE_DIR": str(tmp_path)},
        )  # fmt: skip
        wait_until(lambda: (tmp_path / "reached").exists(), what="the job's outcome about to be recorded")
        private_redis.stop()
        (tmp_path / "go").touch()
        gevent.sleep(2)  # Redis down for 2 s while rq records the outcome
        private_redis.start()
        wait_until(lambda: job.get_status(refresh=True) == final_status, timeout=60, what=final_status)
        wait_until(lambda: not StartedJobRegistry(queue=queue).get_job_ids(cleanup=False), what="nothing started")
        os.kill(worker.pid, signal.SIGTERM)
        assert worker.wait(15) == 0, worker.output()

        assert f"will record the outcome of job {job.id} once it answers" in worker.output()
        assert f"outcome of job {job.id} recorded now that Redis answers" in worker.output()
        # Each run recorded once: no run lost, no second requeue of a retry.
        assert connection.get(run_counter.format(id=job.id)) == str(runs).encode()
        assert connection.llen(queue.key) == 0
        if final_status == JobStatus.FAILED:
            assert job.exc_info.strip().endswith("RuntimeError: attempt 1 fails")
            assert job.id in FailedJobRegistry(queue=queue).get_job_ids(cleanup=False)
            assert len(connection.lrange("test:callbacks", 0, -1)) == 1
        else:
            assert job.id not in FailedJobRegistry(queue=queue).get_job_ids(cleanup=False)


@pytest.mark.parametrize("shutdown", ["warm", "cold"])
def test_sigterm_with_jobs_in_flight_leaves_nothing_started(connection, redis_url, worker_process, shutdown):
    ledger = Ledger(connection)
    ledger.enqueue(120, seconds=1.5)
    worker = worker_process("-u", redis_url, "-c", "40", "ledger")
    wait_until(lambda: len(StartedJobRegistry(queue=ledger.queue)) == 40, what="40 jobs running")
    worker.shut_down(cold=shutdown == "cold")
    assert worker.wait(30) == 0, worker.output()

    # Nothing is left STARTED for rq's reaper: warm finished its 40, cold put them back.
    assert StartedJobRegistry(queue=ledger.queue).get_job_ids(cleanup=False) == []
    after_shutdown = ledger.account()
    print(f"after the {shutdown} shutdown: {after_shutdown}")
    assert after_shutdown.lost == []
    expected = {"finished": 40, "pending: queued": 80} if shutdown == "warm" else {"pending: queued": 120}
    assert after_shutdown.lines == expected, after_shutdown

    successor = worker_process("-u", redis_url, "-c", "40", "--burst", "ledger")
    assert successor.wait(60) == 0, successor.output()
    account = ledger.account()
    assert_nothing_lost(account)
    assert account.lines == {"finished": 120}
    # Cold: the 40 interrupted jobs ran again from the start (at least once, reported as duplicates).
    assert account.duplicates == (40 if shutdown == "cold" else 0)


@pytest.mark.parametrize("blocker", [testjobs.spin, testjobs.block_in_c], ids=["cpu spin", "blocking C call"])
def test_a_job_that_blocks_its_process_is_abandoned_while_the_fleet_serves(
    connection, redis_url, worker_process, blocker
):
    ledger = Ledger(connection)
    ledger.enqueue(100, seconds=0.1)
    stuck = ledger.queue.enqueue(blocker, 3600)
    ledger.enqueue(200, seconds=0.1)
    master = worker_process("-u", redis_url, "-n", "2", "-c", "10", "--hub-timeout", "3", *FAST_REAPING, "ledger")
    # Jobs the stuck process had popped wait in rq's intermediate list until maintenance requeues them.
    ledger.settle(timeout=150)
    wait_until(lambda: stuck.get_status(refresh=True) == JobStatus.FAILED, timeout=30, what="stuck job ended")
    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0, master.output()

    assert "watchdog: its event loop has not run" in master.output()
    assert "AbandonedJobError" in (stuck.latest_result().exc_string or "")
    account = ledger.account()
    assert_nothing_lost(account)
    # Only the jobs sharing the stuck process (at most 9 besides it) die with it.
    assert set(account.lines) <= {"finished", "failed: abandoned"}, account
    assert account.lines["finished"] >= 300 - 9, account


def test_a_leaking_job_is_contained_by_recycling_its_process(connection, redis_url, worker_process):
    ledger = Ledger(connection)
    leaks = []
    for _ in range(4):
        ledger.enqueue(50, seconds=0.05)
        leaks += [ledger.queue.enqueue(testjobs.hog_memory, 40, 0.2) for _ in range(2)]
    master = worker_process("-u", redis_url, "-n", "2", "-c", "5", "--max-memory-per-child", "150", "ledger")
    ledger.settle(timeout=120)
    wait_until(
        lambda: all(job.get_status(refresh=True) == JobStatus.FINISHED for job in leaks), timeout=60, what="leaks"
    )
    os.kill(master.pid, signal.SIGTERM)
    assert master.wait(15) == 0, master.output()

    assert "recycled: memory" in master.output()
    account = ledger.account()
    assert_nothing_lost(account)
    assert account.lines == {"finished": 200}, account  # a recycle is a warm shutdown: nothing cut short


def test_bad_input_ends_each_job_with_a_clear_reason_and_the_worker_keeps_running(connection):
    queue = Queue("bad", connection=connection)
    garbage_data = queue.enqueue(testjobs.green_sleep, 0, "x")
    connection.hset(garbage_data.key, "data", b"\x00not a pickle")
    garbage_date = queue.enqueue(testjobs.green_sleep, 0, "x")
    connection.hset(garbage_date.key, "created_at", "not a date")
    missing_function = queue.enqueue("testjobs.no_such_function")
    missing_module = queue.enqueue("no_such_module.function")
    missing_dependency = queue.enqueue("testjobs_missing_dependency.function")
    unpicklable = queue.enqueue(testjobs.unpicklable_result)
    ten_megabytes = queue.enqueue(testjobs.green_sleep, 0, "y" * 10_000_000)
    deleted = queue.enqueue(testjobs.green_sleep, 0, "deleted")
    connection.delete(deleted.key)
    far_retry = queue.enqueue(testjobs.fail, "boom", retry=Retry(max=1, interval=10**9))
    last = queue.enqueue(testjobs.green_sleep, 0, "still serving")

    started = time.monotonic()
    GeventWorker([queue], connection=connection, maintenance_interval=1).work(burst=True)
    assert time.monotonic() - started < 30

    def reason(job):
        job.refresh()
        assert job.get_status() == JobStatus.FAILED, job.id
        return (job.exc_info or "").strip().splitlines()[-1]

    assert reason(garbage_data).startswith("rq.exceptions.DeserializationError")
    # A function that cannot be imported is taken for sensitive (its mark cannot be read), and its
    # import error is still shown: it comes from the name and the code base, not the arguments.
    assert "FunctionNotImportable" in reason(missing_function)
    assert "module 'testjobs' has no attribute 'no_such_function'" in reason(missing_function)
    assert "no module named 'no_such_module' (looked for in " in reason(missing_module)
    assert not reason(missing_module).endswith(WITHHELD)
    assert reason(missing_dependency).endswith(
        "module 'testjobs_missing_dependency' cannot be imported: "
        "ModuleNotFoundError: No module named 'rq_gevent_tests_not_installed'"
    ), reason(missing_dependency)
    # A function returning a generator: rq 2 fails the job (the result cannot be pickled); rq 3 runs a
    # generator as a coroutine on Python < 3.12 (and fails it), and on 3.12+ keeps a placeholder
    # result (finished).  Whatever rq's own worker does here, this worker must do too.
    as_rq_does = Queue("bad-simple", connection=connection).enqueue(testjobs.unpicklable_result)
    SimpleWorker([as_rq_does.origin], connection=connection).work(burst=True)
    assert unpicklable.get_status(refresh=True) == as_rq_does.get_status(refresh=True)
    if as_rq_does.get_status() == JobStatus.FAILED:
        assert reason(unpicklable) == reason(as_rq_does)
    assert last.get_status(refresh=True) == JobStatus.FINISHED
    assert ten_megabytes.get_status(refresh=True) == JobStatus.FINISHED
    assert far_retry.get_status(refresh=True) == JobStatus.SCHEDULED  # retrying, in 31 years
    assert far_retry.id in ScheduledJobRegistry(queue=queue)
    # A hash rq cannot load at all: failed by the worker, with the reason in the hash.
    assert garbage_date.id in FailedJobRegistry(queue=queue).get_job_ids(cleanup=False)
    fields = connection.hgetall(garbage_date.key)
    assert fields[b"status"] == b"failed"
    assert b"cannot be loaded: ValueError" in fields[b"exc_info"]
    assert connection.llen(queue.intermediate_queue_key) == 0 and connection.llen(queue.key) == 0


def test_a_job_rq_cannot_load_does_not_stop_maintenance_or_the_worker(connection, caplog):
    queue = Queue("bad", connection=connection)
    broken = queue.enqueue(testjobs.green_sleep, 0, "x")
    connection.hset(broken.key, "created_at", "not a date")
    connection.lmove(queue.key, queue.intermediate_queue_key)  # popped by a worker that then died
    served = queue.enqueue(testjobs.green_sleep, 0, "served")

    GeventWorker([queue], connection=connection).work(burst=True)  # maintenance runs first

    assert served.get_status(refresh=True) == JobStatus.FINISHED
    assert any("maintenance of queue bad failed; retrying in" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("pop", ["batched", "one at a time"])
def test_an_id_whose_key_is_not_a_job_hash_is_dropped_and_the_worker_keeps_running(connection, caplog, pop):
    queue = Queue("bad", connection=connection)
    before = queue.enqueue(testjobs.green_sleep, 0, "before")
    connection.set("rq:job:not-a-hash", "someone else's value")
    connection.rpush(queue.key, "not-a-hash")
    after = queue.enqueue(testjobs.green_sleep, 0, "after")
    # Several queues are popped one id at a time (BLPOP); one queue in batches (the Lua pop).
    queues = [queue] if pop == "batched" else [queue, Queue("other", connection=connection)]

    GeventWorker(queues, connection=connection).work(burst=True)

    assert before.return_value() == "before" and after.return_value() == "after"
    assert connection.get("rq:job:not-a-hash") == b"someone else's value"  # not ours to change
    assert connection.llen(queue.key) == 0 and connection.llen(queue.intermediate_queue_key) == 0
    assert "not-a-hash" not in FailedJobRegistry(queue=queue).get_job_ids(cleanup=False)  # rq could not list it
    messages = [record.getMessage() for record in caplog.records]
    assert any("not-a-hash" in m and "not a job hash" in m and "dropped" in m for m in messages), messages
    assert not any("unhandled exception" in m for m in messages)


def test_an_id_that_is_not_a_job_left_in_the_intermediate_list_does_not_stop_maintenance(connection, caplog):
    queue = Queue("bad", connection=connection)
    connection.set("rq:job:not-a-hash", "someone else's value")
    connection.rpush(queue.intermediate_queue_key, "not-a-hash")  # popped by a worker that then crashed on it
    served = queue.enqueue(testjobs.green_sleep, 0, "served")

    GeventWorker([queue], connection=connection).work(burst=True)  # maintenance runs first

    assert served.return_value() == "served"
    assert connection.lrange(queue.intermediate_queue_key, 0, -1) == []
    assert connection.get("rq:job:not-a-hash") == b"someone else's value"
    messages = [record.getMessage() for record in caplog.records]
    assert any("not-a-hash" in m and "not a job hash" in m for m in messages), messages
    assert not any("failed; retrying in" in m for m in messages), messages  # by maintenance


@pytest.mark.parametrize("workers_start", ["before", "while full"])
def test_redis_out_of_memory_refuses_writes_then_processing_resumes(worker_process, workers_start):
    with EmbeddedRedis() as private_redis:  # its configuration changes stay its own
        connection = redis.Redis.from_url(private_redis.url)
        ledger = Ledger(connection)
        ledger.enqueue(300, seconds=0.2)
        start_workers = functools.partial(worker_process, "-u", private_redis.url, "-n", "2", "-c", "20", "ledger")
        if workers_start == "before":
            master = start_workers()
            wait_until(lambda: len(StartedJobRegistry(queue=ledger.queue)) >= 30, what="jobs running")
        connection.config_set("maxmemory-policy", "noeviction")
        connection.config_set("maxmemory", 1)  # far below what is used: every write that needs memory fails
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            connection.set("probe", "x")
        if workers_start == "while full":
            master = start_workers()
        gevent.sleep(8)
        finished_while_full = ledger.account().lines.get("finished", 0)
        connection.config_set("maxmemory", 0)
        ledger.settle(timeout=120)
        os.kill(master.pid, signal.SIGTERM)
        assert master.wait(30) == 0, master.output()

        output = master.output()
        assert "Redis is out of memory and refuses writes (maxmemory reached, noeviction)" in output
        assert "unhandled exception" not in output and "Traceback" not in output
        account = ledger.account()
        assert_nothing_lost(account)
        assert account.lines == {"finished": 300}, account
        assert finished_while_full < 300  # the workers were held up for a while


def test_a_pop_redis_refuses_for_want_of_memory_is_redis_unavailable():
    # Redis 6.2 words a write refused inside a script as a plain error ("Error running script ...: -OOM"):
    # the loop waits out REDIS_UNAVAILABLE, any other error from a pop would stop it.
    with EmbeddedRedis() as private_redis:
        connection = redis.Redis.from_url(private_redis.url)
        queue = Queue(connection=connection)
        job = queue.enqueue(testjobs.green_sleep, 0, "waits")
        worker = GeventWorker([queue], connection=connection)
        connection.config_set("maxmemory-policy", "noeviction")
        connection.config_set("maxmemory", 1)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            worker.dequeuer.pop_batch(5)
        connection.config_set("maxmemory", 0)
        assert queue.get_job_ids() == [job.id]  # nothing taken
        assert [popped.id for popped, _queue in worker.dequeuer.pop_batch(5)] == [job.id]


# Whether a job's outcome write meets a 1 s restart is a matter of timing (one CI run on rq 3.0 saw all
# 300 jobs finish once without any); every job in flight when Redis goes away for 30 s ends during it.
@pytest.mark.parametrize(
    ("down_for", "outcomes_wait_for_redis"), [(1, False), (30, True)], ids=["restart", "unreachable-30s"]
)
def test_redis_restarted_or_unreachable_mid_run(worker_process, down_for, outcomes_wait_for_redis):
    with EmbeddedRedis(appendonly=True) as private_redis:
        connection = redis.Redis.from_url(private_redis.url)
        ledger = Ledger(connection)
        ledger.enqueue(300, seconds=0.2)
        # Maintenance every second: a pop whose answer the restart cut off is requeued a minute later.
        master = worker_process("-u", private_redis.url, "-n", "2", "-c", "20", "--maintenance-interval", "1", "ledger")
        wait_until(lambda: len(StartedJobRegistry(queue=ledger.queue)) >= 30, what="jobs running")
        private_redis.restart(down_for=down_for)  # AOF: the queue, registries and jobs survive
        ledger.settle(timeout=150)
        os.kill(master.pid, signal.SIGTERM)
        assert master.wait(30) == 0, master.output()
        account = ledger.account()
        assert_nothing_lost(account)
        # The jobs in flight ended while Redis was away; their outcome was recorded once it was back.
        assert account.lines == {"finished": 300}, account
        if outcomes_wait_for_redis:
            # Jobs that ended while Redis was away waited for it to record their outcome.
            assert "will record the outcome of job ledger-" in master.output()


def test_a_queue_key_of_the_wrong_type_is_skipped_and_the_other_queues_are_worked(connection, redis_url,
                                                                                  worker_process):  # fmt: skip
    connection.set("rq:queue:wt", "x")
    good = Queue("good", connection=connection)
    worker = worker_process("-u", redis_url, "wt", "good")
    jobs = [good.enqueue(testjobs.green_sleep, 0.1, i) for i in range(10)]
    wait_until(lambda: all(job.get_status(refresh=True) == JobStatus.FINISHED for job in jobs), timeout=30,
               what=f"the other queue's jobs done; worker output:\n{worker.output()}")  # fmt: skip
    later = good.enqueue(testjobs.green_sleep, 0, "later")  # it keeps working
    wait_until(lambda: later.get_status(refresh=True) == JobStatus.FINISHED, what="a later job done")
    assert worker.process.poll() is None, worker.output()
    output = worker.output()
    # Once per skip period (60 s), with the key and its type.
    assert output.count("rq:queue:wt is a string, not a list; skipping it for 60 s") == 1, output
    assert "unhandled exception" not in output and "Traceback" not in output, output
    assert connection.get("rq:queue:wt") == b"x"  # not ours to change
    worker.shut_down()
    assert worker.wait(15) == 0, worker.output()


class QuickLookWorker(GeventWorker):
    bad_queue_skip_seconds = 0.5  # a bad queue is looked at again every half second


@pytest.mark.parametrize(
    "bad_key, make_bad, key_type",
    [
        (":intermediate", lambda c, key: c.hset(key, "field", "value"), "hash"),
        ("", lambda c, key: c.zadd(key, {"member": 1}), "zset"),
    ],
)
def test_a_worker_whose_only_queue_is_bad_keeps_waiting_then_works_it_once_fixed(connection, caplog, bad_key,
                                                                                 make_bad, key_type):  # fmt: skip
    queue = Queue("only", connection=connection)
    # A pop into a bad intermediate list fails only once there is a job to move.
    waiting = queue.enqueue(testjobs.green_sleep, 0, "waiting") if bad_key else None
    make_bad(connection, queue.key + bad_key)
    worker = QuickLookWorker([queue], connection=connection)
    greenlet = start_worker_greenlet(worker)
    try:
        wrong = f"{queue.key}{bad_key} is a {key_type}, not a list"
        wait_until(lambda: sum(wrong in record.getMessage() for record in caplog.records) >= 2,
                   what="the bad key found, then found again after the skip")  # fmt: skip
        assert not greenlet.dead  # bad input is no crash: it waits
        connection.delete(queue.key + bad_key)
        job = waiting or queue.enqueue(testjobs.green_sleep, 0, "fixed")
        wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, what="the fixed queue worked")
    finally:
        worker.request_stop()
        greenlet.join(timeout=15)
    assert greenlet.dead and greenlet.exception is None, greenlet.exception
    assert not any("unhandled exception" in record.getMessage() for record in caplog.records)


class QuickCleaningWorker(GeventWorker):
    dequeue_block_seconds = 1  # an idle loop comes round (and to maintenance) every second


@pytest.mark.parametrize(
    "bad_key, key_type",
    [
        (lambda queue: queue.started_job_registry.key, "zset"),
        (lambda queue: queue.intermediate_queue_key, "list"),
    ],
)
def test_maintenance_skips_a_queue_with_a_key_of_the_wrong_type_and_cleans_the_others(connection, caplog, bad_key,
                                                                                      key_type):  # fmt: skip
    """rq's clean-up stops at the first queue it cannot clean: the queues after it were never cleaned
    (their abandoned jobs stayed started for ever), and a traceback was logged every interval."""
    caplog.set_level(logging.INFO)
    bad, good = Queue("bad", connection=connection), Queue("good", connection=connection)
    connection.set(bad_key(bad), "x")
    # An abandoned job of the good queue: started by a worker that is gone, its execution expired.
    abandoned = good.enqueue(testjobs.green_sleep, 0, "abandoned")
    connection.lrem(good.key, 0, abandoned.id)
    abandoned.set_status(JobStatus.STARTED)
    connection.zadd(good.started_job_registry.key, {f"{abandoned.id}:gone": time.time() - 10})
    worker = QuickCleaningWorker([bad, good], connection=connection, maintenance_interval=1)
    greenlet = start_worker_greenlet(worker)

    def cleanings() -> int:
        return sum("cleaning registries for queue: good" in record.getMessage().lower() for record in caplog.records)

    try:
        wait_until(lambda: abandoned.get_status(refresh=True) == JobStatus.FAILED, timeout=20,
                   what="the good queue's abandoned job failed")  # fmt: skip
        wait_until(lambda: cleanings() >= 3, timeout=20, what="maintenance run 3 times")
        later = good.enqueue(testjobs.green_sleep, 0, "later")  # the worker keeps working
        wait_until(lambda: later.get_status(refresh=True) == JobStatus.FINISHED, what="a later job done")
    finally:
        worker.request_stop()
        greenlet.join(timeout=15)
    assert greenlet.dead and greenlet.exception is None, greenlet.exception
    assert abandoned.id in FailedJobRegistry(queue=good)
    assert not connection.exists(bad.registry_cleaning_key)  # its maintenance lock released
    assert connection.get(bad_key(bad)) == b"x"  # not ours to change
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    wrong = f"cannot clean up queue bad: {bad_key(bad)} is a string, not a {key_type}; skipping it for 60 s"
    # One line (once per skip period, 60 s) naming the key and its type; no traceback.
    assert [wrong in record.getMessage() for record in errors] == [True], [r.getMessage() for r in errors]
    assert all(record.exc_info is None for record in errors)


def test_a_burst_worker_counts_a_bad_queue_as_empty(connection, caplog):
    connection.set("rq:queue:wt", "x")
    good = Queue("good", connection=connection)
    jobs = [good.enqueue(testjobs.green_sleep, 0, i) for i in range(3)]

    GeventWorker([Queue("wt", connection=connection), good], connection=connection).work(burst=True)

    assert [job.return_value() for job in jobs] == [0, 1, 2]
    messages = [record.getMessage() for record in caplog.records]
    assert any("rq:queue:wt is a string, not a list" in m for m in messages), messages


def test_a_redis_busy_with_a_long_script_is_waited_out_not_taken_for_a_job_failure(caplog):
    """Another client's script running past ``busy-reply-threshold`` makes Redis answer every command
    BUSY (without running it) until the script ends or is killed: a job that ends meanwhile is
    recorded once Redis answers, not failed with BUSY as its error."""
    with EmbeddedRedis() as server:
        connection = redis.Redis.from_url(server.url)
        queue = Queue("busy", connection=connection)
        job = queue.enqueue(testjobs.green_sleep, 0.5, "done")
        worker = GeventWorker([queue], connection=redis.Redis.from_url(server.url))
        caplog.set_level("WARNING", logger="rq.worker")
        greenlet = start_worker_greenlet(worker, burst=True)
        wait_until(lambda: job.get_status(refresh=True) == JobStatus.STARTED, what="the job started")
        connection.config_set("busy-reply-threshold", 100)
        script = gevent.spawn(redis.Redis.from_url(server.url).eval, "while true do end", 0)
        gevent.sleep(1.5)  # the job ended meanwhile, its outcome answered BUSY
        redis.Redis.from_url(server.url).script_kill()
        greenlet.join(15)
        assert job.get_status(refresh=True) == JobStatus.FINISHED and job.return_value() == "done"
        assert "busy running a script" in caplog.text  # the instrument: the worker did meet BUSY
        assert isinstance(script.exception, redis.exceptions.ResponseError)  # killed
