"""Job functions used by the tests (importable by subprocess workers with ``-P tests``)."""

from __future__ import annotations

import asyncio
import gc
import os
import time
import weakref

import gevent.monkey
from rq import Retry, get_current_job


def green_sleep(seconds: float, value: object = None) -> object:
    time.sleep(seconds)
    return value


def track_concurrency(seconds: float, value: object = None) -> object:
    """Record how many of these jobs run at once, in Redis (``running`` now, ``max_running`` ever)."""
    job = get_current_job()
    connection = job.connection
    running = connection.incr("test:running")
    script = (
        "local v = redis.call('GET', KEYS[1]); "
        "if (not v) or tonumber(v) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end"
    )
    connection.eval(script, 1, "test:max_running", running)
    try:
        time.sleep(seconds)
    finally:
        connection.decr("test:running")
    return value


def fail(message: str = "boom") -> None:
    raise ValueError(message)


def fail_then_succeed(counter_key: str, failures: int) -> str:
    """Raise for the first ``failures`` calls (counted in Redis), then succeed."""
    attempt = get_current_job().connection.incr(counter_key)
    if attempt <= failures:
        raise RuntimeError(f"attempt {attempt} fails")
    return f"succeeded on attempt {attempt}"


def return_retry_until(successful_attempt: int) -> object:
    """Return rq's Retry (rq >= 2.1) until the job's ``successful_attempt``-th run."""
    job = get_current_job()
    attempt = job.connection.incr(f"test:attempts:{job.id}")
    if attempt < successful_attempt:
        return Retry(max=successful_attempt)
    return f"done after {attempt} attempts"


def current_job_info(sleep: float = 0.0) -> dict:
    job = get_current_job()
    time.sleep(sleep)
    job.meta["seen_by"] = job.id
    job.save_meta()
    again = get_current_job()
    return {"id": job.id, "same_after_yield": again is not None and again.id == job.id}


def enqueue_follow_up(queue_name: str, value: str) -> str:
    from rq import Queue

    job = get_current_job()
    Queue(queue_name, connection=job.connection).enqueue(green_sleep, 0.05, value, job_id=f"follow-up-{value}")
    return value


def spin(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def block_in_c(seconds: float) -> None:
    """Block the whole process in C, as an unpatched library would (the hub cannot run meanwhile)."""
    gevent.monkey.get_original("time", "sleep")(seconds)


async def async_sleep(seconds: float, value: object) -> object:
    await asyncio.sleep(seconds)
    return value


def record_success(job, connection, result) -> None:
    connection.rpush("test:callbacks", f"success:{job.id}:{result}")


def record_failure(job, connection, exc_type, exc_value, tb) -> None:
    connection.rpush("test:callbacks", f"failure:{job.id}:{exc_type.__name__}")


def record_stopped(job, connection) -> None:
    connection.rpush("test:callbacks", f"stopped:{job.id}")


def slow_success_callback(job, connection, result) -> None:
    time.sleep(5)
    connection.rpush("test:callbacks", f"slow-success:{job.id}")


_hoard: list[bytearray] = []


def hog_memory(megabytes: int, hold_seconds: float = 0.5) -> int:
    """Allocate and keep ``megabytes`` MB for the life of the process (a leaking job); returns the pid."""
    chunk = bytearray(megabytes * 1024 * 1024)
    for offset in range(0, len(chunk), 4096):
        chunk[offset] = 1  # touch every page so it counts in RSS
    _hoard.append(chunk)
    time.sleep(hold_seconds)
    return os.getpid()


def report_pid(seconds: float = 0.0) -> int:
    time.sleep(seconds)
    return os.getpid()


def unpicklable_result() -> object:
    return (line for line in ["a generator cannot be pickled"])


def block_in_redis(key: str, seconds: int) -> object:
    """Wait for ``key`` in the job's own Redis connection, as long as ``seconds``."""
    return get_current_job().connection.blpop(key, timeout=seconds)


def always_retry(max_retries: int) -> object:
    """Return rq's Retry (rq >= 2.1) every time: rq gives up after ``max_retries`` retries."""
    return Retry(max=max_retries)


def enqueue_own_dependent(value: object) -> str:
    """Enqueue a job that depends on this one while it runs, as an app might: it is deferred until
    this job's success moves it on."""
    from rq import Queue

    job = get_current_job()
    queue = Queue(job.origin, connection=job.connection)
    return queue.enqueue(green_sleep, 0, value, job_id=f"{job.id}-dependent", depends_on=job).id


class CycleMember:
    """Each instance alive is in ``alive``: those that a job left in a reference cycle and the garbage
    collector has not freed."""

    alive: weakref.WeakSet = weakref.WeakSet()

    def __init__(self) -> None:
        CycleMember.alive.add(self)
        self.other: CycleMember | None = None


def leave_a_cycle() -> None:
    first, second = CycleMember(), CycleMember()
    first.other, second.other = second, first


def collector_settings() -> list:
    """The young generation's threshold, whether start-up objects are frozen, whether it is enabled."""
    return [gc.get_threshold()[0], gc.get_freeze_count() > 0, gc.isenabled()]


def nested_penalty_then_sleep(seconds: float) -> str:
    """A job that arms a death penalty of its own inside rq's (as a library might), then runs on."""
    from rq_gevent.core.timeouts import GeventDeathPenalty

    with GeventDeathPenalty(5):
        gevent.sleep(0.05)
    gevent.sleep(seconds)
    return "ran to the end"
