"""The oldest Redis server a worker runs on: Redis 7.0 (Valkey 7.2 and 8 report 7.2.4).

Redis 6.2 is end of life upstream, and Redis 6.2.14 corrupts its own heap under this worker's
ordinary traffic (a SIGSEGV or a glibc "double free" in Lua's garbage collector, inside the pop
script's HGETALL; see docs/security.md, "Redis servers").  A worker refuses such a server before it
registers, rather than run jobs on a server that may die under them.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import ResponseError

from .options import ConfigError

OLDEST_SERVER = (7, 0, 0)


class UnsupportedServer(ConfigError):
    """The Redis server is older than :data:`OLDEST_SERVER`: restarting the worker cannot help."""


def server_version(connection: Any) -> tuple[int, ...] | None:
    """The ``redis_version`` that ``INFO server`` reports, ``None`` if the server refuses INFO (an ACL)."""
    try:
        reported = str(connection.info("server")["redis_version"])
    except ResponseError:
        return None
    return tuple(int(part) for part in reported.split(".")[:3] if part.isdigit())


def refuse_unsupported_server(connection: Any, log: logging.Logger) -> None:
    """Raise :class:`UnsupportedServer` if ``connection``'s server is older than 7.0.  A server that
    refuses ``INFO`` cannot be checked: that is logged, and the worker goes on."""
    version = server_version(connection)
    if version is None:
        log.warning("Redis refuses INFO: its version is not checked (rq-gevent needs Redis 7.0 or newer)")
        return
    if version < OLDEST_SERVER:
        found = ".".join(map(str, version))
        raise UnsupportedServer(
            f"Redis {found} is older than 7.0, the oldest server rq-gevent runs on (6.2 is end of life, "
            f"and crashes under this worker's traffic); upgrade Redis, or use Valkey"
        )
