"""Fewer round trips per job (start pipeline, batched pop, worker writes once a second), and Redis left
exactly as rq's own SimpleWorker leaves it, on every rq version CI runs."""

import base64
import logging
import pickle
import re
import time
import zlib
from collections.abc import Iterator
from datetime import UTC

import gevent
import pytest
import redis
import testjobs
from conftest import start_worker_greenlet, wait_until
from rq import Queue, Retry
from rq.job import Job
from rq.utils import utcparse
from rq.worker import SimpleWorker, Worker

from rq_gevent import GeventWorker, compat
from rq_gevent.core import retries
from rq_gevent.core.worker_counters import WORKER_WRITES_SECONDS, WorkerCounters
from rq_gevent.embedded_redis import EmbeddedRedis
from rq_gevent.plumbing import job_writes, lua

EXECUTION_ID = re.compile(rb"[0-9a-f]{32}")
TIMESTAMPS = {b"created_at", b"enqueued_at", b"started_at", b"ended_at", b"last_heartbeat",
              b"execution_started_at", b"execution_ended_at"}  # fmt: skip
POP_TOKEN = re.compile(rb"^[0-9a-f]{12}:\d+$")  # in the worker's record of its pops (rq_gevent.plumbing.dequeue)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis of each test's own, not the session's: these tests observe Redis server-wide (every key, the
    script cache, the reads it processed, suspension), which a leftover worker of an earlier test changes."""
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def connection(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def enqueue_every_outcome(connection) -> Queue:
    queue = Queue("fast", connection=connection)
    queue.enqueue(testjobs.green_sleep, 0, "value", job_id="ok")
    queue.enqueue(testjobs.green_sleep, 0, "dropped", job_id="zero-ttl", result_ttl=0)
    queue.enqueue(testjobs.green_sleep, 0, "forever", job_id="no-expiry", result_ttl=-1)
    queue.enqueue(testjobs.fail, "boom", job_id="failed")
    queue.enqueue(testjobs.fail, "again", job_id="retried", retry=Retry(max=1))
    queue.enqueue(testjobs.return_retry_until, 2, job_id="returns-retry")
    parent = queue.enqueue(testjobs.green_sleep, 0, "parent", job_id="parent")
    queue.enqueue(testjobs.green_sleep, 0, "child", job_id="child", depends_on=parent)
    for n in range(30):
        queue.enqueue(testjobs.green_sleep, 0, n, job_id=f"batch-{n}")
    return queue


RQ_TIME = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?$")
# Worker-hash fields that sum durations: compared as numbers, within the clock's tolerance.
DURATIONS = {b"total_working_time", b"current_job_working_time"}
# Results' times, as seconds since the epoch.
EPOCH_TIMES = {b"execution_started_at", b"execution_ended_at"}


def precise_state(connection) -> dict:
    """Every key (execution ids masked) with its type, its TTL and all its contents: hash fields with
    their values, list members in order, set members, sorted-set members with their scores, stream
    entries' fields and values.  Times (rq's timestamps, scores, the worker's summed durations) are
    seconds before this snapshot, to compare within a tolerance; a job's ``meta`` is compared without
    the attempt number rq-gevent adds (docs/limits.md), a failure's traceback by what was raised."""
    clock = time.time()

    def value(field: bytes, raw: bytes) -> object:
        if RQ_TIME.match(raw):
            return ("time", clock - utcparse(raw.decode()).replace(tzinfo=UTC).timestamp())
        if field in DURATIONS:
            return ("time", float(raw))
        if field in EPOCH_TIMES:
            return ("time", clock - float(raw))
        if field == b"exc_string":  # a traceback: the worker's own frames differ, not what was raised
            return zlib.decompress(base64.b64decode(raw)).decode().rstrip().splitlines()[-1]
        if field == b"ip_address":  # the address of its connection: the port is the client's
            return raw.rpartition(b":")[0]
        return EXECUTION_ID.sub(b"<execution>", raw)

    def hash_contents(key: bytes) -> dict:
        contents = {field: value(field, raw) for field, raw in connection.hgetall(key).items()}
        if b"meta" in contents:
            meta = pickle.loads(connection.hget(key, b"meta"))
            meta.pop(retries.ATTEMPT_META_KEY, None)
            contents[b"meta"] = ("meta", meta)
            if not meta:  # only rq-gevent's attempt number made the job save its meta
                del contents[b"meta"]
        return contents

    state = {}
    for key in connection.keys("*"):
        kind = connection.type(key).decode()
        contents: object
        if kind == "hash":
            contents = hash_contents(key)
        elif kind == "list":
            contents = [EXECUTION_ID.sub(b"<execution>", member) for member in connection.lrange(key, 0, -1)]
        elif kind == "set":
            contents = sorted(EXECUTION_ID.sub(b"<execution>", member) for member in connection.smembers(key))
        elif kind == "zset":
            contents = {EXECUTION_ID.sub(b"<execution>", member): ("time", clock - score)
                        for member, score in connection.zrange(key, 0, -1, withscores=True)}  # fmt: skip
        elif kind == "stream":
            contents = [{field: value(field, raw) for field, raw in fields.items()}
                        for _, fields in connection.xrange(key)]  # fmt: skip
        else:
            contents = connection.get(key)
        state[EXECUTION_ID.sub(b"<execution>", key)] = (kind, connection.ttl(key), contents)
    return state


def within(ours: object, theirs: object, seconds: float) -> bool:
    """Equal, but for times (``("time", s)``) up to ``seconds`` apart, however deeply nested."""
    if isinstance(ours, tuple) and ours[:1] == ("time",) and isinstance(theirs, tuple) and theirs[:1] == ("time",):
        return ours[1] == theirs[1] or abs(ours[1] - theirs[1]) <= seconds
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return ours.keys() == theirs.keys() and all(within(ours[k], theirs[k], seconds) for k in ours)
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(within(a, b, seconds) for a, b in zip(ours, theirs, strict=True))
    return ours == theirs


def precise_differences(ours: dict, theirs: dict) -> list:
    """Keys one state has and the other lacks; TTLs more than 1 s apart; contents that differ beyond
    1.5 s of time."""
    differences: list = sorted(ours.keys() ^ theirs.keys())
    for key in sorted(ours.keys() & theirs.keys()):
        (kind, ttl, contents), (their_kind, their_ttl, their_contents) = ours[key], theirs[key]
        if kind != their_kind or abs(ttl - their_ttl) > 1 or not within(contents, their_contents, 1.5):
            differences.append((key, ours[key], theirs[key]))
    return differences


class RqOwnCode(GeventWorker):
    """rq's own code for every write the scripts of rq_gevent/plumbing/lua/ would make."""

    use_scripts = False


@pytest.mark.parametrize("worker_class", [GeventWorker, RqOwnCode], ids=["scripts", "rq-code"])
def test_redis_after_every_outcome_is_what_rqs_simple_worker_leaves_at_full_precision(connection, worker_class):
    queue = enqueue_every_outcome(connection)
    SimpleWorker([queue], connection=connection, name="same-name").work(burst=True)
    rqs = precise_state(connection)

    connection.flushall()
    connection.script_flush()
    queue = enqueue_every_outcome(connection)
    worker_class([queue], connection=connection, name="same-name", concurrency=10).work(burst=True)
    ours = precise_state(connection)

    assert Job.fetch("ok", connection=connection).return_value() == "value"
    assert Job.fetch("returns-retry", connection=connection).return_value() == "done after 2 attempts"
    scripted = worker_class is GeventWorker and compat.SCRIPTS_MIRROR_THIS_RQ
    assert connection.script_exists(job_writes._SUCCESS.sha)[0] is scripted
    assert precise_differences(ours, rqs) == []

    # The instrument: a value, a TTL 2 s off, a time 2 s off are each a difference.
    kind, ttl, contents = rqs[b"rq:job:ok"]
    assert precise_differences(ours, {**rqs, b"rq:job:ok": (kind, ttl, {**contents, b"status": b"failed"})})
    assert precise_differences(ours, {**rqs, b"rq:job:ok": (kind, ttl - 2, contents)})
    moved = {**contents, b"ended_at": ("time", contents[b"ended_at"][1] + 2)}
    assert precise_differences(ours, {**rqs, b"rq:job:ok": (kind, ttl, moved)})


def started_state(connection) -> dict:
    """Every key with its type, its TTL and its contents, execution ids masked: hash fields and values
    (timestamps by name only, and the worker hash, which its ticks write, too), list and set
    members, strings, stream entries' fields and values, and sorted-set members with their scores;
    TTLs and scores as seconds from now."""
    clock = time.time()
    state = {}
    for key in connection.keys("*"):
        kind = connection.type(key).decode()
        contents: object
        if kind == "hash":
            fields = connection.hgetall(key)
            ticks = key.startswith(b"rq:worker:")
            contents = {field: "-" if ticks or field in TIMESTAMPS else EXECUTION_ID.sub(b"<execution>", value)
                        for field, value in fields.items()}  # fmt: skip
        elif kind == "list":
            contents = [POP_TOKEN.sub(b"<pop>", EXECUTION_ID.sub(b"<execution>", member))
                        for member in connection.lrange(key, 0, -1)]  # fmt: skip
            if key.startswith(b"rq-gevent:pop:"):  # the ids of the last pop: which came first is timing
                contents.sort()
        elif kind == "set":
            contents = sorted(EXECUTION_ID.sub(b"<execution>", member) for member in connection.smembers(key))
        elif kind == "string":
            contents = connection.get(key)
        elif kind == "stream":
            contents = [{field: "-" if field in TIMESTAMPS else EXECUTION_ID.sub(b"<execution>", value)
                         for field, value in fields.items()} for _, fields in connection.xrange(key)]  # fmt: skip
        else:
            assert kind == "zset", (key, kind)
            contents = {EXECUTION_ID.sub(b"<execution>", member): score - clock
                        for member, score in connection.zrange(key, 0, -1, withscores=True)}  # fmt: skip
        state[EXECUTION_ID.sub(b"<execution>", key)] = (kind, connection.ttl(key), contents)
    return state


def same_but_for_clock(ours: dict, theirs: dict) -> list:
    """What differs between two ``started_state`` snapshots beyond 1 s of TTL or 1.5 s of score."""
    differences = [key for key in ours.keys() ^ theirs.keys()]
    for key in ours.keys() & theirs.keys():
        (kind, ttl, contents), (their_kind, their_ttl, their_contents) = ours[key], theirs[key]
        if kind != their_kind or abs(ttl - their_ttl) > 1:
            differences.append((key, ours[key], theirs[key]))
        elif kind == "zset":
            if contents.keys() != their_contents.keys() or any(
                abs(score - their_contents[member]) > 1.5 for member, score in contents.items()
            ):
                differences.append((key, contents, their_contents))
        elif contents != their_contents:
            differences.append((key, contents, their_contents))
    return differences


class OwnStartJob(Job):
    """A job class with its own ``prepare_for_execution``: its start goes as rq's commands."""

    def prepare_for_execution(self, worker_name, pipeline):
        super().prepare_for_execution(worker_name, pipeline)


def state_with_one_job_started(connection, redis_url: str, job_class) -> tuple[dict, bool]:
    """Redis while a job started on a busy worker runs, and whether the start script was used."""
    connection.flushall()
    connection.script_flush()
    queue = Queue("fast", connection=connection, job_class=job_class)
    holder = queue.enqueue(testjobs.block_in_redis, "release", 10, job_id="holder")
    worker = GeventWorker([queue.name], connection=redis.Redis.from_url(redis_url), name="same-name",
                          concurrency=2, job_class=job_class)  # fmt: skip
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(lambda: holder.get_status(refresh=True) == "started", what="the holder started")
    job = queue.enqueue(testjobs.block_in_redis, "release", 10, job_id="started", ttl=600)  # PERSIST: TTL gone
    wait_until(lambda: job.get_status(refresh=True) == "started", what="the job started")
    state = started_state(connection)
    used_script = connection.script_exists(job_writes._START.sha)[0]
    connection.rpush("release", "go", "go")
    greenlet.join(15)
    worker.connection.close()
    assert job.get_status(refresh=True) == "finished"
    return state, used_script


def test_a_start_in_one_script_call_writes_what_rqs_commands_write(connection, redis_url):
    """rq's own Job on a busy worker starts by job_writes' start script; a job class with its own
    start method by rq's commands: the same keys, TTLs, members, scores and values."""
    by_script, used_script = state_with_one_job_started(connection, redis_url, Job)
    by_rq, used_script_too = state_with_one_job_started(connection, redis_url, OwnStartJob)
    assert used_script and not used_script_too
    assert b"rq:execution:started:<execution>" in by_script
    assert same_but_for_clock(by_script, by_rq) == []

    # The instrument: a TTL 10 s off, a score 10 s off, a member missing are each a difference.
    key = b"rq:execution:started:<execution>"
    kind, ttl, contents = by_rq[key]
    assert same_but_for_clock(by_script, {**by_rq, key: (kind, ttl - 10, contents)}) != []
    key = b"rq:executions:started"
    kind, ttl, contents = by_rq[key]
    moved = {member: score + 10 for member, score in contents.items()}
    assert same_but_for_clock(by_script, {**by_rq, key: (kind, ttl, moved)}) != []
    assert same_but_for_clock(by_script, {**by_rq, key: (kind, ttl, {})}) != []


class OwnSuccessJob(Job):
    """A job class with its own ``_handle_success``: its success is recorded by rq's code."""

    def _handle_success(self, *args, **kwargs):
        super()._handle_success(*args, **kwargs)


def state_after_successes(connection, redis_url: str, job_class) -> tuple[dict, bool]:
    """Redis after successes of every result TTL, and whether the success script recorded them."""
    connection.flushall()
    connection.script_flush()
    queue = Queue("fast", connection=connection, job_class=job_class)
    holder = queue.enqueue(testjobs.block_in_redis, "release", 10, job_id="holder")  # the worker stays busy
    worker = GeventWorker([queue.name], connection=redis.Redis.from_url(redis_url), name="same-name",
                          concurrency=10, job_class=job_class)  # fmt: skip
    greenlet = start_worker_greenlet(worker, burst=True)
    wait_until(lambda: holder.get_status(refresh=True) == "started", what="the holder started")
    # A result of an earlier run, which was to expire: a result kept forever keeps it too.
    connection.xadd("rq:results:none-kept-forever", {"type": 1})
    connection.expire("rq:results:none-kept-forever", 1000)
    parent = queue.enqueue(testjobs.block_in_redis, "release-parent", 10, job_id="parent")
    child = queue.enqueue(testjobs.green_sleep, 0, "child", job_id="child", depends_on=parent)
    wait_until(lambda: parent.get_status(refresh=True) == "started", what="the parent started")
    jobs = [
        parent,
        child,
        queue.enqueue(testjobs.green_sleep, 0, "value", job_id="default-ttl"),
        queue.enqueue(testjobs.green_sleep, 0, None, job_id="none-kept-forever", result_ttl=-1),
        queue.enqueue(testjobs.green_sleep, 0, {"a": [1]}, job_id="kept-100-s", result_ttl=100, ttl=600),
        queue.enqueue(testjobs.current_job_info, job_id="with-meta", meta={"by": "app"}, description="described"),
    ]
    connection.rpush("release-parent", "go")  # a success with a dependent: rq's code
    wait_until(lambda: all(job.get_status(refresh=True) == "finished" for job in jobs), what="the jobs finished")
    state = started_state(connection)
    used_script = connection.script_exists(job_writes._SUCCESS.sha)[0]
    # rq 3's executions of a worker, in memory: those of the jobs that ended are gone (kept on rq 2 too).
    assert [execution.job_id for execution in worker.executions.values()] == ["holder"]
    connection.rpush("release", "go")
    greenlet.join(15)
    worker.connection.close()
    return state, used_script


def test_a_success_in_one_script_call_writes_what_rqs_code_writes(connection, redis_url):
    """rq's own Job's success, recorded by job_writes' success script, and a job class with
    its own ``_handle_success``'s, by rq's code: the same keys, TTLs, members, scores and values."""
    by_script, used_script = state_after_successes(connection, redis_url, Job)
    by_rq, used_script_too = state_after_successes(connection, redis_url, OwnSuccessJob)
    assert used_script and not used_script_too
    assert {b"rq:job:kept-100-s", b"rq:results:none-kept-forever"} <= by_script.keys()
    assert same_but_for_clock(by_script, by_rq) == []


def test_a_finished_job_keeps_its_last_heartbeat_from_its_end(connection):
    queue = Queue("fast", connection=connection)
    job = queue.enqueue(testjobs.green_sleep, 0.3)
    GeventWorker([queue], connection=connection).work(burst=True)
    job = Job.fetch(job.id, connection=connection)
    assert job.last_heartbeat >= job.ended_at


def test_worker_counters_and_current_job_reach_redis_while_it_runs(connection):
    queue = Queue("fast", connection=connection)
    for n in range(5):
        queue.enqueue(testjobs.green_sleep, 0, n)
    long_one = queue.enqueue(testjobs.green_sleep, 3, "long")
    worker = GeventWorker([queue], connection=connection, name="counting", concurrency=10)
    greenlet = start_worker_greenlet(worker, burst=True)

    def seen() -> Worker:
        return Worker.find_by_key(worker.key, connection=connection)

    wait_until(lambda: seen().successful_job_count == 5, timeout=5, what="the five short jobs counted")
    assert seen().get_current_job_id() == long_one.id
    assert seen().get_state() == "busy"
    greenlet.join(10)
    assert greenlet.successful()
    assert seen().successful_job_count == 6


def test_counts_a_tick_was_writing_when_the_worker_stopped_still_reach_redis(redis_url):
    """Found by CI: a burst worker's last count was lost when its tick was stopped mid-write."""
    pool = redis.BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=10)
    one_connection = redis.Redis(connection_pool=pool)
    counters = WorkerCounters(one_connection, "rq:worker:ticking", "ticking", logging.getLogger("test"), lambda p: None)
    counters.add_job(successful=1)
    held = pool.get_connection()  # the tick's write waits for the pool's one connection
    counters.start()
    gevent.sleep(WORKER_WRITES_SECONDS + 0.3)
    gevent.spawn_later(0.5, pool.release, held)
    counters.stop()
    assert one_connection.hget("rq:worker:ticking", "successful_job_count") == b"1"


def test_a_busy_worker_makes_at_most_three_round_trips_per_job(connection):
    queue = Queue("fast", connection=connection)
    jobs = 300
    queue.enqueue_many([Queue.prepare_data(testjobs.green_sleep, args=(0,)) for _ in range(jobs)])
    worker = GeventWorker([queue], connection=connection, concurrency=50)
    reads_before = connection.info("stats")["total_reads_processed"]
    worker.work(burst=True)
    reads = connection.info("stats")["total_reads_processed"] - reads_before
    # rq's SimpleWorker: 18 per job.  Here: the start pipeline, the outcome (its WATCH and SMEMBERS
    # assumed, rq_gevent.plumbing.transactions), and a share of a batched pop, of ticks and of start-up.
    assert len(queue.finished_job_registry) == jobs
    assert reads / jobs <= 3, reads / jobs


def test_rq_suspend_and_resume_are_obeyed(connection):
    from rq.suspension import resume, suspend

    queue = Queue("fast", connection=connection)
    suspend(connection)
    worker = GeventWorker([queue], connection=connection, name="suspendable")
    greenlet = start_worker_greenlet(worker)
    try:
        wait_until(lambda: worker.get_state() == "suspended", timeout=3, what="suspended")
        job = queue.enqueue(testjobs.green_sleep, 0)
        gevent.sleep(1.5)
        assert job.get_status() == "queued"
        resume(connection)
        wait_until(lambda: job.get_status() == "finished", timeout=5, what="the job ran after resume")
    finally:
        worker.request_stop()
        greenlet.join(10)


def test_an_rq_release_ci_does_not_test_gets_rqs_own_code_and_one_info_line(connection, monkeypatch, caplog):
    """The scripts mirror exact rq releases: on another (say a 3.0.1 that setup.cfg admits), rq's own
    code writes each start, success and heartbeat, and the worker says so once."""
    monkeypatch.setattr(compat, "SCRIPTS_MIRROR_THIS_RQ", False)  # what importing compat finds on such an rq
    queue = Queue("fast", connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 0.2, n) for n in range(5)]  # all but the first start on a busy worker
    caplog.set_level("INFO", logger="rq.worker")
    GeventWorker([queue], connection=connection, concurrency=5).work(burst=True)
    assert [job.return_value() for job in jobs] == list(range(5))
    said = [
        record.getMessage()
        for record in caplog.records
        if "is not a release rq-gevent is tested with" in record.getMessage()
    ]
    assert len(said) == 1 and ", ".join(compat.TESTED_RQ_VERSIONS) in said[0]
    scripts = [lua.load(name).sha for name in ("start", "success", "pop")]
    assert connection.script_exists(*scripts) == [False, False, False]
    # The instrument: the same worker on a tested rq loads them.
    monkeypatch.setattr(compat, "SCRIPTS_MIRROR_THIS_RQ", compat.rq.__version__ in compat.TESTED_RQ_VERSIONS)
    for n in range(5):
        queue.enqueue(testjobs.green_sleep, 0.2, n)
    GeventWorker([queue], connection=connection, concurrency=5).work(burst=True)
    assert connection.script_exists(*scripts) == [True, True, True]
