"""Job functions that web apps enqueue with ``Queue.enqueue`` and rq-gevent workers run."""
