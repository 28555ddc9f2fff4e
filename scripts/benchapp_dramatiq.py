"""The benchmark's jobs as Dramatiq actors (``dramatiq-gevent benchapp_dramatiq``)."""

from __future__ import annotations

import os

import benchjobs
import dramatiq
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])
dramatiq.set_broker(broker)

noop = dramatiq.actor(benchjobs.bench_noop, actor_name="bench_noop", max_retries=0)
io = dramatiq.actor(benchjobs.bench_io, actor_name="bench_io", max_retries=0)
mail = dramatiq.actor(benchjobs.bench_mail, actor_name="bench_mail", max_retries=0)
