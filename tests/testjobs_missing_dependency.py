"""A job module whose dependency is not installed: a worker names that import error, not rq's
"Invalid attribute name" (tests/test_faults.py)."""

import rq_gevent_tests_not_installed  # noqa: F401


def function() -> None:
    return None
