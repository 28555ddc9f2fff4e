"""Loaded at the start of every Python process of a run of rq's own suite (scripts/rq_suite/run.py
puts this directory on ``PYTHONPATH``), the test process and the ``rq`` commands it starts alike: with
``RQ_SUITE_REDIS_PORT`` set, it patches the process with gevent, sends rq's hard-coded Redis port
(6379) to the run's own server, and puts ``GeventWorker`` in place of rq's ``Worker`` and
``SimpleWorker`` before rq's tests import them."""

import os


def _swap() -> None:
    from gevent import monkey

    monkey.patch_all()

    import redis.connection
    import rq
    import rq.worker

    from rq_gevent import GeventWorker

    port = int(os.environ["RQ_SUITE_REDIS_PORT"])
    _connection_init = redis.connection.Connection.__init__

    def _init(self, *args, **kwargs):
        _connection_init(self, *args, **kwargs)
        if self.port == 6379:
            self.port = port

    redis.connection.Connection.__init__ = _init

    class SimpleGeventWorker(GeventWorker):
        """Stands for ``rq.SimpleWorker``: rq's tests pick it to run jobs in the test's own process."""

    rq.Worker = rq.worker.Worker = GeventWorker
    rq.SimpleWorker = rq.worker.SimpleWorker = SimpleGeventWorker


if os.environ.get("RQ_SUITE_REDIS_PORT"):
    try:
        _swap()
    except BaseException:  # Python would print one line and run rq's own Worker against port 6379
        import traceback

        traceback.print_exc()
        os._exit(70)
