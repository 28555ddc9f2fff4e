"""One sync at a time per forum username and per e-mail address, across every worker.

UCenter checks that a name (and, with ``doublee`` off, an e-mail) is free, then inserts: two
registrations at once can both pass the check.  Concurrent jobs make that likely, so each sync holds
Redis locks named after the normalised username and e-mail while it looks up and registers.  The
lock names are digests: the queue's Redis never holds the member's address in a key.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import unicodedata
from collections.abc import Callable, Iterator

from redis.exceptions import LockError
from rq import get_current_job

from jobs.outcomes import TransientError
from jobs.settings import setting

KEY_PREFIX = "jobs:discuz:sync-lock:"
DEFAULT_HOLD = 120.0  # seconds a lock outlives a worker that died holding it
DEFAULT_WAIT = 30.0  # seconds a job waits for another job's sync before it retries later

log = logging.getLogger(__name__)


def normalised_username(username: str) -> str:
    """Folded like the forum's case- and accent-insensitive collation, so names it takes as one share a lock."""
    decomposed = unicodedata.normalize("NFKD", username)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def lock_names(username: str, email: str) -> list[str]:
    """The locks a sync of this member takes, in the one order every job takes them (no deadlock)."""
    parts = (f"username:{normalised_username(username)}", f"email:{email.strip().lower()}")
    return sorted(KEY_PREFIX + hashlib.sha256(part.encode("utf-8")).hexdigest() for part in parts)


@contextlib.contextmanager
def one_sync_per_member(username: str, email: str) -> Iterator[None]:
    """Hold both locks for the block; :class:`TransientError` when another job holds one past the wait.

    Outside a worker (a direct call) there is no queue connection and no lock: nothing runs concurrently.
    """
    job = get_current_job()
    if job is None:
        yield
        return
    hold = setting("DISCUZ_SYNC_LOCK_SECONDS", DEFAULT_HOLD, cast=_seconds(minimum=1))
    wait = setting("DISCUZ_SYNC_LOCK_WAIT", DEFAULT_WAIT, cast=_seconds(minimum=0))
    with contextlib.ExitStack() as held:
        for name in lock_names(username, email):
            lock = job.connection.lock(name, timeout=hold, blocking_timeout=wait, thread_local=False)
            if not lock.acquire():
                raise TransientError("another job is syncing the same forum username or e-mail; retrying later")
            held.callback(_release, lock)
        yield


def _seconds(minimum: float) -> Callable[[object], float]:
    """A cast for a number of seconds, finite and at least ``minimum`` (0 would make redis-py's lock
    last for ever: a worker killed holding it would block that member's syncs for good)."""

    def cast(raw: object) -> float:
        value = float(raw)
        if not math.isfinite(value) or value < minimum:
            raise ValueError(f"expected a number of seconds of at least {minimum:g}")
        return value

    return cast


def _release(lock) -> None:
    try:
        lock.release()
    except LockError:  # it expired first: the sync outlasted DISCUZ_SYNC_LOCK_SECONDS
        log.warning("a forum sync outlasted its lock (DISCUZ_SYNC_LOCK_SECONDS); another job may have run alongside")
