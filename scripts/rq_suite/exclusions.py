"""The tests of rq's own suite that scripts/rq_suite/run.py leaves out, each with its reason.

* ``FORKED_HORSE``: tests of the forked work horse itself (its pid, its exit code, killing it, the
  fork, spawn and Heroku workers built on it), which a worker without one cannot pass, or which kill
  the test process (a job's "horse" is the process that runs the tests).
* ``DIVERGENCES``: behaviours in which rq-gevent differs from rq on purpose, each stated in
  docs/limits.md ("rq's own test suite").

A test that only some rq versions have is named whatever the version: pytest ignores a --deselect
that matches nothing.
"""

from __future__ import annotations

FORKED_HORSE: dict[str, str] = {
    # SIGKILLs the pid its job reports: the test process itself here.
    "tests/test_dependencies.py::TestDependencies::test_allow_failures_when_work_horse_killed": "kills its process",
}

DIVERGENCES: dict[str, str] = {}


def excluded() -> list[str]:
    """The test ids to leave out."""
    return [*FORKED_HORSE, *DIVERGENCES]
