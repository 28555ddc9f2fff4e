"""The job modules against hostile or oversized input, with real peers: an SMTP server that enforces
RFC 5321's line limit, UCenter's protocol server, MariaDB with UCenter's tables, real PHP."""

from __future__ import annotations

import json
import pickle
import smtplib
import ssl
import subprocess
import sys
import zlib
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32

import pytest
from jobrun import QUEUE, outcome, queue, run_burst
from rq.job import Job
from rq.registry import FailedJobRegistry

from jobs.discuz.hashing import make_prepared_hash, uc_input
from jobs.discuz.sync import sync_discuz_user
from jobs.enqueue import enqueue_activation_mail, enqueue_discuz_sync
from jobs.mail.activation import LINK_MAX, NAME_MAX, send_activation_mail
from jobs.sealing import seal

LINK = "https://example.com/activate?token=abc123"
EXPECTED_HEADERS = {"subject", "from", "to", "date", "message-id", "auto-submitted", "content-type", "mime-version"}


def _header_block(raw: bytes) -> str:
    return raw.split(b"\r\n\r\n", 1)[0].decode("ascii")


@pytest.mark.parametrize(
    "name",
    [
        "=?utf-8?q?Bob=0D=0ABcc:_victim@x.com?=",  # the report: an encoded word that decodes to CRLF
        "=?utf-8?b?Qm9iDQpCY2M6IHZpY3RpbUB4LmNvbQ==?=",  # the same in base64
        "Bob\r\nBcc: victim@x.com",
        "Bob\nBcc: victim@x.com",
        "Bob\u2028Bcc: victim@x.com",  # Unicode line separator
        "Bob\x85Bcc: victim@x.com",  # NEL
        "Bob\x00\x1b[31m\u202eBcc: victim@x.com",  # NUL, escape, a bidi override
        "李雷 =?gb2312?B?\r\n?= Bcc: victim@x.com",
    ],
)
def test_no_name_adds_a_header_line(smtp_sink, worker_process, redis_url, connection, name):
    sink = smtp_sink()
    job = enqueue_activation_mail(queue(connection), to="bob@example.org", name=name, link=LINK)
    run_burst(worker_process, redis_url, sink.settings())
    assert outcome(job)[0] == "finished", outcome(job)
    (raw,) = sink.raw_messages()
    headers = _header_block(raw)
    names = {line.split(":", 1)[0].lower() for line in headers.split("\r\n") if not line[:1].isspace()}
    assert names == EXPECTED_HEADERS, headers
    (delivery,) = [event for event in sink.events() if event["event"] == "message"]
    assert delivery["rcpt_tos"] == ["bob@example.org"]
    (message,) = sink.messages()
    shown = message["To"].addresses[0].display_name
    assert "=?" not in shown and not any(character in shown for character in "\r\n\x00\x1b\x85\u2028\u202e")


def test_the_sink_refuses_a_line_over_998_bytes(smtp_sink):
    """The instrument below can fail: a raw message with a 999-byte line is refused."""
    sink = smtp_sink()
    settings = sink.settings()
    with smtplib.SMTP(settings["SMTP_HOST"], int(settings["SMTP_PORT"])) as client:
        client.starttls(context=ssl.create_default_context(cafile=settings["SMTP_CA_FILE"]))
        client.login(settings["SMTP_USER"], settings["SMTP_PASSWORD"])
        with pytest.raises(smtplib.SMTPDataError, match="Line too long"):
            client.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\n" + b"y" * 999 + b"\r\n")


def test_a_long_link_goes_out_in_lines_of_at_most_998_bytes(smtp_sink, worker_process, redis_url, connection):
    sink = smtp_sink()
    link = "https://example.com/activate?token=" + "eyJhbGciOiJIUzI1NiJ9." * 75  # ~1,600 characters, a JWT
    job = enqueue_activation_mail(queue(connection), to="jwt@example.org", name="Jay", link=link)
    chinese = enqueue_activation_mail(queue(connection), to="zh@example.org", name="李雷", link=link, locale="zh")
    run_burst(worker_process, redis_url, sink.settings())
    assert [outcome(job)[0], outcome(chinese)[0]] == ["finished", "finished"], [outcome(job), outcome(chinese)]
    for raw in sink.raw_messages():
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    for message in sink.messages():
        assert link in message.get_body(("plain",)).get_content()
        assert f'href="{link}"' in message.get_body(("html",)).get_content()


def test_inputs_are_bounded(smtp_sink, worker_process, redis_url, connection):
    sink = smtp_sink()
    long_name = enqueue_activation_mail(queue(connection), to="long@example.org", name="李" * 30000, link=LINK)
    long_link = enqueue_activation_mail(queue(connection), to="x@example.org", name="X", link=LINK + "a" * LINK_MAX)
    bad_link = enqueue_activation_mail(queue(connection), to="y@example.org", name="Y", link="javascript:alert(1)")
    worker = run_burst(worker_process, redis_url, sink.settings())
    assert outcome(long_name)[0] == "finished", outcome(long_name)
    (raw,) = sink.raw_messages()
    # RFC 2047's decoding (Python's address parser puts a space between adjacent encoded words; mail clients don't)
    to = BytesHeaderParser(policy=compat32).parsebytes(raw)["To"]
    assert str(make_header(decode_header(to))) == "李" * NAME_MAX + " <long@example.org>"
    assert f"display name of 30000 characters shortened to {NAME_MAX}" in worker.output()
    assert outcome(long_link) == (
        "failed",
        f"jobs.outcomes.PermanentError: the activation link has {len(LINK) + LINK_MAX} characters; "
        f"at most {LINK_MAX} are accepted",
    )
    assert outcome(bad_link)[1].endswith("the activation link must be an http:// or https:// URL")
    assert "hub watchdog" not in worker.output() and "blocked" not in worker.output()


def test_reenqueueing_a_failed_activation_starts_a_fresh_attempt(smtp_sink, worker_process, redis_url, connection):
    sink = smtp_sink("busy@example.org=451")
    first = enqueue_activation_mail(queue(connection), to="busy@example.org", name="Busy", link=LINK)
    run_burst(worker_process, redis_url, sink.settings())
    assert outcome(first)[0] == "failed" and first.number_of_retries == 2
    failed = FailedJobRegistry(QUEUE, connection=connection)
    assert first.id in failed.get_job_ids()

    again = enqueue_activation_mail(queue(connection), to="busy@example.org", name="Busy", link=LINK)
    assert again.id == first.id
    fetched = Job.fetch(again.id, connection=connection)
    assert fetched.get_status() == "queued"
    assert fetched.number_of_retries in (None, 0) and fetched.meta == {}
    assert again.id not in failed.get_job_ids()
    run_burst(worker_process, redis_url, sink.settings())
    assert outcome(fetched)[0] == "failed" and fetched.number_of_retries == 2  # the full budget again
    assert len([event for event in sink.events() if event["event"] == "refused"]) == 0


# --- what logs and rq info show ---------------------------------------------------------------------


def test_no_link_password_or_personal_field_reaches_the_log(smtp_sink, ucenter, worker_process, redis_url, connection):
    sink = smtp_sink("fails@example.org=451")
    peer = ucenter()
    link, password = "https://example.com/activate?token=LINK-SECRET-7c1", "PW-SECRET-99z"
    personal = ["Alice Personal", "alice.personal@example.org", "fails@example.org", "Fay Personal"]
    personal += ["dbuser77", "dbuser77@example.org", "plainuser", "plainuser@example.org"]
    q = queue(connection)
    q.enqueue(send_activation_mail, "alice.personal@example.org", "Alice Personal", link)  # the README's plain form
    q.enqueue(send_activation_mail, "fails@example.org", "Fay Personal", link + "2")  # retried, then failed
    enqueue_activation_mail(q, to="alice.personal@example.org", name="Alice Personal", link=link + "3")
    enqueue_discuz_sync(q, 7, "dbuser77", "dbuser77@example.org", password=seal(password))
    q.enqueue(sync_discuz_user, "plainuser", "plainuser@example.org", password)  # unsealed: fails
    visible = q.enqueue(
        "testjobs.green_sleep", 0, "VISIBLE-MARKER-123"
    )  # proves the search below can find a job's text
    worker = run_burst(worker_process, redis_url, {**sink.settings(), **peer.settings()}, "--verbose")
    info = subprocess.run(
        [sys.executable, "-m", "rq.cli", "info", "-u", redis_url, QUEUE], capture_output=True, text=True, timeout=60
    )
    assert info.returncode == 0, info.stderr
    output = worker.output()
    assert outcome(visible)[0] == "finished" and "VISIBLE-MARKER-123" in output
    assert "Successfully completed" in output and "retrying in 0 s" in output
    assert "deferred the recipient: 451 4.3.0 (other or undefined mail system status; the server's text" in output
    for text in (link, password, *personal):
        assert text not in output, text
        assert text not in info.stdout, text


def test_an_unsealed_password_is_erased_from_the_job(ucenter, worker_process, redis_url, connection):
    peer = ucenter()
    password = "Plain-Text-Secret-41"
    jobs = [
        queue(connection).enqueue(sync_discuz_user, "frank", "frank@example.org", password),
        queue(connection).enqueue(sync_discuz_user, "frank", "frank@example.org", password_hash=password),
        queue(connection).enqueue(sync_discuz_user, "frank", "frank@example.org", seal("x"), password_hash=password),
    ]
    assert password.encode() in zlib.decompress(connection.hget(jobs[0].key, "data"))  # the instrument can see it
    run_burst(worker_process, redis_url, peer.settings())
    for job in jobs:
        status, reason = outcome(job)
        assert status == "failed", reason
        stored = connection.hgetall(job.key)
        flat = b"".join(stored.values()) + zlib.decompress(stored[b"data"])
        assert password.encode() not in flat
        assert password not in repr(pickle.loads(zlib.decompress(stored[b"data"])))
        assert password not in job.description and password not in (job.exc_info or "")
        assert "erased" in job.description
    assert peer.members() == []


# --- sync_discuz_user's inputs ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["http", "php"])
@pytest.mark.parametrize(
    ("username", "regip", "reason"),
    [
        ("ab\ud800cd", "", "-1 (invalid username)"),
        ("ab\x00cd", "", "-1 (invalid username)"),
        ("abc" * 2000, "", "-1 (invalid username)"),
        ("regular", "\ud800", "regip must be empty or an IP address"),
        ("regular", "1.2.3.4; DROP", "regip must be empty or an IP address"),
    ],
)
def test_malformed_inputs_are_refused_clearly(
    ucenter, php_uc_client, worker_process, redis_url, connection, backend, username, regip, reason
):
    peer = ucenter()
    settings = php_uc_client(peer) if backend == "php" else peer.settings()
    job = queue(connection).enqueue(sync_discuz_user, username, "ok@example.org", seal("pw"), regip=regip)
    run_burst(worker_process, redis_url, settings)
    assert outcome(job) == ("failed", f"jobs.discuz.errors.ForumRejected: UCenter refused the registration: {reason}")
    assert peer.members() == []


def test_an_oversized_password_is_refused(ucenter, worker_process, redis_url, connection):
    peer = ucenter()
    job = queue(connection).enqueue(sync_discuz_user, "longpw", "longpw@example.org", seal("p" * 1025))
    run_burst(worker_process, redis_url, peer.settings())
    assert outcome(job) == ("failed", "jobs.outcomes.PermanentError: the password has 1025 characters; at most 1024")
    assert peer.members() == []


def test_php_stderr_after_a_call_with_the_password_is_never_logged(
    ucenter, php_uc_client, worker_process, redis_url, connection, tmp_path
):
    """A uc_client that prints the password in every encoding PHP offers, then fails."""
    password = 'Pw/with "quotes" & 密码'
    client = tmp_path / "leaky_uc_client"
    client.mkdir()
    (client / "client.php").write_text(
        "<?php\nfunction uc_get_user($u) { return 0; }\n"
        "function uc_user_register($u, $p, $e) {\n"
        "  fwrite(STDERR, json_encode($p) . ' ' . urlencode($p) . ' ' . rawurlencode($p) . ' ' . base64_encode($p)"
        " . ' ' . addslashes($p) . ' ' . htmlspecialchars($p) . ' ' . bin2hex($p) . ' ' . md5($p) . ' ' . $p);\n"
        "  exit(1);\n}\n"
    )
    peer = ucenter()
    job = queue(connection).enqueue(sync_discuz_user, "leaky", "leaky@example.org", seal(password))
    worker = run_burst(worker_process, redis_url, {**php_uc_client(peer), "DISCUZ_PHP_UC_CLIENT": str(client)})
    status, reason = outcome(job)
    assert status == "failed"
    assert (
        "PHP exited with code 1; PHP wrote" in reason and "not logged because the call carried the password" in reason
    )
    assert "密码" not in worker.output() and "Pw" not in worker.output()


def test_a_silent_php_fatal_error_is_named(ucenter, php_uc_client, worker_process, redis_url, connection, tmp_path):
    client = tmp_path / "fatal_uc_client"
    client.mkdir()
    (client / "client.php").write_text(
        "<?php\nerror_reporting(0);\nfunction uc_get_user($u) { return 0; }\n"
        "function uc_user_register($u, $p, $e) { return no_such_function(); }\n"
    )
    peer = ucenter()
    job = queue(connection).enqueue(sync_discuz_user, "fatal", "fatal@example.org", seal("pw"))
    run_burst(worker_process, redis_url, {**php_uc_client(peer), "DISCUZ_PHP_UC_CLIENT": str(client)})
    status, reason = outcome(job)
    assert status == "failed"
    assert "PHP exited with code 255; PHP printed nothing" in reason and "fatal error" in reason


# --- the database backend, as the real uc_client logs in -------------------------------------------

# uc_client's login, in PHP's own functions: every argument through uc_addslashes (stripslashes, then
# addslashes), trimmed, then md5(md5(p).salt) or password_verify.  The rule is from UCenter's
# uc_client (control/user.php, model/base.php, client.php); this script is ours.
UC_LOGIN = (
    "$r = json_decode(stream_get_contents(STDIN), true);"
    '$p = $r["charset"] === "utf-8" ? $r["password"] : iconv("UTF-8", $r["charset"], $r["password"]);'
    "$p = trim(addslashes(stripslashes($p)));"
    'echo $r["salt"] === "" ? (password_verify($p, $r["stored"]) ? "yes" : "no")'
    ' : (md5(md5($p) . $r["salt"]) === $r["stored"] ? "yes" : "no");'
)
AWKWARD_PASSWORDS = ['it\'s a "pw"', " spaced both ends ", "back\\slash\\", "tab\tend\t", "\\0nul-ish", "誠実な\\密码"]


def uc_login(php: str, password: str, row: dict, charset: str) -> bool:
    request = json.dumps({"password": password, "stored": row["password"], "salt": row["salt"], "charset": charset})
    return subprocess.run([php, "-r", UC_LOGIN], input=request, capture_output=True, text=True).stdout == "yes"


def test_uc_input_agrees_with_php(php):
    cases = AWKWARD_PASSWORDS + ["", "\\", "'\\'", "\x00\\\x00", " \x0b\\ \x0b", "a\\\\b", "\\'\\\"", "é\\é"]
    for charset in ("utf-8", "gbk"):
        script = (
            "foreach (json_decode(stream_get_contents(STDIN), true) as $p) {"
            f' $b = "{charset}" === "utf-8" ? $p : iconv("UTF-8", "{charset}", $p);'
            ' echo bin2hex(trim(addslashes(stripslashes($b)))), "\\n"; }'
        )
        run = subprocess.run([php, "-r", script], input=json.dumps(cases), capture_output=True, text=True, check=True)
        assert run.stdout.splitlines() == [uc_input(case, charset).hex() for case in cases]


@pytest.mark.parametrize(("version", "charset"), [("1.6", "utf-8"), ("1.7", "utf-8"), ("1.6", "gbk")])
def test_database_members_log_in_with_any_password(
    forum_database, php, worker_process, redis_url, connection, version, charset
):
    forum = forum_database(version, charset)
    jobs = [
        queue(connection).enqueue(sync_discuz_user, f"user{index}", f"user{index}@example.org", seal(password))
        for index, password in enumerate(AWKWARD_PASSWORDS)
    ]
    prepared = make_prepared_hash(AWKWARD_PASSWORDS[0], version, charset)
    jobs.append(
        queue(connection).enqueue(sync_discuz_user, "prepared", "prepared@example.org", password_hash=seal(prepared))
    )
    run_burst(worker_process, redis_url, forum.settings())
    assert [outcome(job)[0] for job in jobs] == ["finished"] * len(jobs), [outcome(job) for job in jobs]
    rows = {row["username"]: row for row in forum.rows()}
    for index, password in enumerate(AWKWARD_PASSWORDS):
        assert uc_login(php, password, rows[f"user{index}"], charset), password
        assert not uc_login(php, password + "x", rows[f"user{index}"], charset)
    assert uc_login(php, AWKWARD_PASSWORDS[0], rows["prepared"], charset)


def test_database_follows_the_forums_one_account_per_email_rule(
    forum_database, mariadb, worker_process, redis_url, connection
):
    forum = forum_database("1.7", "utf-8")  # UCenter's installed default: doublee = 0
    first = queue(connection).enqueue(sync_discuz_user, "first", "shared@example.org", seal("pw"))
    run_burst(worker_process, redis_url, forum.settings())
    second = queue(connection).enqueue(sync_discuz_user, "second", "shared@example.org", seal("pw"))
    run_burst(worker_process, redis_url, forum.settings())
    assert outcome(first)[0] == "finished"
    assert outcome(second)[0] == "failed" and "already belongs to another forum account" in outcome(second)[1]
    with mariadb.admin(forum.name) as admin, admin.cursor() as cursor:
        cursor.execute("UPDATE pre_ucenter_settings SET v='1' WHERE k='doublee'")
        admin.commit()
    third = queue(connection).enqueue(sync_discuz_user, "third", "shared@example.org", seal("pw"))
    run_burst(worker_process, redis_url, forum.settings())
    assert outcome(third)[0] == "finished", outcome(third)


# --- the trust boundary -----------------------------------------------------------------------------


def test_jobs_run_under_rqs_json_serializer(smtp_sink, ucenter, worker_process, redis_url, connection):
    from rq import Queue

    sink, peer = smtp_sink(), ucenter()
    q = Queue(QUEUE, connection=connection, serializer="rq.serializers.JSONSerializer")
    mail = enqueue_activation_mail(q, to="json@example.org", name="Jason", link=LINK)
    sync = enqueue_discuz_sync(q, 9, "jsonuser", "jsonuser@example.org", password=seal("Js0n-pw"))
    assert b"Js0n-pw" not in zlib.decompress(connection.hget(sync.key, "data"))
    run_burst(worker_process, redis_url, {**sink.settings(), **peer.settings()}, "-S", "rq.serializers.JSONSerializer")
    assert [outcome(mail)[0], outcome(sync)[0]] == ["finished", "finished"], [outcome(mail), outcome(sync)]
    (member,) = peer.members()
    assert member["username"] == "jsonuser"


def test_allowed_jobs_refuses_any_other_function_before_importing_it(worker_process, redis_url, connection, tmp_path):
    marker = tmp_path / "imported"
    (tmp_path / "tripwire.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n\ndef run():\n    return 'ran'\n\ndef callback(*args):\n    pass\n"
    )
    (tmp_path / "allow_settings.py").write_text(f"REDIS_URL = {redis_url!r}\nALLOWED_JOBS = ['testjobs.*']\n")
    from rq import Queue

    q = Queue(QUEUE, connection=connection, serializer="rq.serializers.JSONSerializer")
    allowed = q.enqueue("testjobs.green_sleep", 0, "fine")
    refused = q.enqueue("tripwire.run")
    system = q.enqueue("os.system", "touch " + str(tmp_path / "owned"))
    sneaky = q.enqueue("testjobs.green_sleep", 0, "x", on_failure="tripwire.callback")
    worker = worker_process(
        "--config", "allow_settings", "-P", str(tmp_path), "--burst", "-S", "rq.serializers.JSONSerializer", QUEUE
    )
    assert worker.wait(60) == 0, worker.output()
    assert outcome(allowed) == ("finished", "fine")
    for job, name in ((refused, "function 'tripwire.run'"), (system, "function 'os.system'")):
        status, reason = outcome(job)
        assert status == "failed" and reason.startswith("rq_gevent.allowlist.JobNotAllowed")
        assert f"its {name} is not in the worker's ALLOWED_JOBS" in reason
    status, reason = outcome(sneaky)
    assert status == "failed" and "its failure callback 'tripwire.callback' is not in" in reason
    assert not marker.exists() and not (tmp_path / "owned").exists()
