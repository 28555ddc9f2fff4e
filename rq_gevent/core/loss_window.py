"""Which recorded outcomes the Redis server could still lose, asked of the server once a second.

A primary acknowledges a write before its replicas have it: a failover loses what none of them has
yet.  An append-only file synced every second loses up to that second (two, on a slow disk) in a
crash.  :mod:`rq_gevent.core.outcomes` keeps each outcome it recorded while it can still be lost so,
to record it again after an outage.  How long that is, from ``INFO replication`` and ``INFO persistence``:

* a primary with replicas: until every replica acknowledged the offset the primary had reached after
  the outcome (its ``master_repl_offset``; each replica's ``offset``, which a replica acknowledges
  every second), and, with an append-only file, for its last ``FSYNC_SECONDS`` as well (a restart
  without a failover replays the file, and the replicas sync again from it).  A replica not
  ``online``, or fewer replicas than this primary had (a link cut: that replica may still be
  promoted), leaves every outcome kept, within the recheck's time and count bounds;
* a server without replicas (none in the last hour: ``repl_backlog_active`` is 0) with AOF on: the last
  ``FSYNC_SECONDS``;
* a server with neither: nothing.  Its crash loses every write since its last snapshot, the jobs'
  enqueues and starts with their outcomes: recording some outcomes again would not restore that.  A
  replica that attaches is seen at the next poll: the outcomes of the second before are not kept
  (Sentinel, which learns of replicas every 10 s, does not promote one that young);
* a server whose INFO does not say (a proxy, a renamed command): every outcome within the bounds.

An outcome recorded before this primary was first seen (before a failover) is never taken as safe here.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import gevent
import redis.exceptions

from .background import Background

POLL_SECONDS = 1.0
# How far back an append-only file synced every second may lose writes in a crash.
FSYNC_SECONDS = 3.0
# Polls still waiting for every replica's acknowledgement (beyond them, outcomes are kept anyway).
PENDING_POLLS = 64


class LossWindow(Background):
    """``keeps_outcomes``: whether an outcome recorded now may need recording again;
    ``can_lose(at)``: whether one recorded at ``at`` (``time.monotonic()``) still can be lost.
    ``changed()`` is called after each poll that moved what is safe."""

    def __init__(self, connection: Any, log: logging.Logger, name: str, changed: Callable[[], None]) -> None:
        self._connection, self._log, self._name, self._changed = connection, log, name, changed
        self.keeps_outcomes = True
        self._primary: str | None = None  # the replication id the server answered with
        self._primary_since = math.inf  # when this process first saw that primary
        self._safe_before = -math.inf
        self._acknowledged_before = -math.inf  # every replica has the outcomes recorded before this
        self._most_replicas = 0
        self._pending: collections.deque[tuple[float, int]] = collections.deque(maxlen=PENDING_POLLS)
        self._unanswered_said = False

    def can_lose(self, at: float) -> bool:
        return at < self._primary_since or at >= self._safe_before

    def start(self) -> None:
        self._poll_whatever_happens()  # before the first job: its outcome is kept, or not, as it should be
        super().start()

    def run(self) -> None:
        while True:
            gevent.sleep(POLL_SECONDS)
            self._poll_whatever_happens()

    def _poll_whatever_happens(self) -> None:
        try:
            self.poll()
        except Exception:  # an answer this code does not expect: keep every outcome, poll on
            if not self._unanswered_said:
                self._unanswered_said = True
                self._log.exception("Worker %s: could not tell which outcomes Redis can still lose", self._name)
            self._unknown()

    def poll(self) -> None:
        asked_at = time.monotonic()
        try:
            with self._connection.pipeline(transaction=False) as pipeline:
                replication, persistence = pipeline.info("replication").info("persistence").execute()
        except redis.exceptions.ResponseError as exc:  # INFO refused (an ACL, a proxy): assume the worst
            if not self._unanswered_said:
                self._unanswered_said = True
                self._log.info("Worker %s: Redis answers no INFO (%s): every outcome of the last seconds is kept "
                               "to check after an outage", self._name, exc)  # fmt: skip
            self._unknown()
            return
        except redis.exceptions.RedisError:
            return  # Redis away: an outage, whose outcomes are checked once it answers
        before = (self.keeps_outcomes, self._safe_before)
        self._learn(asked_at, replication, persistence)
        if (self.keeps_outcomes, self._safe_before) != before:
            self._changed()

    def _unknown(self) -> None:
        self.keeps_outcomes, self._primary, self._primary_since = True, None, math.inf

    def _learn(self, asked_at: float, replication: dict[str, Any], persistence: dict[str, Any]) -> None:
        if replication.get("role") != "master" or "master_repl_offset" not in replication:
            self._unknown()
            return
        primary = str(replication.get("master_replid"))
        if primary != self._primary:
            self._primary, self._primary_since, self._acknowledged_before = primary, asked_at, -math.inf
            self._most_replicas = 0
            self._pending.clear()
        # Valkey lists a replica in a full sync twice: the connection of its snapshot too.
        replicas = [
            value
            for key, value in replication.items()
            if key.startswith("slave") and isinstance(value, dict) and value.get("type") != "rdb-channel"
        ]
        # A restart without a failover replays the append-only file, and replicas sync again from it:
        # what its last fsync missed is lost, replicas or not.  Without the file, a restart loses every
        # write since the last snapshot, the jobs' starts with their outcomes: nothing to record again.
        aof = bool(persistence.get("aof_enabled"))
        persisted_before = asked_at - FSYNC_SECONDS if aof else asked_at
        if not replicas and not replication.get("repl_backlog_active"):
            self.keeps_outcomes, self._safe_before = aof, persisted_before
            return
        self.keeps_outcomes = True
        self._pending.append((asked_at, int(replication["master_repl_offset"])))
        self._acknowledge(replicas)
        self._safe_before = min(self._acknowledged_before, persisted_before)

    def _acknowledge(self, replicas: list[dict[str, Any]]) -> None:
        """Move ``_acknowledged_before`` to the last poll whose offset every replica has, if they all follow."""
        addresses = {(replica.get("ip"), replica.get("port")) for replica in replicas}
        self._most_replicas = max(self._most_replicas, len(addresses))
        if not replicas or len(addresses) < self._most_replicas or any(r.get("state") != "online" for r in replicas):
            return
        acknowledged = min(int(replica.get("offset", -1)) for replica in replicas)
        while self._pending and self._pending[0][1] <= acknowledged:
            self._acknowledged_before = self._pending.popleft()[0]
