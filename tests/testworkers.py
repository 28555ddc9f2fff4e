"""Worker classes for subprocess tests (``--worker-class testworkers.ShortTTLWorker``)."""

from rq_gevent import GeventWorker


class ShortTTLWorker(GeventWorker):
    """Executions expire 1 s after their heartbeat is due (rq: 60 s), so rq's abandoned-job path
    can be exercised in seconds."""

    heartbeat_ttl_margin = 1
