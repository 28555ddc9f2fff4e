"""``python -m rq_gevent worker ...`` is the same as ``rq-gevent worker ...``."""

from rq_gevent.cli import main

main()
