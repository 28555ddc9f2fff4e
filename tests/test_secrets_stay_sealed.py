"""The Discuz password appears nowhere in plaintext: not in Redis, the worker's log or Sentry events.

(The process list during the PHP call is checked in test_discuz.py.)  Each search is paired with a
control that finds something we know is there, so an empty search cannot pass by accident.
"""

from __future__ import annotations

import zlib

from jobrun import outcome, queue, run_burst

from jobs.discuz.sync import sync_discuz_user
from jobs.sealing import seal

PASSWORD = "Zq8-unique-secret-93lk"


def redis_dump(connection) -> bytes:
    """Every key and value in Redis, with rq's zlib-compressed fields also decompressed."""
    chunks: list[bytes] = []
    for key in connection.scan_iter(count=1000):
        kind = connection.type(key).decode()
        values: list[bytes] = [key]
        if kind == "string":
            values.append(connection.get(key))
        elif kind == "hash":
            for field, value in connection.hgetall(key).items():
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
            chunks.append(value)
            try:
                chunks.append(zlib.decompress(value))
            except zlib.error:
                pass
    return b"\n".join(chunks)


def test_password_is_nowhere_in_redis_logs_or_sentry(
    ucenter, forum_database, php_uc_client, worker_process, redis_url, connection, tmp_path, sentry_sink
):
    sink = sentry_sink()
    dsn = {"TEST_SENTRY_DSN": sink.dsn()}
    try:
        peer = ucenter()
        peer.add_member("taken", "owner@elsewhere.net", "owner-password")
        sealed = seal(PASSWORD)
        jobs = [
            queue(connection).enqueue(sync_discuz_user, "created", "c@example.org", sealed),
            queue(connection).enqueue(sync_discuz_user, "taken", "t@example.org", sealed),  # conflict
            queue(connection).enqueue(sync_discuz_user, "bad name", "b@example.org", sealed),  # -1
        ]
        http_worker = run_burst(worker_process, redis_url, {**peer.settings(), **dsn}, "--config", "sentry_by_hand")

        forum = forum_database("1.7", "utf-8")
        jobs.append(queue(connection).enqueue(sync_discuz_user, "dbuser", "d@example.org", sealed))
        db_settings = {
            **forum.settings(),
            "DISCUZ_DB_PASSWORD": "wrong",
            **dsn,
        }
        db_worker = run_burst(worker_process, redis_url, db_settings, "--config", "sentry_by_hand")

        jobs.append(queue(connection).enqueue(sync_discuz_user, "phpuser", "p@example.org", sealed))
        php_settings = {
            **php_uc_client(peer),
            "DISCUZ_PHP_UC_CLIENT": str(tmp_path),
            **dsn,
        }
        php_worker = run_burst(worker_process, redis_url, php_settings, "--config", "sentry_by_hand")
    finally:
        sink.stop()

    assert [outcome(job)[0] for job in jobs] == ["finished", "failed", "failed", "failed", "failed"]
    events = b"\n".join(sink.received())
    logs = (http_worker.output() + db_worker.output() + php_worker.output()).encode()
    dump = redis_dump(connection)

    # Controls: each haystack holds what we know went there.
    assert b"ForumConflict" in events and b"ForumConfigError" in events and b"ForumRejected" in events
    assert b"ForumConflict" in logs and b"taken" in dump and sealed.token.encode() in dump

    secret = PASSWORD.encode()
    assert secret not in dump
    assert secret not in logs
    assert secret not in events
