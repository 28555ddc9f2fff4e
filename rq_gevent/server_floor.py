"""The oldest Redis server a worker runs on: Redis 7.0 (Valkey 7.2 and 8 report 7.2.4).

Redis 6.2 is end of life upstream, and Redis 6.2.14 corrupts its own heap under this worker's
ordinary traffic (a SIGSEGV or a glibc "double free" in Lua's garbage collector, inside the pop
script's HGETALL; see docs/security.md, "Redis servers").  A worker refuses such a server before it
registers, rather than run jobs on a server that may die under them.

The version comes from ``INFO server`` (``redis_version``), or, when the worker's ACL user may not run
INFO (it is in ``@dangerous``, which least-privilege users leave out), from ``HELLO``: answered to
every user (ACL rules cannot deny it, as they cannot deny AUTH), and sent without arguments so that
the connection keeps its protocol (``HELLO 2`` would switch a RESP3 client to RESP2, ``HELLO 3`` a
RESP2 one to RESP3).  A server that answers neither (older than 6.0, which has no HELLO, or a proxy,
with INFO refused) is refused too: its version cannot be known, and an unknown server is not a
supported one.  Through Sentinel both questions go to the primary the worker uses (its pool's
connections lead nowhere else).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from redis.exceptions import ResponseError

from .options import ConfigError

OLDEST_SERVER = (7, 0, 0)

_NUMERIC_PREFIX = re.compile(r"\d+")


class UnsupportedServer(ConfigError):
    """The Redis server is older than :data:`OLDEST_SERVER`, or will not say its version: restarting
    the worker cannot help."""


def parse_version(reported: Any) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` of a version string, missing parts taken as 0 and each part read up to
    its first non-digit (``"7.0"`` and ``"7.0.0-rc1"`` are both ``(7, 0, 0)``); ``None`` if it does not
    start with a number.  A number counts as its text."""
    if isinstance(reported, bytes):
        reported = reported.decode("ascii", errors="replace")
    elif isinstance(reported, (int, float)) and not isinstance(reported, bool):
        reported = str(reported)  # redis-py's INFO parser makes "7.0" a float, "7" an int
    if not isinstance(reported, str):
        return None
    numbers: list[int] = []
    for part in reported.strip().split(".")[:3]:
        digits = _NUMERIC_PREFIX.match(part)
        if digits is None:
            break
        numbers.append(int(digits.group()))
        if digits.end() != len(part):  # "0-rc1": what follows is not a version part
            break
    if not numbers:
        return None
    major, minor, patch = (numbers + [0, 0])[:3]
    return (major, minor, patch)


def _info_version(connection: Any) -> tuple[int, int, int] | None:
    try:
        info = connection.info("server")
    except ResponseError:  # NOPERM (an ACL without INFO), or INFO renamed away
        return None
    return parse_version(info.get("redis_version")) if isinstance(info, dict) else None


def _hello_version(connection: Any) -> tuple[int, int, int] | None:
    try:
        reply = connection.execute_command("HELLO")  # no protocol argument: the connection keeps its own
    except ResponseError:  # NOPERM, or a server before 6.0 that has no HELLO
        return None
    if isinstance(reply, (list, tuple)):  # RESP2: a flat list of names and values
        reply = dict(zip(reply[::2], reply[1::2], strict=False))
    if not isinstance(reply, dict):
        return None
    for key, value in reply.items():
        if (key.decode(errors="replace") if isinstance(key, bytes) else key) == "version":
            return parse_version(value)
    return None


def server_version(connection: Any, log: logging.Logger | None = None) -> tuple[int, int, int] | None:
    """The server's version, from ``INFO server`` or else ``HELLO``; ``None`` if it answers neither."""
    version = _info_version(connection)
    if version is None:
        version = _hello_version(connection)
        if log is not None and version is not None:
            log.debug("Redis refuses INFO or does not say its version there; HELLO says %s", version)
    return version


def refuse_unsupported_server(connection: Any, log: logging.Logger) -> None:
    """Raise :class:`UnsupportedServer` if ``connection``'s server is older than 7.0, or if it will not
    say its version (neither ``INFO`` nor ``HELLO`` answered)."""
    version = server_version(connection, log)
    if version is None:
        raise UnsupportedServer(
            "Redis answers neither INFO nor HELLO with its version, so rq-gevent cannot check it is 7.0 or "
            "newer (a server older than 6.0 has no HELLO); allow the worker's ACL user INFO (+info)"
        )
    if version < OLDEST_SERVER:
        found = ".".join(map(str, version))
        raise UnsupportedServer(
            f"Redis {found} is older than 7.0, the oldest server rq-gevent runs on (6.2 is end of life, "
            f"and crashes under this worker's traffic); upgrade Redis, or use Valkey"
        )
