"""The floor of ``scripts/bench.py``: the same job bodies called in a bare gevent pool, no queue at all.

    BENCH_REDIS_URL=redis://... python bench_floor.py -c 100

Reads the calls ``bench.py`` stored under ``benchjobs.FLOOR_PLAN_KEY`` (one JSON list of
``[function, args]``), runs each one in a pool of ``-c`` greenlets, and then waits to be stopped.
Its CPU per job is what a job costs with no broker, bookkeeping or worker around it; a system's CPU
per job above it is that system's own.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402

import benchjobs  # noqa: E402
import gevent.pool  # noqa: E402
import redis  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--concurrency", type=int, default=100, help="greenlets at once (default 100)")
    concurrency = parser.parse_args().concurrency
    with redis.Redis.from_url(os.environ["BENCH_REDIS_URL"]) as connection:
        plan = json.loads(connection.getdel(benchjobs.FLOOR_PLAN_KEY) or "[]")
    pool = gevent.pool.Pool(concurrency)
    for function, args in plan:
        pool.spawn(getattr(benchjobs, function), *args)
    pool.join()
    threading.Event().wait()  # bench.py counts the jobs, then stops this process


if __name__ == "__main__":
    main()
