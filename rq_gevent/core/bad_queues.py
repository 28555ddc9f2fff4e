"""Queues whose keys hold the wrong type of value: skipped for a while, then looked at again.

A queue key that is not a list (``SET rq:queue:mail x``, a hash, a zset), or such an ``:intermediate``
list or failed registry, makes every pop over that queue fail with WRONGTYPE.  That is bad input, not
a broken worker: after a pop Redis refuses, each key the pop touches is asked its TYPE; a queue with a
key of the wrong type is skipped for ``skip_seconds`` (one ERROR line per skip, naming the key and its
type) while the worker keeps popping from its other queues, then it is popped from again.  A refusal
with no such key behind it is not bad input: it is raised.

rq's maintenance keeps a :class:`BadQueues` of its own, for the keys a queue's clean-up touches
(:func:`rq_gevent.compat.maintenance_keys`; :mod:`rq_gevent.core.maintenance`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from rq.utils import as_text


def pop_keys(queue: Any) -> list[tuple[str, str]]:
    """The keys a pop from ``queue`` touches, each with the only type it may have (or be absent)."""
    return [
        (queue.key, "list"),
        (queue.intermediate_queue_key, "list"),
        (queue.failed_job_registry.key, "zset"),  # a popped job rq cannot load is failed there
    ]


class BadQueues:
    def __init__(
        self,
        worker_name: str,
        log: logging.Logger,
        skip_seconds: float,
        doing: str = "pop from",
        expected_types: Callable[[Any], list[tuple[str, str]]] = pop_keys,
    ) -> None:
        self.worker_name = worker_name
        self.log = log
        self.skip_seconds = skip_seconds
        self.doing = doing  # what cannot be done with a bad queue, for the log: "cannot <doing> queue ..."
        self.expected_types = expected_types  # queue -> the keys ``doing`` touches, each with its type
        self._skipped_until: dict[str, float] = {}  # queue key -> time.monotonic() of the next look

    def usable(self, queues: list[Any]) -> list[Any]:
        """``queues`` but those skipped now, in their order."""
        if not self._skipped_until:
            return queues
        now = time.monotonic()
        for key, until in list(self._skipped_until.items()):
            if until <= now:
                del self._skipped_until[key]
        return [queue for queue in queues if queue.key not in self._skipped_until]

    def seconds_to_next_look(self) -> float | None:
        """Seconds until the first skipped queue may be popped from again; ``None`` if none is skipped."""
        if not self._skipped_until:
            return None
        return max(0.0, min(self._skipped_until.values()) - time.monotonic())

    def skip_any_found(self, connection: Any, queues: list[Any]) -> bool:
        """After Redis refused a pop (or a clean-up, as ``doing`` says) over ``queues``: skip each of
        them with a key of the wrong type, logged; False if there is none (the refusal has another cause)."""
        expected = [(queue, key, wanted) for queue in queues for key, wanted in self.expected_types(queue)]
        with connection.pipeline(transaction=False) as pipeline:
            for _, key, _ in expected:
                pipeline.type(key)
            found = [as_text(key_type) for key_type in pipeline.execute()]
        wrong: dict[str, list[str]] = {}
        by_key = {queue.key: queue for queue in queues}
        for (queue, key, wanted), key_type in zip(expected, found, strict=True):
            if key_type not in (wanted, "none"):
                wrong.setdefault(queue.key, []).append(f"{key} is a {key_type}, not a {wanted}")
        for queue_key, problems in wrong.items():
            self._skipped_until[queue_key] = time.monotonic() + self.skip_seconds
            self.log.error("Worker %s: cannot %s queue %s: %s; skipping it for %.0f s, then looking again",
                           self.worker_name, self.doing, by_key[queue_key].name, "; ".join(problems),
                           self.skip_seconds)  # fmt: skip
        return bool(wrong)
