"""The benchmark's jobs as Celery tasks (``celery -A benchapp_celery worker -P gevent``)."""

from __future__ import annotations

import os

import benchjobs
from celery import Celery

app = Celery("benchapp", broker=os.environ["BENCH_REDIS_URL"])
app.conf.task_ignore_result = True

noop = app.task(name="bench_noop")(benchjobs.bench_noop)
io = app.task(name="bench_io")(benchjobs.bench_io)
mail = app.task(name="bench_mail")(benchjobs.bench_mail)
