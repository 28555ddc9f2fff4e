"""CPython's garbage collector, tuned for a worker with many jobs in flight.

CPython collects its youngest generation every 700 net allocations of container objects, and the
whole heap once the objects promoted since the last full pass reach a quarter of the old ones.  With
a hundred jobs in flight, a job's objects outlive several young passes, so they are promoted; and the
outcomes kept for a recheck after a Redis outage (:mod:`rq_gevent.core.outcomes`) are meant to live for
seconds: full passes come often and take long (measured: docs/performance-history.md).  So, once per
process, when ``work()`` starts:

* the youngest generation's threshold is raised to ``YOUNG_THRESHOLD`` (never lowered), so that most
  of a job's objects are freed before a pass sees them, and far fewer are promoted;
* the objects made until then (imports, settings, the worker) are frozen (``gc.freeze``): no pass
  scans them again.

Cyclic garbage is still collected, a little later.  A process whose collector is disabled is left so.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000

_tuned = False


def tune_for_many_jobs_in_flight() -> None:
    global _tuned
    if _tuned or not gc.isenabled():
        return
    _tuned = True
    young, *older = gc.get_threshold()
    if young < YOUNG_THRESHOLD:
        gc.set_threshold(YOUNG_THRESHOLD, *older)
    gc.freeze()
