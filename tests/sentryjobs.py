"""Job functions for the Sentry tests: each leaves its own marks (tag, breadcrumb) before failing."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import time

import sentry_sdk

from rq_gevent import sensitive

log = logging.getLogger("tests.sentryjobs")


def fail_marked(marker: str, seconds: float = 0.0) -> None:
    """Tag and breadcrumb with ``marker``, wait (so that many run at once), then fail."""
    sentry_sdk.set_tag("test.marker", marker)
    log.warning("breadcrumb of %s", marker)  # INFO would be filtered by the root logger's level
    time.sleep(seconds)
    log.warning("still %s", marker)
    raise ValueError(f"boom {marker}")


def sleep_long(seconds: float) -> None:
    time.sleep(seconds)


def also_sleep_long(seconds: float) -> None:
    time.sleep(seconds)


def _leak(user: str, password: str) -> None:
    """Put ``password`` everywhere a careless job does: a log line, a command line, a local, a message."""
    log.warning("logging in %s with %s", user, password)
    command = [sys.executable, "-c", "import sys; sys.exit(3)", password]
    try:
        subprocess.run(command, check=True)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"login of {user} failed with password {password}: {error}") from error


@sensitive
def leak_marked(user: str, password: str) -> None:
    _leak(user, password)


def leak_by_pattern(user: str, password: str) -> None:
    """Sensitive through SENSITIVE_JOBS in tests/sentry_config.py."""
    _leak(user, password)


def leak_unmarked(user: str, password: str) -> None:
    _leak(user, password)


@sensitive
def sleep_marked(seconds: float) -> None:
    time.sleep(seconds)


def derived_markers(secret: str) -> list[str]:
    """What :func:`_raise_derived` derives from ``secret``: none of it is in the job's arguments."""
    return [secret.upper(), secret[::-1], hashlib.sha256(secret.encode()).hexdigest()]


def _raise_derived(secret: str) -> None:
    """Fail with ``secret`` and strings derived from it in the message, in a chained cause and in a note."""
    upper, reversed_, digest = derived_markers(secret)
    try:
        raise KeyError(f"{secret} {reversed_}")
    except KeyError as cause:
        error = RuntimeError(f"login refused for {upper} (first {secret[:8]}, sha256 {digest})")
        error.add_note(f"while trying {secret}")
        raise error from cause


@sensitive
def derived_marked(user: str, secret: str) -> None:
    _raise_derived(secret)


def derived_by_pattern(user: str, secret: str) -> None:
    """Sensitive through SENSITIVE_JOBS in tests/sentry_config.py."""
    _raise_derived(secret)


def derived_unmarked(user: str, secret: str) -> None:
    _raise_derived(secret)
