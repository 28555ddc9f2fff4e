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
from email.headerregistry import Address
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
from jobs.mail.message import activation_message
from jobs.mail.wire import MessageMismatch
from jobs.sealing import seal

LINK = "https://example.com/activate?token=abc123"
EXPECTED_HEADERS = {"subject", "from", "to", "date", "message-id", "auto-submitted", "content-type", "mime-version"}


def _header_block(raw: bytes) -> str:
    return raw.split(b"\r\n\r\n", 1)[0].decode("ascii")


def _refusals(sink) -> list[tuple[str, str, str]]:
    """The sink's refusals, at whichever stage: (MAIL, RCPT or DATA, the reply code, the command's argument)."""
    refused = [event for event in sink.events() if event["event"] == "refused"]
    return [(event["stage"], event["answer"][:3], event["argument"]) for event in refused]


def _header_names(raw: bytes) -> set[str]:
    lines = _header_block(raw).split("\r\n")
    names = [line.split(":", 1)[0].lower() for line in lines if not line[:1].isspace()]
    assert len(names) == len(set(names)), names
    return set(names)


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
def test_no_name_adds_a_header_line(smtp_sink, worker_process, redis_url, connection, tmp_path, name):
    sink = smtp_sink()
    (tmp_path / "templates" / "en").mkdir(parents=True)
    (tmp_path / "templates" / "en" / "activation.subject.txt").write_text("Welcome, $name")  # the name in the Subject
    job = enqueue_activation_mail(queue(connection), to="bob@example.org", name=name, link=LINK)
    run_burst(worker_process, redis_url, {**sink.settings(), "MAIL_TEMPLATE_DIR": str(tmp_path / "templates")})
    assert outcome(job)[0] == "finished", outcome(job)
    (raw,) = sink.raw_messages()
    headers = _header_block(raw)
    assert _header_names(raw) == EXPECTED_HEADERS, headers
    (delivery,) = [event for event in sink.events() if event["event"] == "message"]
    assert delivery["rcpt_tos"] == ["bob@example.org"]
    (message,) = sink.messages()
    for shown in (message["To"].addresses[0].display_name, str(message["Subject"])):
        assert "=?" not in shown and not any(character in shown for character in "\r\n\x00\x1b\x85\u2028\u202e")
    assert str(message["Subject"]).startswith("Welcome, ")


# Issue 31: email_validator accepts an encoded word as a local part, and Python 3.11's email decoded it
# while writing the To header (a CR LF in it became a header line; two ended the headers; a NUL made
# the To parse as another address).
HOSTILE_ADDRESSES = [
    "=?utf-8?q?x=0d=0aReply-To=3a=20evil=40evil.com?=@example.com",  # the report
    "=?utf-8?q?x=0d=0a=0d=0aevil_body?=@example.com",  # ends the headers
    "=?utf-8?q?attacker=40evil.com=00?=@example.com",  # NUL: the To parsed as attacker@evil.com
    "=?utf-8?b?eA0KQmNjOiB2aWN0aW1AeC5jb20=?=@example.com",  # base64
    "x.=?iso-8859-1?q?y=0a?=.z@example.com",  # an encoded word between dots
    '"=?utf-8?q?x=0d=0aBcc:_v@x.com?="@example.com',  # quoted
    "x\r\nBcc: victim@x.com@example.com",
    "x\r\n@example.com",
    "x\n@example.com",
    "x\r@example.com",
    "x\x00@example.com",
    "x\x1b@example.com",
    "x\x7f@example.com",
    "x\x85@example.com",  # C1: NEL
    "x\u2028@example.com",  # Unicode line separator
    "x@exam\u2028ple.com",
    "x@example.com\r\nBcc: victim@x.com",
    "x@example.com\x00",
    "<x@example.com>",
    "Evil <x@example.com>",
    "x\\y@example.com",
    "sm\u00dfith@example.com",  # a non-ASCII local part: Python writes it as an encoded word
    "x@example.com,victim@x.com",
    "x@[127.0.0.1]",
    "a" * 64 + "@" + "b" * 200 + ".example.com",  # too long
    "x" * 100_000 + "@example.com",
]


def test_no_address_adds_a_header_line_or_reaches_the_server(smtp_sink, worker_process, redis_url, connection):
    sink = smtp_sink()
    q = queue(connection)
    control = enqueue_activation_mail(q, to="control@example.org", name="Control", link=LINK)
    hostile = [q.enqueue(send_activation_mail, address, "Bob", LINK) for address in HOSTILE_ADDRESSES]
    run_burst(worker_process, redis_url, sink.settings(), "-c", "10")
    assert outcome(control)[0] == "finished", outcome(control)
    for address, job in zip(HOSTILE_ADDRESSES, hostile, strict=True):
        status, reason = outcome(job)
        assert status == "failed" and reason.startswith("jobs.mail.address.AddressRefused: "), (address, reason)
        assert address not in job.exc_info, (address, reason)
    # The sink records the raw DATA bytes: one message, to the control, with exactly its headers.
    (delivery,) = [event for event in sink.events() if event["event"] == "message"]
    assert delivery["rcpt_tos"] == ["control@example.org"]
    (raw,) = sink.raw_messages()
    assert _header_names(raw) == EXPECTED_HEADERS
    (message,) = sink.messages()
    assert [address.addr_spec for address in message["To"].addresses] == ["control@example.org"]


@pytest.mark.parametrize(
    ("to", "name", "validated"),
    [
        ("Ann.O'Brien+tag@Example.ORG", "Ann O'Brien, Jr.", "Ann.O'Brien+tag@example.org"),
        ("li.lei@bücher.example", '李雷 "Lei" \\ <x>', "li.lei@xn--bcher-kva.example"),
        (
            "x" * 64 + "@" + ".".join(["d" * 60] * 3) + ".org",
            "a" * 99,
            "x" * 64 + "@" + ".".join(["d" * 60] * 3) + ".org",
        ),
        ("postmaster@example.org", "=?utf-8?q?Bob=0D=0ABcc:_victim@x.com?=", "postmaster@example.org"),
    ],
)
def test_the_bytes_sent_parse_to_the_validated_address(
    smtp_sink, worker_process, redis_url, connection, to, name, validated
):
    sink = smtp_sink()
    job = enqueue_activation_mail(queue(connection), to=to, name=name, link=LINK)
    run_burst(worker_process, redis_url, sink.settings())
    status, result = outcome(job)
    assert status == "finished" and result["to"] == validated and result["sent"] is True, (status, result)
    (raw,) = sink.raw_messages()
    assert _header_names(raw) == EXPECTED_HEADERS
    assert all(32 <= byte < 127 for byte in _header_block(raw).replace("\r\n", "").encode())
    (message,) = sink.messages()
    (address,) = message["To"].addresses
    assert address.addr_spec == validated and "=?" not in address.display_name
    (delivery,) = [event for event in sink.events() if event["event"] == "message"]
    assert delivery["rcpt_tos"] == [validated]
    assert message.get_content_type() == "multipart/alternative"


@pytest.mark.parametrize(
    "address",
    [
        Address("Bob", "=?utf-8?q?x=0d=0aReply-To=3a=20evil=40evil.com?=", "example.com"),
        Address("Bob", "=?utf-8?q?x=0d=0a=0d=0aevil?=", "example.com"),
        Address("Bob", "=?utf-8?q?attacker=40evil.com=00?=", "example.com"),
        Address("=?utf-8?q?Bob=0D=0ABcc:_victim@x.com?=", "bob", "example.com"),
        Address("Bob\x00\u2028Eve", "bob", "example.com"),
    ],
)
def test_a_message_that_email_rewrites_is_never_sent(address):
    """Past the address and name checks (an Address built by hand): the check on the serialized bytes
    refuses what Python's email package made of it."""
    sender = Address("Example", "noreply", "example.com")
    with pytest.raises(MessageMismatch, match="it was not sent"):
        activation_message(sender, address, "<x@example.com>", LINK, "en", "Example")


def test_the_sink_refuses_a_line_over_998_bytes(smtp_sink):
    """The instrument below can fail: a raw message with a 999-byte line is refused."""
    sink = smtp_sink()
    settings = sink.settings()
    with smtplib.SMTP(settings["SMTP_HOST"], int(settings["SMTP_PORT"])) as client:
        client.starttls(context=ssl.create_default_context(cafile=settings["SMTP_CA_FILE"]))
        client.login(settings["SMTP_USER"], settings["SMTP_PASSWORD"])
        with pytest.raises(smtplib.SMTPDataError, match="Line too long"):
            client.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\n" + b"y" * 999 + b"\r\n")


def test_the_sink_records_a_refusal_at_mail_rcpt_and_data(smtp_sink):
    """The refusal events counted below are written wherever a refusal happens, not only at DATA."""
    sink = smtp_sink("refused-sender@example.org=550", "busy@example.org=451")
    settings = sink.settings()
    with smtplib.SMTP(settings["SMTP_HOST"], int(settings["SMTP_PORT"])) as client:
        client.starttls(context=ssl.create_default_context(cafile=settings["SMTP_CA_FILE"]))
        client.ehlo()
        assert client.mail("a@example.org")[0] == 530  # aiosmtpd's own refusal: no AUTH yet
        client.login(settings["SMTP_USER"], settings["SMTP_PASSWORD"])
        assert client.mail("refused-sender@example.org")[0] == 550
        assert client.mail("a@example.org")[0] == 250
        assert client.rcpt("busy@example.org")[0] == 451
        client.rset()
        with pytest.raises(smtplib.SMTPDataError, match="Line too long"):
            client.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\n" + b"y" * 999 + b"\r\n")
    assert _refusals(sink) == [
        ("MAIL", "530", "FROM:<a@example.org>"),
        ("MAIL", "550", "FROM:<refused-sender@example.org>"),
        ("RCPT", "451", "TO:<busy@example.org>"),
        ("DATA", "500", None),
    ]
    (data_refusal,) = [event for event in sink.events() if event["event"] == "refused" and event["stage"] == "DATA"]
    assert data_refusal["mail_from"] == "a@example.org" and data_refusal["rcpt_tos"] == ["b@example.org"]


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
    deferred = ("RCPT", "451", "TO:<busy@example.org>")
    assert _refusals(sink) == [deferred] * 3  # each attempt reached the server, and only RCPT refused
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
    assert _refusals(sink) == [deferred] * 6  # three more attempts at the server


# --- what logs and rq info show ---------------------------------------------------------------------


def test_no_link_password_or_personal_field_reaches_the_log(smtp_sink, ucenter, worker_process, redis_url, connection):
    sink = smtp_sink("fails@example.org=451")
    peer = ucenter()
    link, password = "https://example.com/activate?token=LINK-SECRET-7c1", "PW-SECRET-99z"
    personal = ["Alice Personal", "alice.personal@example.org", "fails@example.org", "Fay Personal"]
    personal += ["dbuser77", "dbuser77@example.org", "plainuser", "plainuser@example.org"]
    q = queue(connection)
    plain = [
        q.enqueue(send_activation_mail, "alice.personal@example.org", "Alice Personal", link),  # the README's form
        q.enqueue(send_activation_mail, "fails@example.org", "Fay Personal", link + "2"),  # retried, then failed
    ]
    through_helpers = [
        enqueue_activation_mail(q, to="alice.personal@example.org", name="Alice Personal", link=link + "3"),
        enqueue_discuz_sync(q, 7, "dbuser77", "dbuser77@example.org", password=seal(password)),
    ]
    unsealed = q.enqueue(sync_discuz_user, "plainuser", "plainuser@example.org", password)  # fails
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
    # rq info lists counts and names only; what shows a job's text is a job view (rq-dashboard's, rq's API).
    shown = info.stdout + _what_rq_shows_of_the_jobs(connection, with_rq_description={job.id for job in plain})
    assert "4 finished, 2 failed" in shown and "VISIBLE-MARKER-123" in shown  # the control: a job's own text
    assert all(job.id in shown for job in [*plain, *through_helpers, unsealed, visible])
    assert "JobArgumentsError: sync_discuz_user: password must be sealed" in shown and "transient_failures" in shown
    for text in (link, password, *personal):
        assert text not in output, text
        assert text not in shown, text


def _what_rq_shows_of_the_jobs(connection, with_rq_description: set[str]) -> str:
    """What a job view (rq-dashboard's, through rq's API) shows of each job of the queue and its
    registries: id, status, description, meta and failure text.  ``with_rq_description``: jobs
    enqueued with a plain ``queue.enqueue``, whose description is rq's, arguments included, as
    docs/jobs.md says (use the helpers): theirs is left out, the rest of their view is not.  The return
    value is left out too: the jobs return the address or username they acted on, on purpose."""
    q = queue(connection)
    registries = [q.started_job_registry, q.finished_job_registry, q.failed_job_registry]
    registries += [q.deferred_job_registry, q.scheduled_job_registry, q.canceled_job_registry]
    job_ids = q.get_job_ids() + [job_id for registry in registries for job_id in registry.get_job_ids()]
    views = []
    for job in Job.fetch_many(job_ids, connection=connection):
        description = "(rq's description)" if job.id in with_rq_description else job.description
        views.append(f"{job.id} {job.get_status()} {description} {job.meta} {job.exc_info or ''}")
    return "\n".join(views)


def test_a_refused_address_is_never_quoted(smtp_sink, sentry_sink, worker_process, redis_url, connection):
    """email_validator's messages quote the address (a domain label, the part before the @-sign); the
    job's error says which rule failed in words of ours only."""
    sink, sentry = smtp_sink(), sentry_sink()
    addresses = {
        "labelmarkerone": "user@labelmarkerone\u0640x.example.org",  # IDNA: "Codepoint ... of '<label>'"
        "labelmarkertwo": "user@labelmarkertwo.\u0640.example.org",
        "labelmarkerthree": "user@xn--labelmarkerthree-.example.org",
        "labelmarkerfour": "user@labelmarkerfour\u05d0.example.org",  # a right-to-left letter in a left-to-right label
        "localmarkerfive": "localmarkerfive\u0640@example.org",
        "localmarkersix": "localmarkersix=?@example.org",
        "localmarkerseven": "localmarkerseven..x@example.org",
        "labelmarkereight": "user@labelmarkereight_.example.org",
        "labelmarkernine": "user@labelmarkernine",
    }
    q = queue(connection)
    jobs = {marker: q.enqueue(send_activation_mail, address, "Name", LINK) for marker, address in addresses.items()}
    jobs["localemarker"] = q.enqueue(send_activation_mail, "ok@example.org", "Name", LINK, "en\r\nlocalemarker")
    worker = run_burst(worker_process, redis_url, sink.settings(), "--verbose", "--sentry-dsn", sentry.dsn())
    events = sentry.events()
    received = b"".join(sentry.received()).decode("utf-8", "replace").lower()
    for marker, job in jobs.items():
        status, reason = outcome(job)
        for text in (worker.output().lower(), job.exc_info.lower(), received, json.dumps(events).lower()):
            assert marker not in text, (marker, reason)
        refusal = "jobs.outcomes.PermanentError: the locale is" if marker == "localemarker" else "jobs.mail.address"
        assert status == "failed" and reason.startswith(refusal), reason
    assert len(events) == len(jobs)
    # rq logs it at DEBUG ("Registering birth" in rq 2.3, "registering birth" later): the log searched is the DEBUG one
    assert "registering birth" in worker.output().lower()
    assert sink.raw_messages() == []


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
        ("regular", "::1%<img src=x onerror=alert(1)>", "regip must be empty or an IP address"),  # a "scope ID"
        ("regular", "fe80::1%eth0", "regip must be empty or an IP address"),
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
    settings = {**php_uc_client(peer), "DISCUZ_PHP_UC_CLIENT": str(client), "DISCUZ_ALLOW_API_ONLY_PASSWORDS": "1"}
    worker = run_burst(worker_process, redis_url, settings)
    status, reason = outcome(job)
    assert status == "failed"
    assert "without an answer after printing 0 bytes" in reason and "PHP wrote" in reason
    assert "not logged because the call carried the password" in reason
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
    assert reason == (
        f"jobs.discuz.errors.ForumConfigError: uc_client stopped with a PHP Error in {client}/client.php on line 4 "
        "(python -m jobs.discuz.uc_client_php --diagnose NAME shows PHP's errors)"
    )


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
    # Passwords the forum's own forms refuse are refused unless allowed (test_discuz_forum_rules.py).
    run_burst(worker_process, redis_url, {**forum.settings(), "DISCUZ_ALLOW_API_ONLY_PASSWORDS": "1"})
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


# --- ALLOWED_JOBS: what a pattern allows --------------------------------------------------------------

# What a module may hold that runs anything: each probe is (attribute, its arguments, the marker it
# leaves when it runs).  Chains through these are generated from the modules' namespaces.
DANGEROUS_MODULES = {"os", "subprocess", "sys", "importlib", "builtins"}


def _probe(module_name: str, marker, tripwire: str) -> tuple[str, list]:
    return {
        "os": ("mkdir", [str(marker)]),
        "subprocess": ("run", [["touch", str(marker)]]),
        "importlib": ("import_module", [tripwire]),
        "builtins": ("open", [str(marker), "w"]),
        "sys": ("exit", ["ran"]),  # SystemExit would be the job's failure, not JobNotAllowed
    }[module_name]


def _from_dangerous_module(function) -> bool:
    return (getattr(function, "__module__", None) or "").split(".")[0] in DANGEROUS_MODULES | {"posix"}


def _chains_through_dangerous_modules() -> list[tuple[str, str]]:
    """``(dotted chain, dangerous module)`` through every module of jobs/ and rq_gevent/ whose namespace
    holds one of ``DANGEROUS_MODULES`` or a function of theirs (``from os import getenv``)."""
    import importlib
    import inspect
    import pkgutil
    import types

    import jobs
    import rq_gevent

    chains = []
    for package in (jobs, rq_gevent):
        names = [package.__name__] + [
            info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
        ]
        for module_name in names:
            if module_name.endswith(".__main__"):
                continue
            module = importlib.import_module(module_name)
            for attribute, value in sorted(vars(module).items()):
                if isinstance(value, types.ModuleType) and value.__name__ in DANGEROUS_MODULES:
                    chains.append((f"{module_name}.{attribute}", value.__name__))
                elif inspect.isroutine(value) and _from_dangerous_module(value) and not attribute.startswith("__"):
                    chains.append((f"{module_name}.{attribute}", ""))
    return chains


def test_the_documented_allowed_jobs_hands_out_no_helper_of_jobs(
    worker_process, redis_url, connection, tmp_path, sealing_key
):
    """Found by a red team: under ``jobs.*`` every function *defined* in jobs/ ran, helpers included:
    ``jobs.settings.setting("JOBS_SEALING_KEY")`` stored the sealing key as its result, and
    ``SmtpSettings.load`` the SMTP password.  The docs' setting (``jobs.JOB_FUNCTIONS``, exact names)
    refuses them, and even under a wildcard a private name or a method never runs."""
    from rq import Queue

    from jobs import JOB_FUNCTIONS

    smtp_password = "SmtpPw-" + "h4rdening"
    settings = (f"REDIS_URL = {redis_url!r}\nSMTP_HOST = '127.0.0.1'\nSMTP_PORT = '2525'\nSMTP_USER = 'mailer'\n"
                f"SMTP_PASSWORD = {smtp_password!r}\nMAIL_FROM = 'site@example.com'\n")  # fmt: skip
    helpers = {  # name: (args, refused under JOB_FUNCTIONS, refused under jobs.*)
        "jobs.settings.setting": (["JOBS_SEALING_KEY"], True, False),  # public: a wildcard allows it
        "jobs.mail.smtp.SmtpSettings.load": ([], True, True),  # a method no pattern names exactly
        "jobs.sealing._fernet": ([], True, True),  # private
        "jobs.discuz.hashing.verify_password": (["guess", "$2b$04$" + "a" * 53, "", "utf-8"], True, False),
    }
    for config, patterns, column in (("exact_settings", list(JOB_FUNCTIONS), 1), ("wild_settings", ["jobs.*"], 2)):
        connection.flushall()
        (tmp_path / f"{config}.py").write_text(settings + f"ALLOWED_JOBS = {patterns!r}\n")
        q = Queue(QUEUE, connection=connection, serializer="rq.serializers.JSONSerializer")
        jobs = {name: q.enqueue(name, *spec[0]) for name, spec in helpers.items()}
        worker = worker_process(
            "--config", config, "-P", str(tmp_path), "--burst", "-S", "rq.serializers.JSONSerializer", QUEUE
        )
        assert worker.wait(60) == 0, worker.output()
        for name, job in jobs.items():
            status, reason = outcome(job)
            if helpers[name][column]:
                assert status == "failed" and "JobNotAllowed" in reason, (config, name, status, reason)
            else:  # the control: the wildcard does allow a public helper, as the docs say
                assert status != "failed" or "JobNotAllowed" not in reason, (config, name, reason)
        if column == 1:
            stored = json.dumps([job.return_value(refresh=True) for job in jobs.values()])
            assert sealing_key not in stored and smtp_password not in stored


def test_allowed_jobs_refuses_every_chain_through_a_module_an_allowed_one_imports(
    worker_process, redis_url, connection, tmp_path
):
    """The issue: with ``jobs.*`` allowed, ``jobs.sealing.os.system`` ran a shell command."""
    from rq import Queue

    chains = _chains_through_dangerous_modules()
    assert {"jobs.sealing.os", "jobs.settings.os", "jobs.discuz.uc_client_php.subprocess"} <= {c for c, _ in chains}
    assert {kind for _, kind in chains} >= {"os", "subprocess", "sys", "importlib"}
    q = Queue(QUEUE, connection=connection, serializer="rq.serializers.JSONSerializer")
    refused, markers = [], []
    for number, (chain, kind) in enumerate(chains):
        marker = tmp_path / f"ran-{number}"
        tripwire = f"tripwire_{number}"
        (tmp_path / f"{tripwire}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
        if kind:
            attribute, args = _probe(kind, marker, tripwire)
            refused.append(q.enqueue(f"{chain}.{attribute}", *args))
        else:
            refused.append(q.enqueue(chain, str(marker)))
        markers.append(marker)
    secret = q.enqueue("jobs.sealing.os.getenv", "JOBS_SEALING_KEY")
    allowed = q.enqueue("testjobs.green_sleep", 0, "fine")
    (tmp_path / "allow_settings.py").write_text(
        f"REDIS_URL = {redis_url!r}\nALLOWED_JOBS = ['jobs.*', 'rq_gevent.*', 'testjobs.*']\n"
    )
    worker = worker_process(
        "--config", "allow_settings", "-P", str(tmp_path), "--burst", "-S", "rq.serializers.JSONSerializer", QUEUE,
        env={"JOBS_SEALING_KEY": "k" * 43 + "="},
    )  # fmt: skip
    assert worker.wait(120) == 0, worker.output()
    assert outcome(allowed) == ("finished", "fine")
    for job in [*refused, secret]:
        status, reason = outcome(job)
        assert status == "failed" and reason.startswith("rq_gevent.allowlist.JobNotAllowed"), (job.func_name, reason)
        assert f"its function {job.func_name!r} is not in the worker's ALLOWED_JOBS" in reason
    assert secret.return_value() is None
    assert [marker for marker in markers if marker.exists()] == []


ALLOWPKG_DEFS = """
import functools
import os
from builtins import len

from allowpkg.marks import record


def plain(marker):
    record(marker)
    return "plain"


async def coroutine(marker):
    record(marker)
    return "coroutine"


class Tool:
    @staticmethod
    def static(marker):
        record(marker)
        return "static"

    @classmethod
    def klass(cls, marker):
        record(marker)
        return cls.__name__

    def method(self, marker=None):
        record(marker or self)
        return "method"

    class Inner:
        @staticmethod
        def deep(marker):
            record(marker)
            return "inner"


class Maker:
    def __init__(self, marker):
        record(marker)


instance = Tool()
bound = instance.method
part = functools.partial(plain)
lam = lambda marker: record(marker)  # noqa: E731


def callback(job, *args):
    record(job.args[0] + "-callback")


def _private(marker):
    record(marker)
"""


def _allowpkg(root) -> None:
    """A package of job functions for the pattern ``allowpkg.*``: ``marks.record`` leaves a file."""
    package = root / "allowpkg"
    (package / "nested").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "nested" / "__init__.py").write_text("")
    (package / "marks.py").write_text(
        "import os\n\ndef record(marker):\n    if isinstance(marker, str) and os.path.isabs(marker):\n"
        "        open(marker, 'w').close()\n"
    )
    (package / "defs.py").write_text(ALLOWPKG_DEFS)
    (package / "reexport.py").write_text("from allowpkg.defs import plain, callback  # noqa: F401\n")
    (package / "nested" / "deep.py").write_text(
        "from allowpkg.marks import record\n\ndef deep(marker):\n    record(marker)\n    return 'deep'\n"
    )


# Methods run only when a pattern names them exactly; the wildcard covers the module-level functions.
ALLOWPKG_PATTERNS = ["allowpkg.*", "allowpkg.defs.Tool.static", "allowpkg.defs.Tool.klass"]
ALLOWED_NAMES = {
    "allowpkg.defs.plain": "plain",
    "allowpkg.defs.coroutine": "coroutine",
    "allowpkg.defs.Tool.static": "static",
    "allowpkg.defs.Tool.klass": "Tool",
    "allowpkg.nested.deep.deep": "deep",
}
REFUSED_NAMES = [
    "allowpkg.reexport.plain",  # defined in allowpkg.defs: named where it is defined or not at all
    "allowpkg.defs.record",  # the same, from another allowed module
    "allowpkg.defs.instance.method",  # a method of a module-level instance
    "allowpkg.defs.bound",
    "allowpkg.defs.part",  # functools.partial
    "allowpkg.defs.lam",  # a lambda's __qualname__ is <lambda>
    "allowpkg.defs.len",  # a builtin
    "allowpkg.defs.Maker",  # a class: calling it runs its __init__
    "allowpkg.defs.os.mkdir",
    "allowpkg.defs.functools.partial",
    "allowpkg.marks.os.mkdir",
    "allowpkg.defs.Tool.method.__call__",
    "allowpkg.defs.Tool.__init__",
    "allowpkg.defs.Tool.Inner.deep",  # rq resolves Class.method, no deeper
    "allowpkg.defs.Tool.method",  # a method, and no pattern names it exactly (only the wildcard matches)
    "allowpkg.defs._private",  # a private name, whatever the patterns say
    "allowpkg.defs.__builtins__",
    "allowpkg..defs.plain",
    ".allowpkg.defs.plain",
    "allowpkg.defs.plain.",
    "allowpkg.defs",  # a module
]


def test_allowed_jobs_allows_only_functions_defined_where_their_name_says(
    worker_process, redis_url, connection, tmp_path
):
    from rq import Queue
    from rq.job import Callback

    _allowpkg(tmp_path)
    q = Queue(QUEUE, connection=connection, serializer="rq.serializers.JSONSerializer")
    allowed = {name: q.enqueue(name, str(tmp_path / f"allowed-{number}")) for number, name in enumerate(ALLOWED_NAMES)}
    refused = {name: q.enqueue(name, str(tmp_path / f"refused-{number}")) for number, name in enumerate(REFUSED_NAMES)}
    callbacks = [
        (role, q.enqueue("allowpkg.defs.plain", str(tmp_path / f"callback-{role}"), **{role: Callback(name)}))
        for role, name in (("on_success", "allowpkg.reexport.callback"), ("on_failure", "allowpkg.defs.os.mkdir"),
                           ("on_stopped", "allowpkg.defs.Maker"))
    ]  # fmt: skip
    fine_callback = q.enqueue("allowpkg.defs.plain", str(tmp_path / "with-callback"),
                              on_success=Callback("allowpkg.defs.callback"))  # fmt: skip
    # a dependent, enqueued by the worker once its dependency finished: its callbacks meet the same rule
    callbacks.append(("on_success", q.enqueue("allowpkg.defs.plain", str(tmp_path / "callback-dependent"),
                      depends_on=fine_callback, on_success=Callback("allowpkg.reexport.callback"))))  # fmt: skip
    (tmp_path / "allow_settings.py").write_text(f"REDIS_URL = {redis_url!r}\nALLOWED_JOBS = {ALLOWPKG_PATTERNS!r}\n")
    worker = worker_process(
        "--config", "allow_settings", "-P", str(tmp_path), "--burst", "-S", "rq.serializers.JSONSerializer", QUEUE
    )
    assert worker.wait(60) == 0, worker.output()
    for name, job in allowed.items():
        assert outcome(job) == ("finished", ALLOWED_NAMES[name]), name
    assert outcome(fine_callback) == ("finished", "plain")
    for name, job in refused.items():
        status, reason = outcome(job)
        assert status == "failed" and reason.startswith("rq_gevent.allowlist.JobNotAllowed"), (name, reason)
        assert f"its function {name!r} is not in the worker's ALLOWED_JOBS" in reason
    for role, job in callbacks:
        status, reason = outcome(job)
        assert status == "failed" and reason.startswith("rq_gevent.allowlist.JobNotAllowed"), (role, reason)
        assert f"its {role[3:]} callback" in reason
    ran = sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(("refused-", "callback-")))
    assert ran == [] and (tmp_path / "with-callback-callback").exists()
    assert sorted(path.name for path in tmp_path.glob("allowed-*")) == [f"allowed-{n}" for n in range(len(allowed))]


def test_what_allowed_jobs_resolves_is_what_rq_would_call(tmp_path, monkeypatch):
    """rq's own resolution of every allowed name gives the very object the check accepted."""
    from rq.utils import import_attribute

    from rq_gevent.allowlist import AllowedJobs, JobNotAllowed

    _allowpkg(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    allowed = AllowedJobs(ALLOWPKG_PATTERNS)
    for name in ALLOWED_NAMES:
        assert allowed.resolve(name) == import_attribute(name), name
    for name in REFUSED_NAMES:
        with pytest.raises(JobNotAllowed):
            allowed.resolve(name)


def test_a_refused_module_is_never_imported(tmp_path, monkeypatch):
    """Only modules the patterns cover are imported to resolve a name, even one that matches a pattern."""
    from rq_gevent.allowlist import AllowedJobs, JobNotAllowed

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "__init__.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n")
    (tmp_path / "outside" / "inner.py").write_text("def run():\n    pass\n")
    for patterns, name in ((["out*r.run"], "outside.inner.run"), (["jobs.*"], "outside.inner.run")):
        with pytest.raises(JobNotAllowed, match="covered|matches no pattern"):
            AllowedJobs(patterns).resolve(name)
    assert not (tmp_path / "imported").exists()


def test_allowed_jobs_guards_the_failure_callback_of_an_abandoned_job(worker_process, redis_url, connection, tmp_path):
    """rq's maintenance runs the failure callback of a job whose worker died mid-job: the same rule."""
    from rq import Queue
    from rq.job import Callback, Job

    _allowpkg(tmp_path)
    q = Queue(QUEUE, connection=connection, serializer="rq.serializers.JSONSerializer")
    jobs = {}
    for name in ("allowpkg.reexport.callback", "allowpkg.defs.callback"):
        job = Job.create("allowpkg.defs.plain", args=[str(tmp_path / name)], connection=connection, origin=QUEUE,
                         serializer=q.serializer, on_failure=Callback(name))  # fmt: skip
        job.set_status("started")  # as a dead worker leaves it: started, and long past its heartbeat
        job.save()
        connection.zadd(q.started_job_registry.key, {job.id: 1})
        jobs[name] = job
    (tmp_path / "allow_settings.py").write_text(f"REDIS_URL = {redis_url!r}\nALLOWED_JOBS = ['allowpkg.*']\n")
    worker = worker_process(
        "--config", "allow_settings", "-P", str(tmp_path), "--burst", "-S", "rq.serializers.JSONSerializer", QUEUE
    )
    assert worker.wait(60) == 0, worker.output()
    assert [outcome(job)[0] for job in jobs.values()] == ["failed", "failed"], worker.output()
    assert (tmp_path / "allowpkg.defs.callback-callback").exists(), worker.output()  # the instrument works
    assert not (tmp_path / "allowpkg.reexport.callback-callback").exists()
    assert "failure callback 'allowpkg.reexport.callback' not run: not in the worker's ALLOWED_JOBS" in worker.output()


# A job class whose ``perform`` calls ``self.func`` itself, never rq's private ``Job._execute``: a later
# rq that drops that call path.
BYPASSING_JOB = """
from rq.job import Job


class BypassingJob(Job):
    def perform(self):
        self._result = self.func(*self.args, **self.kwargs)
        return self._result
"""


def test_allowed_jobs_holds_when_rq_no_longer_calls_job_execute(worker_process, redis_url, connection, tmp_path):
    """The check sits in ``Job.func`` and the callback properties, not in a private call path of rq."""
    from rq import Queue
    from rq.job import Callback

    _allowpkg(tmp_path)
    (tmp_path / "bypassing.py").write_text(BYPASSING_JOB)
    q = Queue(QUEUE, connection=connection, serializer="rq.serializers.JSONSerializer")
    allowed = q.enqueue("allowpkg.defs.plain", str(tmp_path / "allowed"))
    chain = q.enqueue("allowpkg.defs.os.mkdir", str(tmp_path / "chain"))
    callback = q.enqueue(
        "allowpkg.defs.plain", str(tmp_path / "callback"), on_success=Callback("allowpkg.reexport.callback")
    )
    (tmp_path / "allow_settings.py").write_text(f"REDIS_URL = {redis_url!r}\nALLOWED_JOBS = ['allowpkg.*']\n")
    worker = worker_process(
        "--config", "allow_settings", "-P", str(tmp_path), "--burst", "-S", "rq.serializers.JSONSerializer",
        "--job-class", "bypassing.BypassingJob", QUEUE,
    )  # fmt: skip
    assert worker.wait(60) == 0, worker.output()
    assert outcome(allowed) == ("finished", "plain")
    for job in (chain, callback):
        status, reason = outcome(job)
        assert status == "failed" and reason.startswith("rq_gevent.allowlist.JobNotAllowed"), reason
    assert not (tmp_path / "chain").exists() and not (tmp_path / "callback-callback").exists()
