"""Job functions for the benchmark scripts (workers import them with ``-P scripts``).

The ``bench_*`` functions are the work of ``scripts/bench.py``; Celery and Dramatiq wrap the same
functions (``benchapp_celery``, ``benchapp_dramatiq``), so every system runs identical job bodies.
Each records itself with one RPUSH to ``$BENCH_REDIS_URL``: when it was enqueued, started and ended.
"""

from __future__ import annotations

import os
import smtplib
import time
from email.message import EmailMessage

import redis

DONE_KEY = "bench:done"
FLOOR_PLAN_KEY = "bench:floor"  # the calls bench_floor.py makes, without a queue

_recorder: redis.Redis | None = None


def io_job(seconds: float, fail: bool = False) -> str:
    """Wait ``seconds`` as a network call would (a green sleep), then succeed or raise."""
    time.sleep(seconds)
    if fail:
        raise RuntimeError("the remote API answered 503")
    return "ok"


def bench_noop(enqueued_at: float) -> None:
    _record(enqueued_at, time.time())


def bench_io(seconds: float, enqueued_at: float) -> None:
    """A network wait: ``time.sleep``, which is green wherever gevent patched the process."""
    started = time.time()
    time.sleep(seconds)
    _record(enqueued_at, started)


def bench_mail(smtp_port: int, enqueued_at: float) -> None:
    """Send one real mail to the local SMTP server on ``smtp_port``."""
    started = time.time()
    message = EmailMessage()
    message["From"] = "bench@example.com"
    message["To"] = "user@example.com"
    message["Subject"] = "Activate your account"
    message.set_content("Click https://example.com/activate/0123456789abcdef to activate your account.\n")
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
        smtp.send_message(message)
    _record(enqueued_at, started)


def _record(enqueued_at: float, started: float) -> None:
    global _recorder
    if _recorder is None:
        # Blocking: with more jobs at once than connections, a job waits for one instead of failing.
        pool = redis.BlockingConnectionPool.from_url(os.environ["BENCH_REDIS_URL"], max_connections=64, timeout=None)
        _recorder = redis.Redis(connection_pool=pool)
    _recorder.rpush(DONE_KEY, f"{enqueued_at!r} {started!r} {time.time()!r}")
