"""rq's transactions for a job's start and outcome as one script call each, coalesced across
greenlets, and rq's success without its WATCH round trips; counters that count once.

* **One script call.**  Inside :func:`one_trip` (the start in :mod:`rq_gevent.plumbing.job_writes`, the
  outcomes in the worker) a transaction of the worker's client goes to Redis as one call of a script
  that applies rq's own commands, sent with the calls of other greenlets in one round trip
  (:mod:`rq_gevent.plumbing.coalescing`).  The script runs them as ``EXEC`` would: an error in one is its reply
  and the others still run, except a refusal of writes (out of memory, a read-only replica, ...):
  Redis refuses a script's writes only until its first one lands, so at a refusal nothing is applied
  yet, and the script ends there with that error, as ``EXEC`` aborts.
* **No dependents assumed.**  rq records a success as ``WATCH <dependents key>``, ``SMEMBERS
  <dependents key>`` (each a round trip) and then, with no dependents, the transaction.  Most jobs
  have none: with ``one_trip(assume_no_dependents=True)`` the WATCH is not sent, the SMEMBERS of the
  watched key answers "empty" without asking, and the script applies rq's commands only if the
  watched keys still do not exist, atomically.  If they do, nothing is applied and rq gets the
  ``WatchError`` a real WATCH would have raised; it builds the transaction again, and this time it
  is watched and read for real.  Any other command sent before the transaction also ends the
  assumption: the WATCH is sent first, as rq asked.
* :meth:`OneTripPipeline.after_execute` runs code once the transaction has applied, never on a
  WatchError's first attempt: the worker's in-memory counters add up there.
* :func:`only_if_not_withdrawn`: the transaction applies only if a job still exists and was not
  cancelled or taken in hand elsewhere (``lua/not_withdrawn.lua``), checked by the same
  script; else nothing applies and :class:`JobWithdrawn` is raised.
  A job's start uses it: rq's ``Job.cancel()`` and ``delete()`` do not look in ``:intermediate``,
  where a popped job waits.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
from collections.abc import Callable, Iterator
from typing import Any

from redis import Redis
from redis.client import CaseInsensitiveDict, Pipeline
from redis.exceptions import ResponseError, WatchError

from .. import compat
from . import lua
from .coalescing import Coalescer

_APPLY_IF_ABSENT = lua.load("apply_if_absent")


class JobWithdrawn(Exception):
    """A transaction required a job still queued, and it was withdrawn (deleted, cancelled, or started
    or ended elsewhere): nothing was applied."""


# Inside :func:`one_trip`: None outside, else whether to assume no dependents.
_one_trip: contextvars.ContextVar[bool | None] = contextvars.ContextVar("one_trip", default=None)


@contextlib.contextmanager
def one_trip(assume_no_dependents: bool = False) -> Iterator[None]:
    """The worker's transactions begun here (in this greenlet) go to Redis as one script call each,
    coalesced with other greenlets' (:mod:`rq_gevent.plumbing.coalescing`).  ``assume_no_dependents``: a
    watched key read with SMEMBERS is taken for an empty set, and checked when the script runs."""
    token = _one_trip.set(assume_no_dependents)
    try:
        yield
    finally:
        _one_trip.reset(token)


class OneTripPipeline(Pipeline):
    """A redis-py pipeline whose transaction, begun inside :func:`one_trip` on the worker's client,
    is one coalesced script call, possibly with an assumed WATCH; and that runs callbacks once its
    transaction applied."""

    def __init__(self, *args: Any, coalescer: Coalescer | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        mode = _one_trip.get()
        self._coalescer = coalescer if mode is not None else None
        self._optimistic = bool(mode) and self._coalescer is not None
        self._assumed_absent: tuple[Any, ...] = ()
        self._checked_jobs: tuple[Any, ...] = ()
        self._after_execute: list[Callable[[], None]] = []

    def after_execute(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the next :meth:`execute` succeeds; dropped if it fails."""
        self._after_execute.append(callback)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        callbacks, self._after_execute = self._after_execute, []
        if self._coalescer is not None and self._in_one_script():
            replies = self._execute_as_script(raise_on_error)
        elif self._checked_jobs:
            self.reset()
            raise RuntimeError("a transaction that must check a job was not withdrawn is not one script call")
        elif self._assumed_absent:
            # Only a script checks the assumption: let rq build it again, watched for real.
            self._optimistic = False
            self.reset()
            raise WatchError("an assumed WATCH cannot be checked here")
        else:
            replies = super().execute(raise_on_error)
        for callback in callbacks:
            callback()
        return replies

    def _in_one_script(self) -> bool:
        return bool(
            (self.transaction or self.explicit_transaction)
            and self.command_stack
            and not self.scripts
            and (self._assumed_absent or not self.watching)
        )

    def watch(self, *names: Any) -> Any:
        if self._optimistic and names and not self.watching and not self.explicit_transaction:
            self._assumed_absent = names
            self.watching = True
            return True
        return super().watch(*names)

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        if self._assumed_absent:
            if args[0] == "SMEMBERS" and len(args) == 2 and args[1] in self._assumed_absent:
                return set()
            self._watch_for_real()
        return super().immediate_execute_command(*args, **options)

    def _watch_for_real(self) -> None:
        names, self._assumed_absent = self._assumed_absent, ()
        self.watching = False
        super().immediate_execute_command("WATCH", *names)

    def reset(self) -> None:
        if self._assumed_absent:
            self._assumed_absent = ()
            self.watching = False  # nothing was watched on the connection: no UNWATCH to send
        self._after_execute = []
        self._checked_jobs = ()
        super().reset()

    def _execute_as_script(self, raise_on_error: bool) -> list[Any]:
        assert self._coalescer is not None
        commands, keys, jobs = self.command_stack, (*self._assumed_absent, *self._checked_jobs), self._checked_jobs
        words: list[Any] = [len(jobs)]
        for args, _options in commands:
            words.append(len(args))
            words.extend(args)
        try:
            replies = self._coalescer.evalsha(_APPLY_IF_ABSENT.sha, _APPLY_IF_ABSENT.source, len(keys), *keys, *words)
        finally:
            self.reset()
        if replies is None:
            self._optimistic = False  # rq builds it again: watch and read for real this time
            raise WatchError("a key assumed absent exists (the job has dependents)")
        if replies == -1:
            raise JobWithdrawn(f"{', '.join(map(str, jobs))}: cancelled or deleted")
        return self._with_callbacks(commands, replies, raise_on_error)

    def _with_callbacks(self, commands: Any, replies: list[Any], raise_on_error: bool) -> list[Any]:
        """What redis-py's ``_execute_transaction`` makes of EXEC's replies, as a RESP2 connection
        would: a script's commands answer in RESP2 whatever the client speaks (redis-py 8 speaks
        RESP3, where HGETALL needs no callback and would stay a flat list)."""
        if len(replies) != len(commands):
            raise ResponseError("Wrong number of response items from the transaction's script")
        if raise_on_error:
            self.raise_first_error(commands, replies)
        data = []
        for reply, (args, options) in zip(replies, commands, strict=True):
            if not isinstance(reply, Exception):
                options.pop("keys", None)
                callback = _script_reply_callbacks(self.connection_pool).get(args[0])
                if callback is not None:
                    reply = callback(reply, **options)
            data.append(reply)
        return data


def _script_reply_callbacks(pool: Any) -> Any:
    """The reply callbacks of a RESP2 client with the settings of ``pool``'s clients."""
    return _resp2_callbacks(bool(pool.connection_kwargs.get("legacy_responses", True)))


@functools.cache
def _resp2_callbacks(legacy_responses: bool) -> Any:
    return CaseInsensitiveDict(compat.resp2_callbacks(legacy_responses))


@functools.cache
def _one_trip_client_class(client_class: type[Redis]) -> type[Redis]:
    def pipeline(self: Any, transaction: bool = True, shard_hint: Any = None) -> OneTripPipeline:
        return OneTripPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint, coalescer=self.coalescer
        )

    return type(client_class.__name__, (client_class,), {"pipeline": pipeline, "coalescer": None})


def one_trip_client(connection: Redis) -> Redis:
    """A client like ``connection`` (same pool, same settings) whose transactions begun inside
    :func:`one_trip` are coalesced script calls.  Clients made from it like any redis-py client (a
    job's own) have :class:`OneTripPipeline` pipelines that behave as redis-py's."""
    if getattr(connection, "coalescer", None) is not None:
        return connection
    client: Any = copy.copy(connection)
    client.__class__ = _one_trip_client_class(type(connection))
    # The pool stays the app's: collecting this copy (with the worker) must not close it under the
    # app's commands in flight, as redis-py's __del__ does for a client that made its own pool.
    client.auto_close_connection_pool = False
    client.coalescer = Coalescer(connection.connection_pool)
    return client


def only_if_not_withdrawn(pipeline: Any, job_key: str) -> None:
    """``pipeline``'s transaction applies only if the job hash ``job_key`` exists, neither cancelled nor
    started or ended (``lua/not_withdrawn.lua``).  Only a pipeline made inside :func:`one_trip` can check it:
    any other is refused here, and one whose transaction cannot be one script call (it watches for real)
    fails at ``execute``."""
    if not isinstance(pipeline, OneTripPipeline) or pipeline._coalescer is None:
        raise TypeError("only_if_not_withdrawn needs a pipeline of the worker's client made inside one_trip()")
    pipeline._checked_jobs = (*pipeline._checked_jobs, job_key)


def count_once_applied(pipeline: Any, count: Callable[[], None]) -> None:
    """``count()`` once ``pipeline``'s transaction has applied (at once if it is not ours)."""
    if isinstance(pipeline, OneTripPipeline):
        pipeline.after_execute(count)
    else:
        count()
