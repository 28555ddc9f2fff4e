"""rq's success recorded in one round trip (rq_gevent.transactions): no WATCH for a job without
dependents, a dependent that appears ends the assumption, the script applies rq's commands as EXEC
does, a refused write applies nothing, and the worker's counters count each job once."""

import pytest
import redis
import testjobs
from rq import Queue
from rq.job import Job
from rq.worker import Worker

from rq_gevent import GeventWorker, transactions

# Replies of every kind, and an error in the middle that EXEC reports and runs past.
COMMANDS = [
    ("SET", "t:string", "1"),
    ("LPUSH", "t:string", "x"),  # WRONGTYPE
    ("INCRBY", "t:counter", 5),
    ("HSET", "t:hash", "field", "value", "other", "2"),
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
    with transactions.assuming_no_dependents():
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
    keys = sorted(connection.keys("t:*"))
    return {key: (connection.type(key), connection.ttl(key) > 0, connection.dump(key)[:-10]) for key in keys}


def comparable(replies: list) -> list:
    return [(type(reply), str(reply)) if isinstance(reply, Exception) else reply for reply in replies]


def test_the_script_applies_commands_as_exec_does(connection):
    expected = exec_transaction(connection, COMMANDS)
    expected_state = state(connection)
    connection.flushdb()

    replies = one_trip_transaction(connection, COMMANDS)

    assert isinstance(replies[1], redis.ResponseError) and "WRONGTYPE" in str(replies[1])
    # stream ids differ between the two runs; everything else must be the same
    assert comparable(replies[:7]) == comparable(expected[:7]) and replies[8] == expected[8]
    assert state(connection).keys() == expected_state.keys()
    assert {key: value[:2] for key, value in state(connection).items()} == {
        key: value[:2] for key, value in expected_state.items()
    }
    assert connection.hgetall("t:hash") == {b"field": b"value", b"other": b"2"}
    assert connection.get("t:counter") == b"5"


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


def test_a_job_without_dependents_is_recorded_with_no_watch(connection):
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


def test_a_dependent_added_while_its_parent_runs_is_enqueued_and_the_parent_counted_once(connection):
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
