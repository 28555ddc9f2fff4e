"""Every key and value of a Redis, for tests that search it for what must not be stored there."""

from __future__ import annotations

import base64
import zlib


def redis_dump(connection, skip_fields: tuple[bytes, ...] = ()) -> bytes:
    """Every key and value in Redis (strings, hashes, lists, sets, sorted sets, streams), with rq's
    packed fields also unpacked (:func:`unpacked`); a hash's ``skip_fields`` left out."""
    chunks: list[bytes] = []
    for key in connection.scan_iter(count=1000):
        kind = connection.type(key).decode()
        values: list[bytes] = [key]
        if kind == "string":
            values.append(connection.get(key))
        elif kind == "hash":
            for field, value in connection.hgetall(key).items():
                if field not in skip_fields:
                    values += [field, value]
        elif kind == "list":
            values += connection.lrange(key, 0, -1)
        elif kind == "set":
            values += list(connection.smembers(key))
        elif kind == "zset":
            values += [member for member, _ in connection.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for _, fields in connection.xrange(key):
                for field, value in fields.items():
                    values += [field, value]
        for value in values:
            chunks += [value, *unpacked(value)]
    return b"\n".join(chunks)


def unpacked(value: bytes) -> list[bytes]:
    """``value`` unpacked as rq packs fields: zlib (job hashes), base64 of zlib (a result's exc_string)."""
    found = []
    for unpack in (zlib.decompress, lambda raw: zlib.decompress(base64.b64decode(raw, validate=True))):
        try:
            found.append(unpack(value))
        except (zlib.error, ValueError):
            pass
    return found


def key_values(connection, match: str = "*") -> dict[bytes, tuple[str, object]]:
    """Each key matching ``match``, with its type and its value as the commands that read it answer:
    a string's bytes, a hash's dict, a list, a set sorted, a sorted set's (member, score) pairs in
    order, a stream's (id, fields) entries."""
    values: dict[bytes, tuple[str, object]] = {}
    for key in sorted(connection.scan_iter(match=match, count=1000)):
        kind = connection.type(key).decode()
        if kind == "string":
            value: object = connection.get(key)
        elif kind == "hash":
            value = connection.hgetall(key)
        elif kind == "list":
            value = connection.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(connection.smembers(key))
        elif kind == "zset":
            value = connection.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = connection.xrange(key)
        else:
            raise ValueError(f"{key!r}: a {kind} is not read here")
        values[key] = (kind, value)
    return values
