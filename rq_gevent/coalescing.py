"""Script calls of many greenlets sent to Redis together, one round trip for all.

Each job's greenlet sends rq's transactions for its start and its outcome, each as one script call
(:mod:`rq_gevent.transactions`).  With a hundred jobs running, their calls come in bursts: instead of
a hundred pool checkouts, sends and waits for a reply, the calls made while others are on the wire
wait for the next send, and go in one write on one connection; each greenlet then gets its own reply,
in order.  Nothing waits on a timer: a lone call is sent at once.

A lost connection is retried by the connection's own redis-py retry policy, as a pipeline would be,
for the calls not yet answered; when that gives up, each of them raises the error in its greenlet.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any

import gevent
from gevent.event import AsyncResult
from redis.exceptions import NoScriptError, ResponseError

from . import compat

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


class Coalescer:
    """Sends script calls on ``connection_pool``, coalescing those made while a send is under way."""

    def __init__(self, connection_pool: Any) -> None:
        self.connection_pool = connection_pool
        self._waiting: list[_Call] = []
        self._sender: gevent.Greenlet | None = None

    def evalsha(self, sha: str, source: str, *args: Any) -> Any:
        """``EVALSHA sha *args`` (``source`` is loaded if Redis lacks it), sent with other greenlets'."""
        call = _Call(sha, source, args)
        self._waiting.append(call)
        if self._sender is None:
            self._sender = gevent.spawn(self._send_while_waiting)
        return call.result.get()

    def _send_while_waiting(self) -> None:
        try:
            while self._waiting:
                calls, self._waiting = self._waiting, []
                self._send(calls)
        except BaseException as error:  # killed: no caller may wait forever
            _fail(self._waiting, error)
            self._waiting = []
            raise
        finally:
            self._sender = None

    def _send(self, calls: list[_Call]) -> None:
        pool = self.connection_pool
        try:
            connection = compat.pool_connection(pool)
        except Exception as error:
            _fail(calls, error)
            return
        try:
            exchange = functools.partial(self._exchange, connection, calls)
            connection.retry.call_with_retry(exchange, lambda _error: connection.disconnect())
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
            packed = []
            for call in list(unanswered):
                try:
                    packed.append(_pack(connection, ("EVALSHA", call.sha, *call.args)))
                except Exception as error:  # a word Redis cannot take (None, a bool): this call only
                    call.result.set_exception(error)
                    unanswered.remove(call)
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
