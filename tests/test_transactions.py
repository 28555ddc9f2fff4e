"""rq's success recorded in one round trip (rq_gevent.plumbing.transactions): no WATCH for a job without
dependents, a dependent that appears ends the assumption, the script applies rq's commands as EXEC
does, a refused write applies nothing, and the worker's counters count each job once."""

import gevent
import pytest
import redis
import testjobs
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis_dump import key_values
from rq import Queue
from rq.job import Job, JobStatus
from rq.worker import Worker

from rq_gevent import GeventWorker, compat
from rq_gevent.core import retries
from rq_gevent.embedded_redis import EmbeddedRedis
from rq_gevent.plumbing import transactions

# Replies of every kind, and an error in the middle that EXEC reports and runs past.
COMMANDS = [
    ("SET", "t:string", "1"),
    ("LPUSH", "t:string", "x"),  # WRONGTYPE
    ("INCRBY", "t:counter", 5),
    ("HSET", "t:hash", "field", "value", "other", "2"),
    ("HSET", "t:words", "text", "é ü 漢", "bytes", b"\xff\x00\r\n", "big", 2**70, "float", 0.1 + 0.2, "neg", -1e-05),
    ("EXPIRE", "t:hash", 100),
    ("ZADD", "t:zset", 1.5, "member"),
    ("GET", "t:missing"),
    ("XADD", "t:stream", "*", "field", "value"),
    ("DEL", "t:nothing"),
]


def commands_called(connection: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in connection.info("commandstats").items()}


def one_trip_transaction(connection: redis.Redis, commands, watched: str = "t:dependents") -> list:
    client = transactions.one_trip_client(connection)
    with transactions.one_trip(assume_no_dependents=True):
        pipeline = client.pipeline()
    pipeline.watch(watched)
    assert pipeline.smembers(watched) == set()
    pipeline.multi()
    for command in commands:
        pipeline.execute_command(*command)
    return pipeline.execute(raise_on_error=False)


def exec_transaction(connection: redis.Redis, commands) -> list:
    pipeline = connection.pipeline()
    for command in commands:
        pipeline.execute_command(*command)
    return pipeline.execute(raise_on_error=False)


def state(connection: redis.Redis) -> dict:
    """Each t:* key's type, whether it expires, and its value.  A stream's entry ids are replaced by
    their positions: ``XADD *`` takes them from the clock, so two runs differ there and only there."""
    found = {}
    for key, (kind, value) in key_values(connection, "t:*").items():
        if kind == "stream":
            value = [(position, fields) for position, (_, fields) in enumerate(value)]
        found[key] = (kind, connection.ttl(key) > 0, value)
    return found


def comparable(replies: list) -> list:
    return [(type(reply), str(reply)) if isinstance(reply, Exception) else reply for reply in replies]


def test_the_script_applies_commands_as_exec_does(connection):
    expected = exec_transaction(connection, COMMANDS)
    expected_state = state(connection)
    assert expected[8] == connection.xrange("t:stream")[0][0]
    connection.flushdb()

    replies = one_trip_transaction(connection, COMMANDS)

    assert isinstance(replies[1], redis.ResponseError) and "WRONGTYPE" in str(replies[1])
    # stream ids differ between the two runs; everything else must be the same
    assert comparable(replies[:8]) == comparable(expected[:8]) and replies[9] == expected[9]
    assert replies[8] == connection.xrange("t:stream")[0][0]
    assert state(connection) == expected_state
    assert connection.hgetall("t:hash") == {b"field": b"value", b"other": b"2"}
    assert connection.get("t:counter") == b"5"
    assert connection.hgetall("t:words") == {b"text": "é ü 漢".encode(), b"bytes": b"\xff\x00\r\n",
                                             b"big": b"1180591620717411303424", b"float": b"0.30000000000000004",
                                             b"neg": b"-1e-05"}  # fmt: skip


def test_an_existing_key_assumed_absent_applies_nothing_and_raises_watch_error(connection):
    connection.sadd("t:dependents", "child")
    with pytest.raises(redis.WatchError):
        one_trip_transaction(connection, COMMANDS)
    assert connection.keys("t:*") == [b"t:dependents"]


def test_a_refused_write_applies_nothing(connection):
    connection.set("t:before", "1")
    maxmemory, policy = connection.config_get("maxmemory")["maxmemory"], connection.config_get("maxmemory-policy")
    connection.config_set("maxmemory-policy", "noeviction")
    connection.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError, match="maxmemory"):
            exec_transaction(connection, COMMANDS)
        with pytest.raises(redis.exceptions.OutOfMemoryError, match="maxmemory"):
            one_trip_transaction(connection, [("GET", "t:before"), *COMMANDS])
    finally:
        connection.config_set("maxmemory", maxmemory)
        connection.config_set("maxmemory-policy", policy["maxmemory-policy"])
    assert connection.keys("t:*") == [b"t:before"]


def withdrawal_check(connection: redis.Redis, job_key: str) -> list:
    client = transactions.one_trip_client(connection)
    with transactions.one_trip():
        pipeline = client.pipeline()
    transactions.only_if_not_withdrawn(pipeline, job_key)
    pipeline.set("t:applied", "1")
    return pipeline.execute()


@pytest.mark.parametrize(
    "job_hash, applies",
    [({"status": "queued"}, True), ({"origin": "q"}, True), ({"status": "created"}, True),
     ({"status": "deferred"}, True), ({"status": "scheduled"}, True), ({"status": "canceled"}, False),
     ({"status": "started"}, False), ({"status": "finished"}, False), ({"status": "failed"}, False),
     ({"status": "stopped"}, False), (None, False), ("not a hash", False)],
    ids=["queued", "no status", "created", "deferred", "scheduled", "cancelled", "started", "finished", "failed",
         "stopped", "deleted", "not a hash"],
)  # fmt: skip
def test_a_transaction_that_needs_a_job_not_withdrawn_applies_only_if_it_was_not(connection, job_hash, applies):
    """Withdrawn: deleted, cancelled, started or ended elsewhere meanwhile.  Any other status runs, as
    rq runs what it pops (a job saved ``created`` and pushed by hand: docs/limits.md)."""
    if isinstance(job_hash, dict):
        connection.hset("t:job", mapping=job_hash)
    elif job_hash is not None:
        connection.set("t:job", job_hash)
    if applies:
        assert withdrawal_check(connection, "t:job") == [True]
    else:
        with pytest.raises(transactions.JobWithdrawn):
            withdrawal_check(connection, "t:job")
    assert connection.exists("t:applied") == applies


@pytest.mark.parametrize(
    "status",
    [status for status in ("queued", "created", "deferred", "scheduled", "canceled", "started", "finished")
     if status in {known.value for known in JobStatus}],  # rq 2 has no "created"
)  # fmt: skip
def test_maintenance_tells_a_job_not_run_yet_by_the_same_statuses_as_the_start(connection, status):
    """A popped job left in ``:intermediate`` by a worker that died before its start: requeued by
    maintenance if the start script would have run it, else not failed over the record it has."""
    job = Job.create(testjobs.green_sleep, args=(0,), connection=connection, id="left")
    job.save()
    connection.hset(job.key, "status", status)
    job = Job.fetch("left", connection=connection)
    not_run_yet = status not in compat.WITHDRAWN_STATUSES
    assert retries.never_started(job, compat.STUCK_IN_INTERMEDIATE) is not_run_yet
    assert compat.left_behind_in_intermediate(job, compat.STUCK_IN_INTERMEDIATE) is not not_run_yet
    connection.delete("t:job")
    connection.hset("t:job", "status", status)
    if not_run_yet:
        assert withdrawal_check(connection, "t:job") == [True]
    else:
        with pytest.raises(transactions.JobWithdrawn):
            withdrawal_check(connection, "t:job")


def test_a_check_that_the_job_is_queued_is_refused_where_it_cannot_be_made(connection):
    client = transactions.one_trip_client(connection)
    with pytest.raises(TypeError, match="one_trip"):
        transactions.only_if_not_withdrawn(client.pipeline(), "t:job")  # made outside one_trip(): no script
    with pytest.raises(TypeError, match="one_trip"):
        transactions.only_if_not_withdrawn(connection.pipeline(), "t:job")
    with transactions.one_trip():
        pipeline = client.pipeline()
    pipeline.watch("t:watched")  # watched for real: the transaction cannot be one script call
    pipeline.multi()
    transactions.only_if_not_withdrawn(pipeline, "t:job")
    pipeline.set("t:applied", "1")
    with pytest.raises(RuntimeError, match="not one script call"):
        pipeline.execute()
    assert not connection.exists("t:applied")


@pytest.fixture
def quiet_redis():
    """A Redis of its own: its command and read counts and its client list are this test's alone, not
    those of a worker (or a process) an earlier test left behind on the session's Redis."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def quiet_connection(quiet_redis):
    client = redis.Redis.from_url(quiet_redis.url)
    yield client
    client.close()


def test_a_job_without_dependents_is_recorded_with_no_watch(quiet_connection):
    connection = quiet_connection
    queue = Queue("one-trip", connection=connection)
    jobs = [queue.enqueue(testjobs.green_sleep, 0, n) for n in range(20)]
    connection.config_resetstat()
    worker = GeventWorker([queue], connection=connection, concurrency=5)
    worker.work(burst=True)

    assert [job.get_status() for job in jobs] == ["finished"] * 20
    called = commands_called(connection)
    # rq's own: a WATCH and an SMEMBERS per job (start-up reads a few sets of its own)
    assert called.get("watch", 0) == 0 and called.get("smembers", 0) < len(jobs), called
    assert Worker.find_by_key(worker.key, connection=connection).successful_job_count == 20


def test_a_dependent_added_while_its_parent_runs_is_enqueued_and_the_parent_counted_once(quiet_connection):
    connection = quiet_connection
    queue = Queue("one-trip", connection=connection)
    parent = queue.enqueue(testjobs.enqueue_own_dependent, "child ran", job_id="parent")
    connection.config_resetstat()
    worker = GeventWorker([queue], connection=connection, concurrency=5)
    worker.work(burst=True)

    child = Job.fetch("parent-dependent", connection=connection)
    assert parent.get_status() == "finished" and child.get_status() == "finished"
    assert child.return_value() == "child ran"
    assert commands_called(connection).get("watch", 0) >= 1  # the assumption failed: watched for real
    seen = Worker.find_by_key(worker.key, connection=connection)
    assert seen.successful_job_count == 2
    assert len(queue.finished_job_registry) == 2


@pytest.mark.parametrize("queues", ["objects", "names"])
def test_a_parent_whose_dependent_waits_ends_with_it_enqueued_whatever_the_worker_was_given(redis_url, queues):
    """As the command line does, a worker given queue names reads the dependents through its own
    client, whose transactions are script calls: rq's HGETALLs of them must come back as dicts."""
    connection = redis.Redis.from_url(redis_url)
    queue = Queue("one-trip", connection=connection)
    parent = queue.enqueue(testjobs.green_sleep, 0.5, "parent ran", job_id="parent")
    child = queue.enqueue(testjobs.green_sleep, 0, "child ran", job_id="child", depends_on=parent)
    given = [queue] if queues == "objects" else [queue.name]
    GeventWorker(given, connection=redis.Redis.from_url(redis_url), concurrency=5).work(burst=True)
    assert parent.get_status(refresh=True) == "finished" and child.get_status(refresh=True) == "finished"
    assert child.return_value() == "child ran"


def test_reads_in_a_transaction_come_back_as_in_exec(connection):
    """A script's commands answer in RESP2 whatever the client speaks: each reply gets the callback a
    RESP2 client would apply."""
    connection.hset("t:hash", mapping={"a": 1, "b": "two"})
    connection.zadd("t:zset", {"x": 1.5, "y": 2})
    connection.sadd("t:set", "m", "n")

    def reads(pipeline) -> list:
        pipeline.hgetall("t:hash")
        pipeline.hmget("t:hash", "a", "missing")
        pipeline.zrange("t:zset", 0, -1, withscores=True)
        pipeline.zscore("t:zset", "x")
        pipeline.smembers("t:set")
        pipeline.exists("t:hash", "t:none")
        pipeline.incrbyfloat("t:float", 0.5)
        pipeline.ttl("t:hash")
        return pipeline.execute()

    expected = reads(connection.pipeline())
    connection.delete("t:float")
    client = transactions.one_trip_client(connection)
    with transactions.one_trip():
        pipeline = client.pipeline()
    assert reads(pipeline) == expected
    assert expected[0] == {b"a": b"1", b"b": b"two"} and expected[2] == [(b"x", 1.5), (b"y", 2.0)]


def transactions_at_once(client: redis.Redis, count: int, prefix: str = "t") -> list:
    """``count`` greenlets, each with a transaction of its own begun inside ``one_trip``."""

    def one(n: int) -> list:
        with transactions.one_trip():
            pipeline = client.pipeline()
        pipeline.incr(f"{prefix}:counter:{n}")
        pipeline.hset(f"{prefix}:hash:{n}", "n", n)
        pipeline.rpush(f"{prefix}:all", n)
        return pipeline.execute()

    greenlets = [gevent.spawn(one, n) for n in range(count)]
    gevent.joinall(greenlets, raise_error=True)
    return [greenlet.value for greenlet in greenlets]


def test_transactions_of_many_greenlets_share_round_trips_and_each_gets_its_replies(quiet_connection):
    connection = quiet_connection
    client = transactions.one_trip_client(connection)
    transactions_at_once(client, 1, prefix="warm-up")  # the script loaded, a connection in the pool
    reads_before = connection.info("stats")["total_reads_processed"]

    replies = transactions_at_once(client, 50)

    reads = connection.info("stats")["total_reads_processed"] - reads_before - 1  # the INFO itself
    assert all(reply[:2] == [1, 1] for reply in replies), replies
    assert sorted(reply[2] for reply in replies) == list(range(1, 51))  # every RPUSH applied once
    assert [connection.hget(f"t:hash:{n}", "n") for n in range(50)] == [str(n).encode() for n in range(50)]
    assert reads <= 5, (reads, connection.client_list())  # one per greenlet without coalescing


def test_a_killed_pooled_connection_and_a_flushed_script_are_recovered_from(connection):
    client = transactions.one_trip_client(connection)
    transactions_at_once(client, 5, prefix="before")
    connection.client_kill_filter(_type="normal", skipme=True)  # the pooled connection is dead now
    connection.script_flush()

    replies = transactions_at_once(client, 5)

    assert all(reply[:2] == [1, 1] for reply in replies)  # applied once each
    assert connection.llen("t:all") == 5


def test_a_word_redis_cannot_take_fails_its_own_transaction_only(connection):
    client = transactions.one_trip_client(connection)

    def one(value: object) -> object:
        with transactions.one_trip():
            pipeline = client.pipeline()
        pipeline.rpush("t:all", value)
        try:
            return pipeline.execute()
        except redis.DataError as error:
            return error

    greenlets = [gevent.spawn(one, value) for value in ("a", None, "b", True, "c")]
    gevent.joinall(greenlets, raise_error=True)

    results = [greenlet.value for greenlet in greenlets]
    assert [type(result) for result in results[1::2]] == [redis.DataError, redis.DataError]
    assert sorted(connection.lrange("t:all", 0, -1)) == [b"a", b"b", b"c"]


def coalescer_connection(connection: redis.Redis) -> dict:
    """The connection of the coalescer's calls: the one whose EVALSHA ``CLIENT PAUSE`` holds back."""
    clients = connection.client_list()
    (waiting,) = [client for client in clients if client["cmd"] == "evalsha" and "b" in client["flags"]]
    return waiting


def test_a_transaction_is_sent_while_earlier_ones_wait_for_their_replies(quiet_connection):
    connection = quiet_connection
    client = transactions.one_trip_client(connection)
    transactions_at_once(client, 1, prefix="warm-up")
    connection.execute_command("CLIENT", "PAUSE", 5000, "WRITE")  # Redis reads writes, runs none
    try:
        first = gevent.spawn(transactions_at_once, client, 1, "first")
        gevent.sleep(0.2)
        second = gevent.spawn(transactions_at_once, client, 1, "second")
        gevent.sleep(0.2)
        # The second call is in Redis's buffer behind the first: it did not wait for the first's reply.
        assert int(coalescer_connection(connection)["qbuf"]) > 0
    finally:
        connection.execute_command("CLIENT", "UNPAUSE")
    gevent.joinall([first, second], raise_error=True)
    assert first.value == second.value == [[1, 1, 1]]


@pytest.mark.parametrize("retries", [0, 1])
def test_calls_in_flight_on_a_connection_that_dies_follow_its_retry_policy(quiet_redis, quiet_connection, retries):
    connection = quiet_connection
    client = transactions.one_trip_client(redis.Redis.from_url(quiet_redis.url, retry=Retry(NoBackoff(), retries)))
    transactions_at_once(client, 1, prefix="warm-up")
    connection.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
    try:
        waiting = [gevent.spawn(transactions_at_once, client, 3, f"burst{n}") for n in range(2)]
        gevent.sleep(0.2)
        connection.client_kill_filter(_id=coalescer_connection(connection)["id"])  # none of them ran
    finally:
        connection.execute_command("CLIENT", "UNPAUSE")
    gevent.joinall(waiting)
    if retries:
        assert [greenlet.value for greenlet in waiting] == [[[1, 1, n + 1] for n in range(3)]] * 2
        assert connection.llen("burst0:all") == connection.llen("burst1:all") == 3  # each applied once
    else:  # as a redis-py pipeline on such a connection: the error, nothing applied
        assert all(isinstance(greenlet.exception, redis.ConnectionError) for greenlet in waiting)
        assert connection.keys("burst*") == []
