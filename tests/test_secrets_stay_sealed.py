"""The Discuz password appears nowhere in plaintext: not in Redis, the worker's log or Sentry events.

Nor does it when the job's arguments do not fit its signature, and no error text copied from a remote
system (UCenter, its database, PHP, an SMTP server) carries the member's personal fields.
(The process list during the PHP call is checked in test_discuz.py.)  Each search is paired with a
control that finds something we know is there, so an empty search cannot pass by accident.
"""

from __future__ import annotations

import subprocess
import sys
import zlib

import pytest
from jobrun import QUEUE, outcome, queue, run_burst
from redis_dump import redis_dump, unpacked
from rq import Queue

from jobs.discuz.sync import sync_discuz_user
from jobs.enqueue import enqueue_activation_mail, enqueue_discuz_sync
from jobs.sealing import seal

# Talks to Sentry: also run with the oldest sentry-sdk setup.cfg declares (noxfile.py).
pytestmark = pytest.mark.sentry

PASSWORD = "Zq8-unique-secret-93lk"


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


# --- arguments that do not fit the job's signature ---------------------------------------------------

WRONG_CALL_SECRET = "Wr0ng-Call-Plain-58q"


@pytest.mark.parametrize("serializer", [None, "rq.serializers.JSONSerializer"])
def test_arguments_that_do_not_fit_leave_no_plaintext_in_the_job(
    ucenter, worker_process, redis_url, connection, serializer
):
    peer = ucenter()
    q = Queue(QUEUE, connection=connection, serializer=serializer)
    secret = WRONG_CALL_SECRET
    calls = {
        "unexpected keyword argument 'passwd'": (("u1", "u1@example.org"), {"passwd": secret}),
        "takes at most 3 positional arguments, 4 were given": (("u2", "u2@example.org", seal("x"), secret), {}),
        "unexpected keyword argument (not a Python name)": (("u6", "u6@example.org"), {f"pw {secret}": 1}),
        "missing a required argument: 'email'": (("u3",), {"password": secret}),
        "multiple values for argument 'username'": (("u4", "u4@example.org", secret), {"username": "u4"}),
        "password_hash must be sealed with jobs.sealing.seal() at enqueue time, not a list": (
            ("u5", "u5@example.org"),
            {"password_hash": [secret]},
        ),
    }
    jobs = {reason: q.enqueue(sync_discuz_user, *args, **kwargs) for reason, (args, kwargs) in calls.items()}
    assert all(secret.encode() in zlib.decompress(connection.hget(job.key, "data")) for job in jobs.values())
    extra = ("-S", serializer) if serializer else ()
    worker = run_burst(worker_process, redis_url, peer.settings(), "--verbose", *extra)

    dump = redis_dump(connection)
    assert b"passwd" in dump  # the instrument sees what the jobs stored
    leaks = {reason: job.id for reason, job in jobs.items() if secret.encode() in redis_dump_of(connection, job)}
    assert leaks == {} and secret.encode() not in dump
    assert secret not in worker.output() and b"JobArgumentsError" in dump and "JobArgumentsError" in worker.output()
    for reason, job in jobs.items():
        status, last_line = outcome(job)
        assert (status, last_line) == (
            "failed",
            f"jobs.sealing.JobArgumentsError: sync_discuz_user: {reason}; the worker erased the job's arguments",
        )
        assert job.description.startswith("jobs.discuz.sync.sync_discuz_user(arguments erased")
        assert len(job.kwargs) == len(calls[reason][1]) and len(job.args) == len(calls[reason][0])
        assert set(job.kwargs.values()) <= {"[erased]"} and set(job.args) <= {"[erased]"}
    assert peer.members() == []


def redis_dump_of(connection, job, skip_fields: tuple[bytes, ...] = ()) -> bytes:
    """The job's hash (but its ``skip_fields``) and its results stream, unpacked."""
    stored = connection.hgetall(job.key).items()
    chunks = [value for field, value in stored if field not in skip_fields for value in (field, value)]
    for _, fields in connection.xrange(f"rq:results:{job.id}"):
        chunks += [value for field_value in fields.items() for value in field_value]
    return b"\n".join(chunk for value in chunks for chunk in (value, *unpacked(value)))


def test_secret_taking_jobs_keep_their_name_and_the_helper_refuses_before_redis(connection):
    with pytest.raises(TypeError, match="passwd") as refused:
        enqueue_discuz_sync(queue(connection), 1, "n", "n@example.org", passwd=WRONG_CALL_SECRET)
    with pytest.raises(TypeError, match="seal the password"):
        enqueue_discuz_sync(queue(connection), 1, "n", "n@example.org", password=WRONG_CALL_SECRET)
    assert WRONG_CALL_SECRET not in str(refused.value)
    assert list(connection.scan_iter()) == []
    # ALLOWED_JOBS and rq both find the function by __module__ and __qualname__: the decorator keeps them.
    assert (sync_discuz_user.__module__, sync_discuz_user.__qualname__) == ("jobs.discuz.sync", "sync_discuz_user")
    job = queue(connection).enqueue(sync_discuz_user, "n", "n@example.org", seal("x"))
    assert job.func_name == "jobs.discuz.sync.sync_discuz_user" and job.func is sync_discuz_user


# --- error text from remote systems ------------------------------------------------------------------

# The member's personal fields; its ASCII part survives every spelling a peer uses (as given,
# upper-cased, HTML-escaped, URL-encoded, GBK), so these markers find any of them.
MEMBER, MEMBER_EMAIL = "quozq张三9", "quozq.mail@example.org"
MARKERS = (b"quozq", b"QUOZQ")
QUOTING_CLIENT = """<?php
function uc_get_user($u) {
    trigger_error("Duplicate entry '$u' (" . strtoupper($u) . ', ' . rawurlencode($u) . ") for key 'username'",
                  E_USER_WARNING);
    exit(1);
}
function uc_user_register($u, $p, $e) { return 0; }
"""


def test_no_remote_error_text_carries_the_members_personal_fields(
    ucenter, forum_database, mariadb, smtp_sink, php_uc_client, worker_process, redis_url, connection, tmp_path,
    sentry_sink,
):  # fmt: skip
    sentry = sentry_sink()
    mail = smtp_sink(f"{MEMBER_EMAIL}=550")
    peer = ucenter("1.7", "gbk")
    peer.queue_faults("quote")  # a PHP warning quoting username and e-mail before get_user's answer
    forum = forum_database("1.7", "utf-8")
    with mariadb.admin(forum.name) as admin, admin.cursor() as cursor:
        cursor.execute(
            "CREATE TRIGGER refuse_member BEFORE INSERT ON pre_ucenter_members FOR EACH ROW BEGIN "
            "DECLARE message VARCHAR(128) DEFAULT CONCAT('member ', NEW.username, ' ', UPPER(NEW.username), "
            "' <', NEW.email, '> refused'); SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = message; END"
        )
    client = tmp_path / "quoting_uc_client"
    client.mkdir()
    (client / "client.php").write_text(QUOTING_CLIENT)
    q = queue(connection)
    sealed = seal("Remote-Quote-Pw-1")

    def sync(user_id: int):
        return enqueue_discuz_sync(q, user_id, MEMBER, MEMBER_EMAIL, password=sealed)

    common = ("--verbose", "--config", "sentry_config")
    sentry_env = {"TEST_SENTRY_DSN": sentry.dsn()}
    try:
        jobs = [sync(1), enqueue_activation_mail(q, to=MEMBER_EMAIL, name="Mail Person", link="https://x.example/a")]
        http_smtp = {**peer.settings(), **mail.settings(), **sentry_env}
        logs = {"log http, smtp": run_burst(worker_process, redis_url, http_smtp, *common).output()}
        jobs.append(sync(2))
        database = {**forum.settings(), **sentry_env}
        logs["log database"] = run_burst(worker_process, redis_url, database, *common).output()
        jobs.append(sync(3))
        php_settings = {**php_uc_client(peer), "DISCUZ_PHP_UC_CLIENT": str(client), **sentry_env}
        logs["log php"] = run_burst(worker_process, redis_url, php_settings, *common).output()
    finally:
        sentry.stop()
    info = subprocess.run(
        [sys.executable, "-m", "rq.cli", "info", "-u", redis_url, QUEUE], capture_output=True, text=True, timeout=60
    )
    assert info.returncode == 0, info.stderr

    events = b"\n".join(sentry.received())
    everything_but_arguments = redis_dump(connection, skip_fields=(b"data",))
    # Controls: each haystack holds what we know went there, the arguments' own copy included.
    assert all(job.id.encode() in events for job in jobs) and b"ForumConfigError" in events
    assert all(any(job.id in log for log in logs.values()) for job in jobs)
    assert all("ForumConfigError" in log for log in logs.values())
    assert b"quozq" in redis_dump(connection) and b"ForumConfigError" in everything_but_arguments
    assert "4 failed" in info.stdout
    haystacks = {"sentry": events, "rq info": info.stdout.encode()}
    haystacks |= {name: log.encode() for name, log in logs.items()}
    haystacks |= {f"redis {job.id}": redis_dump_of(connection, job, skip_fields=(b"data",)) for job in jobs}
    haystacks["redis"] = everything_but_arguments
    leaks = {
        name: [m for m in MARKERS if m in text] for name, text in haystacks.items() if any(m in text for m in MARKERS)
    }
    assert leaks == {}, sorted(leaks)

    reasons = [outcome(job) for job in jobs]
    assert [status for status, _ in reasons] == ["failed"] * 4, reasons
    assert "UCenter answered" in reasons[0][1] and "not copied" in reasons[0][1]
    assert reasons[1][1].endswith("rejected the recipient: 550 5.1.1 (bad destination mailbox address; "
                                  "the server's text is not copied)")  # fmt: skip
    assert reasons[2][1].endswith("MySQL 1644: Refused by a trigger or stored routine (SIGNAL)")
    assert "PHP wrote" in reasons[3][1] and "the first is a PHP Warning in" in reasons[3][1]
    assert "not logged because it can quote the member's data" in reasons[3][1]
