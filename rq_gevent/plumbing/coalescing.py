"""Script calls of many greenlets sent to Redis together, pipelined on one connection.

Each job's greenlet sends rq's transactions for its start and its outcome, each as one script call
(:mod:`rq_gevent.plumbing.transactions`).  With a hundred jobs running, their calls come in bursts: instead of
a hundred pool checkouts, sends and waits for a reply, the calls made since the last write go in one
write on one connection, without waiting for the replies to the writes before it; one reader takes
the replies in order and hands each greenlet its own.  Nothing waits on a timer: a lone call is sent
at once.

A lost connection is retried by the connection's own redis-py retry policy, as a pipeline would be,
for the calls not answered yet (on a connection of their own, the pipelined attempt counting as the
first); when that gives up, each of them raises the error in its greenlet.
"""

from __future__ import annotations

import collections
import copy
from dataclasses import dataclass, field
from typing import Any

import gevent
from gevent.event import AsyncResult
from redis.exceptions import NoScriptError, ResponseError

from .. import compat

try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # an optional speed-up of redis-py's
    _hiredis_pack = None


@dataclass
class _Call:
    sha: str
    source: str
    args: tuple[Any, ...]
    result: AsyncResult = field(default_factory=AsyncResult)


@dataclass(eq=False)
class _Channel:
    """A pooled connection while calls are in flight on it, their replies due in this order."""

    connection: Any
    in_flight: collections.deque[_Call] = field(default_factory=collections.deque)
    reader: gevent.Greenlet | None = None
    broken: bool = False


class Coalescer:
    """Sends script calls on ``connection_pool``, those made since the last write in one write."""

    def __init__(self, connection_pool: Any) -> None:
        self.connection_pool = connection_pool
        self._outbox: list[_Call] = []
        self._writer: gevent.Greenlet | None = None
        self._channel: _Channel | None = None
        self._not_loaded: list[_Call] = []

    def evalsha(self, sha: str, source: str, *args: Any) -> Any:
        """``EVALSHA sha *args`` (``source`` is loaded if Redis lacks it), sent with other greenlets'."""
        call = _Call(sha, source, args)
        self._outbox.append(call)
        if self._writer is None:
            self._writer = gevent.spawn(self._write_while_waiting)
        return call.result.get()

    def _write_while_waiting(self) -> None:
        try:
            while self._outbox:
                calls, self._outbox = self._outbox, []
                self._write(calls)
        except BaseException as error:  # killed: no caller may wait forever
            _fail(self._outbox, error)
            self._outbox = []
            raise
        finally:
            self._writer = None

    def _write(self, calls: list[_Call]) -> None:
        channel = self._channel
        if channel is None:
            try:
                connection = compat.pool_connection(self.connection_pool)
            except Exception as error:
                _fail(calls, error)
                return
            channel = self._channel = _Channel(connection)
        packed, sendable = _pack_calls(channel.connection, calls)
        channel.in_flight.extend(sendable)
        if not packed:
            self._release_if_idle(channel)
            return
        try:
            # No health check: it would read a reply here, while the reader reads.
            channel.connection.send_packed_command([b"".join(packed)], check_health=False)
        except BaseException as error:
            self._broken(channel, error)
            if not isinstance(error, Exception):
                raise
            return
        if channel.reader is None and not channel.broken:
            channel.reader = gevent.spawn(self._read, channel)

    def _read(self, channel: _Channel) -> None:
        connection, in_flight = channel.connection, channel.in_flight
        try:
            while in_flight and not channel.broken:
                try:
                    reply = connection.read_response()
                except NoScriptError:  # did not run: sent again once loaded, without waiting for the rest
                    if not self._not_loaded:
                        gevent.spawn(self._send_not_loaded)
                    self._not_loaded.append(in_flight.popleft())
                    continue
                except ResponseError as error:
                    in_flight.popleft().result.set_exception(error)
                    continue
                in_flight.popleft().result.set(reply)
        except BaseException as error:
            self._broken(channel, error)
            if not isinstance(error, Exception):
                raise
        finally:
            channel.reader = None
            self._release_if_idle(channel)

    def _send_not_loaded(self) -> None:
        calls, self._not_loaded = self._not_loaded, []
        self._send(calls)

    def _release_if_idle(self, channel: _Channel) -> None:
        if not channel.in_flight and channel.reader is None and not channel.broken and self._channel is channel:
            self._channel = None
            self.connection_pool.release(channel.connection)

    def _broken(self, channel: _Channel, error: BaseException) -> None:
        """``channel``'s connection failed: what it did not answer goes to :meth:`_send`."""
        if channel.broken:
            return
        channel.broken = True
        if self._channel is channel:
            self._channel = None
        unanswered = list(channel.in_flight)
        channel.in_flight.clear()
        channel.connection.disconnect()
        self.connection_pool.release(channel.connection)
        if unanswered:
            gevent.spawn(self._send, unanswered, error)

    def _send(self, calls: list[_Call], failed_with: BaseException | None = None) -> None:
        """Send ``calls`` on a connection of their own and wait for their replies, retried by the
        connection's retry policy; ``failed_with``: the error of a first attempt that counts as one."""
        pool = self.connection_pool
        try:
            connection = compat.pool_connection(pool)
        except Exception as error:
            _fail(calls, error)
            return
        first_error = [failed_with] if failed_with is not None else []

        def attempt() -> None:
            if first_error:
                raise first_error.pop()
            self._exchange(connection, calls)

        try:
            connection.retry.call_with_retry(attempt, lambda _error: connection.disconnect())
        except BaseException as error:
            connection.disconnect()
            _fail(calls, error)
            if not isinstance(error, Exception):
                raise
        finally:
            pool.release(connection)

    @staticmethod
    def _exchange(connection: Any, calls: list[_Call]) -> None:
        """Send the calls not answered yet and read their replies; a script Redis lacks is loaded,
        and the calls that met NOSCRIPT (which did not run) are sent again."""
        unanswered = [call for call in calls if not call.result.ready()]
        while unanswered:
            packed, unanswered = _pack_calls(connection, unanswered)
            if not packed:
                return
            connection.send_packed_command([b"".join(packed)])
            not_loaded = []
            for call in unanswered:
                try:
                    reply = connection.read_response()
                except NoScriptError:
                    not_loaded.append(call)
                    continue
                except ResponseError as error:
                    call.result.set_exception(error)
                    continue
                call.result.set(reply)
            for source in {call.source for call in not_loaded}:
                connection.send_command("SCRIPT", "LOAD", source)
                connection.read_response()
            unanswered = not_loaded


def _pack_calls(connection: Any, calls: list[_Call]) -> tuple[list[bytes], list[_Call]]:
    """Each call's ``EVALSHA`` packed, and the calls packed; a call with a word Redis cannot take
    (None, a bool) fails on its own."""
    packed, sendable = [], []
    for call in calls:
        try:
            packed.append(_pack(connection, ("EVALSHA", call.sha, *call.args)))
        except Exception as error:
            call.result.set_exception(error)
            continue
        sendable.append(call)
    return packed, sendable


def _pack(connection: Any, command: tuple[Any, ...]) -> bytes:
    """``command`` in Redis's protocol: by hiredis, in C, where redis-py's encoder would give the same
    bytes (UTF-8, strict), instead of a Python call per word (most of a job's CPU in redis-py)."""
    encoder = connection.encoder
    utf8_strict = encoder.encoding.lower() in ("utf-8", "utf8") and encoder.encoding_errors == "strict"
    if _hiredis_pack is None or not utf8_strict:
        return b"".join(connection.pack_command(*command))
    try:
        return _hiredis_pack(command)
    except TypeError:
        return b"".join(connection.pack_command(*command))  # raises redis-py's own error


def _fail(calls: list[_Call], error: BaseException) -> None:
    for call in calls:
        if not call.result.ready():
            call.result.set_exception(_own_copy(error))


def _own_copy(error: BaseException) -> BaseException:
    """An exception for one greenlet to raise: one instance raised in many would chain their tracebacks."""
    try:
        return copy.copy(error)
    except Exception:
        return error
