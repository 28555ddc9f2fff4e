"""Redis connections for a worker that runs many jobs at once.

* The shared pool must hold one connection per job greenlet plus the worker's own (heartbeats,
  pub/sub commands, maintenance, scheduler): redis-py 8 caps a pool at 100 by default and then
  raises ``MaxConnectionsError``.
* The blocking dequeue (BLMOVE/BLPOP) gets a client of its own, so that a long block never holds a
  pool connection, its socket timeout is longer than its block timeout (a silently dead connection
  is noticed), TCP keepalive is on, and a shutdown can wake it with ``CLIENT UNBLOCK``.
* A job's own code gets a client of its own too, with rq's longer socket timeout.  Both reach Redis
  the way the worker's connection does, through Sentinel included.
* **A path that dies kills every connection on it.**  When a NAT or firewall forgets the path, each
  idle connection still looks open and would wait out its own socket timeout when next used, one
  after another (20 s each for the worker's, ``worker_ttl - 5`` for a job's).  The first socket
  timeout on any of the worker's clients drops the idle connections of all of them; the next
  command on each opens a fresh one.
"""

from __future__ import annotations

import functools
import logging
import re
import weakref
from typing import Any

from redis import BlockingConnectionPool, ConnectionPool, Redis, UnixDomainSocketConnection
from redis.exceptions import (
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TimeoutError,
)
from redis.sentinel import SentinelConnectionPool

from ..words import plural

log = logging.getLogger("rq.worker")

# Connections a worker uses besides its jobs: heartbeats, the pub/sub listener, maintenance,
# the scheduler and the main loop, with room for a job's own callbacks.
WORKER_OVERHEAD_CONNECTIONS = 8


def ensure_pool_capacity(connection: Redis, jobs: int) -> None:
    """Grow ``connection``'s pool so ``jobs`` greenlets never hit its cap."""
    pool = connection.connection_pool
    needed = jobs + WORKER_OVERHEAD_CONNECTIONS
    current = getattr(pool, "max_connections", None)
    if current is None or current >= needed:
        return
    if isinstance(pool, BlockingConnectionPool):
        # Its slots are preallocated; jobs will wait for a free connection rather than fail.
        log.warning(
            "Redis BlockingConnectionPool holds %s for %s; jobs will wait for "
            "connections. Give it max_connections >= %d.",
            plural(current, "connection"),
            plural(jobs, "concurrent job"),
            needed,
        )
        return
    pool.max_connections = needed


def reconnect_if_timeout_changed(connection: Redis, socket_timeout_before: float | None) -> None:
    """rq's worker raises the pool's socket timeout for connections made from then on; one already
    open (the one that checked Redis at start-up) would still wait forever on a dead path."""
    pool = connection.connection_pool
    if pool.connection_kwargs.get("socket_timeout") != socket_timeout_before:
        pool.reset()


def socket_timeout(connection: Redis) -> float | None:
    return connection.connection_pool.connection_kwargs.get("socket_timeout")


class PrimaryCutOff(ConnectionError):
    """The server refuses writes for now (a primary cut off from its replicas, a replica): a failover
    may be under way; try again soon."""


class ServerBusy(ConnectionError):
    """The server runs a script (or a module's command) past ``busy-reply-threshold`` and answers every
    other command ``BUSY`` until it ends or is killed; the command did not run: wait it out."""


class _FollowsFailover:
    """A connection that treats a server refusing writes, for want of replicas (NOREPLICAS, with
    ``min-replicas-to-write``: cut off from them, as when a replica was promoted elsewhere) or as a
    replica (READONLY), as a connection lost: it is dropped, so that the next one asks the sentinels
    again (or reaches whatever server the address leads to now), and :class:`PrimaryCutOff` raised,
    which the worker waits out as any outage.  Either refusal inside a script's error counts too, and
    so does a refusal for want of memory, raised as the ``OutOfMemoryError`` it is (the connection
    kept): Redis 6.2 words it "Error running script (...): @user_script: 11: -OOM command not
    allowed ...", where redis-py sees a plain ``ResponseError`` (Redis 7 starts the message with OOM).

    Without it a pooled Sentinel connection keeps writing to a demoted primary until Sentinel converts
    it (up to 10 s after a ``SENTINEL FAILOVER``), and those writes are discarded; and on any connection
    the refused outcome of a job that ran would be taken for an error and the job failed."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except ResponseError as error:
            # redis-py words READONLY its own way; a script's error carries a refusal inside.
            text = str(error)
            refusal = (
                "READONLY"
                if isinstance(error, ReadOnlyError)
                else next((word for word in ("NOREPLICAS", "READONLY") if word in text), None)
            )
            if refusal is not None:
                self.disconnect()  # type: ignore[attr-defined]
                raise PrimaryCutOff(f"Redis refuses writes ({refusal}: a failover?)") from None
            if "-OOM " in text and not isinstance(error, OutOfMemoryError):
                raise OutOfMemoryError(text) from None
            if text.startswith("BUSY ") or "-BUSY " in text:
                raise ServerBusy(text) from None
            raise


@functools.cache
def _following_failovers(connection_class: type) -> type:
    return type(connection_class.__name__, (_FollowsFailover, connection_class), {})


def follow_failovers(connection: Redis) -> None:
    """Make the new connections of ``connection``'s pool treat refused writes as :class:`_FollowsFailover`
    does (a Sentinel pool's, and a plain one's)."""
    pool = connection.connection_pool
    if not issubclass(pool.connection_class, _FollowsFailover):
        pool.connection_class = _following_failovers(pool.connection_class)


# The pools of every client made by :func:`share_path` or :func:`client_like` from one, in this process.
_ON_ONE_PATH: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()


class _DropsDeadPath:
    """A connection whose socket timeout drops the idle connections of every pool on its path."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except TimeoutError:
            for pool in list(_ON_ONE_PATH):
                pool.disconnect(inuse_connections=False)
            raise


@functools.cache
def _dropping_dead_path(connection_class: type) -> type:
    return type(connection_class.__name__, (_DropsDeadPath, connection_class), {})


def share_path(connection: Redis) -> None:
    """Make ``connection``'s pool one of those whose idle connections go at the first socket timeout on
    any of them (its connections made from now on notice it)."""
    pool = connection.connection_pool
    if not issubclass(pool.connection_class, _DropsDeadPath):
        pool.connection_class = _dropping_dead_path(pool.connection_class)
    _ON_ONE_PATH.add(pool)


def dequeue_client(connection: Redis, client_name: str, socket_timeout: float) -> Redis:
    """A client with one connection of its own, for blocking pops only.  TCP keepalive where the
    connection is TCP (plain, TLS or through Sentinel): a unix socket has no such option (its
    connection class refuses it), and no network path to lose silently."""
    keepalive = {} if over_unix_socket(connection) else {"socket_keepalive": True}
    return client_like(
        connection, max_connections=2, socket_timeout=socket_timeout, client_name=client_name, **keepalive
    )


def over_unix_socket(connection: Redis) -> bool:
    """Whether ``connection`` reaches Redis over a unix socket (``unix://``), where TCP options such as
    ``socket_keepalive`` do not apply."""
    return issubclass(connection.connection_pool.connection_class, UnixDomainSocketConnection)


def jobs_client(connection: Redis, socket_timeout: float, max_connections: int) -> Redis:
    """The client a job's own code gets as ``get_current_job().connection``: the worker's settings with
    rq's socket timeout (``worker_ttl - 5``), so a job may block in Redis as long as under rq's worker.
    The worker's own connections keep their shorter timeout, to notice a dead path quickly."""
    return client_like(connection, max_connections=max_connections, socket_timeout=socket_timeout)


def client_like(connection: Redis, max_connections: int, **overrides: Any) -> Redis:
    """A client of ``connection``'s class on a pool of its own that reaches the same server the same
    way (a Sentinel pool keeps asking its sentinels for the primary), with ``overrides`` applied."""
    pool = connection.connection_pool
    kwargs = {key: value for key, value in pool.connection_kwargs.items() if key != "connection_pool"}
    kwargs.update(overrides)
    if isinstance(pool, SentinelConnectionPool):
        own_pool: ConnectionPool = SentinelConnectionPool(
            pool.service_name,
            pool.sentinel_manager,
            is_master=pool.is_master,
            check_connection=pool.check_connection,
            connection_class=pool.connection_class,
            max_connections=max_connections,
            **kwargs,
        )
    else:
        own_pool = ConnectionPool(connection_class=pool.connection_class, max_connections=max_connections, **kwargs)
    client = connection.__class__(connection_pool=own_pool)
    if pool in _ON_ONE_PATH:
        share_path(client)
    return client


def unblock_clients(connection: Redis, client_name: str) -> bool:
    """Wake every connection named ``client_name`` out of a blocking command, as if it timed out.

    Returns False when the server refuses (CLIENT disabled by ACL or a managed Redis), in which case
    the blocked pop simply runs until its own timeout.
    """
    try:
        clients = connection.client_list()
        for client in clients:
            if client.get("name") == client_name:
                connection.client_unblock(int(client["id"]))
    except RedisError as exc:
        log.warning("Could not wake the blocked dequeue (%s); it ends at its own timeout.", exc)
        return False
    return True


def describe(connection: Redis) -> str:
    """Where ``connection`` points, never with its credentials."""
    pool = connection.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        sentinels = ", ".join(
            f"{sentinel.connection_pool.connection_kwargs.get('host', 'localhost')}:"
            f"{sentinel.connection_pool.connection_kwargs.get('port', 26379)}"
            for sentinel in pool.sentinel_manager.sentinels
        )
        return f"master {pool.service_name!r} of Sentinel {sentinels}"
    kwargs = pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: whatever stands between the scheme and the last
    ``@`` (a password may hold ``?``, ``/``, ``#`` or ``@`` unencoded, where urlsplit would cut it),
    and ``password=`` query parameters."""
    at = url.rfind("@")
    if at != -1:
        scheme = _SCHEME.match(url)
        start = scheme.end() if scheme else 0
        user, colon, _password = url[start:at].partition(":")
        if not _PLAIN_USER.fullmatch(user):
            shown = "***"
        else:
            shown = f"{user}:***" if colon else user  # a user name alone is no secret
        url = f"{url[:start]}{shown}@{url[at + 1 :]}"
    return _PASSWORD_PARAMETER.sub(r"\1***", url)


_PASSWORD_PARAMETER = re.compile(r"([?&;]password=)[^&;#]*", re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(?://)?")
_PLAIN_USER = re.compile(r"[\w.-]*")
