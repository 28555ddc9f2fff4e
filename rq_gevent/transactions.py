"""rq's success transaction in one round trip instead of three, and counters that count once.

rq records a success as ``WATCH <dependents key>``, ``SMEMBERS <dependents key>`` (both sent at once,
each a round trip) and then, with no dependents, a ``MULTI``/``EXEC`` transaction.  Most jobs have no
dependents.  Inside :func:`assuming_no_dependents` the worker's pipelines take that for granted: the
WATCH is not sent, the SMEMBERS of the watched key answers "empty" without asking, and the
transaction goes to Redis as one script that applies rq's own commands only if the watched keys
still do not exist, atomically.  If they do, nothing is applied and rq sees the ``WatchError`` a real
WATCH would have raised; it builds the transaction again, and this time it is watched and read for
real.  Any other command sent before the transaction also ends the assumption: the WATCH is sent
first, as rq asked.

The script runs rq's commands as ``EXEC`` would: an error in one is its reply and the others still
run, except a refusal of writes (out of memory, a read-only replica, ...): Redis refuses a script's
writes only until its first one lands, so at a refusal nothing is applied yet, and the script ends
there with that error, as ``EXEC`` aborts.

:meth:`OneTripPipeline.after_execute` runs code once the transaction has applied, never on a
WatchError's first attempt: the worker's in-memory counters add up there.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError, ResponseError, WatchError

# KEYS: the watched keys, all assumed absent.  ARGV: each command as its length, then its words.
_APPLY_IF_ABSENT = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return false end
end
local replies, i, n = {}, 1, #ARGV
while i <= n do
  local words = tonumber(ARGV[i])
  local reply = redis.pcall(unpack(ARGV, i + 1, i + words))
  if type(reply) == 'table' and reply.err then
    -- Redis 6.2 words it "@user_script: 1: -OOM command not allowed ...", with a line end
    local err = reply.err:gsub('^@user_script: %d+: ', ''):gsub('^%-', ''):gsub('%s+$', '')
    for _, refusal in ipairs({'^OOM ', '^READONLY ', '^NOREPLICAS ', '^MISCONF ', 'read only replica'}) do
      if string.find(err, refusal) then return redis.error_reply(err) end
    end
  end
  replies[#replies + 1] = reply
  i = i + words + 1
end
return replies
"""
_APPLY_IF_ABSENT_SHA = hashlib.sha1(_APPLY_IF_ABSENT.encode()).hexdigest()

_assume_no_dependents: contextvars.ContextVar[bool] = contextvars.ContextVar("assume_no_dependents", default=False)


@contextlib.contextmanager
def assuming_no_dependents() -> Iterator[None]:
    """While this runs (in this greenlet), the worker's pipelines assume that a watched key read with
    SMEMBERS is an empty set, and check it when the transaction is applied."""
    token = _assume_no_dependents.set(True)
    try:
        yield
    finally:
        _assume_no_dependents.reset(token)


class OneTripPipeline(Pipeline):
    """A redis-py pipeline that can take an assumed WATCH (see the module's docstring) and runs
    callbacks once its transaction applied."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._assumed_absent: tuple[Any, ...] = ()
        self._optimistic = _assume_no_dependents.get()
        self._after_execute: list[Callable[[], None]] = []

    def after_execute(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the next :meth:`execute` succeeds; dropped if it fails."""
        self._after_execute.append(callback)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        callbacks, self._after_execute = self._after_execute, []
        replies = super().execute(raise_on_error)
        for callback in callbacks:
            callback()
        return replies

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
        super().reset()

    def _execute_transaction(self, connection: Any, commands: Any, raise_on_error: bool) -> list[Any]:
        if not self._assumed_absent:
            return super()._execute_transaction(connection, commands, raise_on_error)
        # A lost connection is then retried by redis-py's policy like any transaction, not turned into
        # the WatchError of a connection that held a real WATCH.
        self.watching = False
        keys = self._assumed_absent
        words: list[Any] = []
        for args, _options in commands:
            words.append(len(args))
            words.extend(args)
        try:
            connection.send_command("EVALSHA", _APPLY_IF_ABSENT_SHA, len(keys), *keys, *words)
            replies = connection.read_response()
        except NoScriptError:
            connection.send_command("EVAL", _APPLY_IF_ABSENT, len(keys), *keys, *words)
            replies = connection.read_response()
        if replies is None:
            self._optimistic = False  # rq builds it again: watch and read for real this time
            self._assumed_absent = ()
            raise WatchError("a key assumed absent exists (the job has dependents)")
        self._assumed_absent = ()
        return self._with_callbacks(commands, replies, raise_on_error)

    def _with_callbacks(self, commands: Any, replies: list[Any], raise_on_error: bool) -> list[Any]:
        """What redis-py's ``_execute_transaction`` makes of EXEC's replies."""
        if len(replies) != len(commands):
            raise ResponseError("Wrong number of response items from the transaction's script")
        if raise_on_error:
            self.raise_first_error(commands, replies)
        data = []
        for reply, (args, options) in zip(replies, commands, strict=True):
            if not isinstance(reply, Exception):
                options.pop("keys", None)
                callback = self.response_callbacks.get(args[0])
                if callback is not None:
                    reply = callback(reply, **options)
            data.append(reply)
        return data


@functools.cache
def _one_trip_client_class(client_class: type[Redis]) -> type[Redis]:
    def pipeline(self: Redis, transaction: bool = True, shard_hint: Any = None) -> OneTripPipeline:
        return OneTripPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)

    return type(client_class.__name__, (client_class,), {"pipeline": pipeline, "one_trip": True})


def one_trip_client(connection: Redis) -> Redis:
    """A client like ``connection`` (same pool, same settings) whose pipelines are
    :class:`OneTripPipeline`."""
    if getattr(connection, "one_trip", False):
        return connection
    client = copy.copy(connection)
    client.__class__ = _one_trip_client_class(type(connection))
    return client


def count_once_applied(pipeline: Any, count: Callable[[], None]) -> None:
    """``count()`` once ``pipeline``'s transaction has applied (at once if it is not ours)."""
    if isinstance(pipeline, OneTripPipeline):
        pipeline.after_execute(count)
    else:
        count()
