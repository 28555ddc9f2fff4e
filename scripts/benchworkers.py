"""The benchmark's worker classes (``rq-gevent worker -w benchworkers.X``), imported once the command
has patched gevent."""

from rq_gevent import GeventWorker


class RqOwnCodeWorker(GeventWorker):
    """rq-gevent with rq's own code for every write its Lua scripts would make (what an rq release CI
    does not test gets): the difference from ``rq-gevent`` is what the scripts earn."""

    use_scripts = False
