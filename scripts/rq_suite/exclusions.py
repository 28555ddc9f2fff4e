"""The tests of rq's own suite that scripts/rq_suite/run.py leaves out, each with its reason.

* ``FORKED_HORSE``: tests of the forked work horse itself, which a worker without one cannot pass or
  which kill the test process (a job's "horse" is the process that runs the tests here).
* ``NOT_OURS``: tests of rq's other worker classes, ``SpawnWorker`` and ``HerokuWorker``: subclasses of
  rq's own ``Worker`` (defined before the swap), they would run rq's code and count as passes.
* ``DIVERGENCES``: behaviours where rq-gevent differs from rq on purpose, each stated in docs/limits.md
  ("rq's own test suite").

A test that only some rq versions have is named whatever the version: pytest ignores a --deselect
that matches nothing.
"""

from __future__ import annotations

FORKED_HORSE: dict[str, str] = {
    # SIGKILLs the pid its job reports: the test process itself here.
    "tests/test_dependencies.py::TestDependencies::test_allow_failures_when_work_horse_killed": "kills its process",
}

NOT_OURS: dict[str, str] = {
    "tests/test_spawn_worker.py": "SpawnWorker, a subclass of rq's own Worker",
    "tests/test_worker.py::HerokuWorkerShutdownTestCase": "HerokuWorker, a subclass of rq's own Worker",
}


DIVERGENCES: dict[str, str] = {
    # A popped job that never started is requeued by the intermediate-list clean-up, not failed.
    "tests/test_intermediate_queue.py::TestIntermediateQueue::test_cleanup_intermediate_queue": "requeued",
    "tests/test_intermediate_queue.py::TestIntermediateQueue::test_cleanup_intermediate_queue_in_maintenance": (
        "requeued"
    ),
    # One worker runs many jobs at once: which worker takes a job, and the order jobs end, differ.
    "tests/test_job_dependency.py::TestJobDependency::test_execution_order_with_sole_dependency": "concurrent",
    "tests/test_job_dependency.py::TestJobDependency::test_execution_order_with_dual_dependency": "concurrent",
}


def excluded() -> list[str]:
    """The test ids (or files, or classes) to leave out."""
    return [*FORKED_HORSE, *NOT_OURS, *DIVERGENCES]
