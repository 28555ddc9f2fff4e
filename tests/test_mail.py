"""send_activation_mail against a real SMTP server (aiosmtpd) with STARTTLS and AUTH."""

from __future__ import annotations

import re

import pytest
from conftest import wait_until
from jobrun import outcome, queue, run_burst
from rq.job import Job

from jobs.enqueue import enqueue_activation_mail
from jobs.mail.activation import send_activation_mail

# Runs once, not on each rq, Python and server (docs/contributing.md):
# the job module against an SMTP server; rq's retries are test_lifecycle's, but those after a delay (below).
pytestmark = pytest.mark.once

LINK = "https://example.com/activate?token=abc123"


def test_multipart_message_with_chinese_name_arrives_intact(smtp_sink, worker_process, redis_url, connection):
    sink = smtp_sink()
    job = enqueue_activation_mail(queue(connection), to="li.lei@example.org", name="李雷", link=LINK, locale="zh")
    run_burst(worker_process, redis_url, sink.settings())

    status, result = outcome(job)
    assert status == "finished", result
    assert result["sent"] is True
    (raw,) = sink.raw_messages()
    raw.decode("ascii")  # RFC 5322 on the wire: every non-ASCII header and body is encoded
    (message,) = sink.messages()
    assert message["To"].addresses[0].display_name == "李雷"
    assert message["To"].addresses[0].addr_spec == "li.lei@example.org"
    assert message["Subject"] == "激活您的 Example 账户"
    assert message["From"].addresses[0].addr_spec == "noreply@example.com"
    assert message["Date"].datetime is not None
    assert message["Message-ID"] == result["message_id"]
    assert re.fullmatch(r"<activation\.[0-9a-f]{32}@example\.com>", message["Message-ID"])
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    markup = message.get_body(("html",)).get_content()
    assert "李雷，您好" in text and LINK in text
    assert f'href="{LINK}"' in markup and "李雷" in markup
    (delivery,) = [event for event in sink.events() if event["event"] == "message"]
    assert delivery["tls"] is True and delivery["authenticated"] is True


def test_english_template_and_html_escaping(smtp_sink, worker_process, redis_url, connection):
    sink = smtp_sink()
    queue(connection).enqueue(send_activation_mail, "bob@example.org", "Bob <script>", LINK + "&x=1")
    run_burst(worker_process, redis_url, sink.settings())
    (message,) = sink.messages()
    assert message["Subject"] == "Activate your Example account"
    assert message["To"].addresses[0].display_name == "Bob <script>"
    markup = message.get_body(("html",)).get_content()
    assert "Bob &lt;script&gt;" in markup and "<script>" not in markup
    assert 'href="https://example.com/activate?token=abc123&amp;x=1"' in markup


def test_without_a_site_name_the_mail_names_the_sender_or_the_links_site(smtp_sink, worker_process, redis_url,
                                                                          connection):  # fmt: skip
    """No MAIL_SITE_NAME: the subject read "Activate your our site account"."""
    sink = smtp_sink()
    settings = {key: value for key, value in sink.settings().items() if key != "MAIL_SITE_NAME"}
    senders = [("Example Site <noreply@example.com>", "Example Site"), ("noreply@example.com", "example.com")]
    for number, (sender, site) in enumerate(senders):
        queue(connection).enqueue(
            send_activation_mail, "dan@example.org", "Dan", f"https://www.example.com/a?t={number}"
        )
        run_burst(worker_process, redis_url, {**settings, "MAIL_FROM": sender})
        message = sink.messages()[-1]
        assert message["Subject"] == f"Activate your {site} account"
        text = message.get_body(("plain",)).get_content()
        assert f"Welcome to {site}." in text and text.rstrip().splitlines()[-2:] == ["-- ", site]
        assert "our site" not in message.as_string()
    refused = queue(connection).enqueue(send_activation_mail, "dan@example.org", "Dan", "https:///a?t=1")
    run_burst(worker_process, redis_url, settings)
    status, reason = outcome(refused)
    assert status == "failed" and reason.endswith("the activation link names no host"), reason


def test_site_templates_override_the_built_in_ones(smtp_sink, worker_process, redis_url, connection, tmp_path):
    (tmp_path / "templates" / "en").mkdir(parents=True)
    (tmp_path / "templates" / "en" / "activation.subject.txt").write_text("Welcome aboard, $name")
    sink = smtp_sink()
    queue(connection).enqueue(send_activation_mail, "carol@example.org", "Carol", LINK)
    run_burst(worker_process, redis_url, {**sink.settings(), "MAIL_TEMPLATE_DIR": str(tmp_path / "templates")})
    (message,) = sink.messages()
    assert message["Subject"] == "Welcome aboard, Carol"
    assert "Welcome to Example" in message.get_body(("plain",)).get_content()  # the built-in body still applies


def test_connections_are_reused_across_jobs(smtp_sink, worker_process, redis_url, connection):
    sink = smtp_sink()
    jobs = [
        queue(connection).enqueue(send_activation_mail, f"user{n}@example.org", f"User {n}", f"{LINK}{n}")
        for n in range(30)
    ]
    run_burst(worker_process, redis_url, {**sink.settings(), "SMTP_POOL_SIZE": "3"}, "-c", "10")
    assert [outcome(job)[0] for job in jobs] == ["finished"] * 30
    assert len(sink.raw_messages()) == 30
    connections = {event["connection"] for event in sink.events() if event["event"] == "message"}
    assert 1 <= len(connections) <= 3, sink.events()


def test_same_activation_enqueued_twice_sends_one_mail(smtp_sink, worker_process, redis_url, connection):
    sink = smtp_sink()
    first = enqueue_activation_mail(queue(connection), to="dave@example.org", name="Dave", link=LINK)
    second = enqueue_activation_mail(queue(connection), to="Dave@Example.org", name="Dave", link=LINK)
    assert second.id == first.id and queue(connection).count == 1
    # A duplicate that bypassed the helper (another job id, same address and link) is dropped by the job.
    duplicate = queue(connection).enqueue(send_activation_mail, "dave@example.org", "Dave", LINK)
    run_burst(worker_process, redis_url, sink.settings())
    results = [outcome(first), outcome(duplicate)]
    assert [status for status, _ in results] == ["finished", "finished"], results
    assert sorted(result["sent"] for _, result in results) == [False, True]
    assert len(sink.raw_messages()) == 1
    again = enqueue_activation_mail(queue(connection), to="dave@example.org", name="Dave", link=LINK)
    assert again.id == first.id and queue(connection).count == 0


def test_invalid_address_fails_at_once(smtp_sink, worker_process, redis_url, connection):
    sink = smtp_sink()
    job = queue(connection).enqueue(send_activation_mail, "not-an-address", "Eve", LINK)
    run_burst(worker_process, redis_url, sink.settings())
    status, reason = outcome(job)
    assert status == "failed"
    assert reason == "jobs.mail.address.AddressRefused: the recipient address must have exactly one @-sign"
    assert Job.fetch(job.id, connection=connection).number_of_retries is None
    assert sink.events() == []


def test_5xx_rejection_fails_without_retry(smtp_sink, worker_process, redis_url, connection):
    sink = smtp_sink("gone@example.org=550")
    job = queue(connection).enqueue(send_activation_mail, "gone@example.org", "Gone", LINK)
    worker = run_burst(worker_process, redis_url, sink.settings())
    status, reason = outcome(job)
    assert status == "failed"
    assert "rejected the recipient: 550" in reason
    assert job.number_of_retries is None
    assert "retrying" not in worker.output()
    assert sink.raw_messages() == []


def test_4xx_answers_are_retried_and_the_last_failure_says_why(smtp_sink, worker_process, redis_url, connection):
    sink = smtp_sink("busy@example.org=451")
    job = queue(connection).enqueue(send_activation_mail, "busy@example.org", "Busy", LINK)
    worker = run_burst(worker_process, redis_url, sink.settings())
    status, reason = outcome(job)
    assert status == "failed"
    assert job.number_of_retries == 2
    assert "TransientError: SMTP server" in reason and "deferred the recipient: 451" in reason
    assert worker.output().count("retrying in 0 s") == 2


@pytest.mark.every_version  # a returned Retry with a delay, then rq's scheduler: rq's own code on each version
def test_unreachable_server_is_retried_then_delivered(smtp_sink, worker_process, redis_url, connection):
    sink = smtp_sink()
    sink.server.stop()
    job = queue(connection).enqueue(send_activation_mail, "frank@example.org", "Frank", LINK)
    worker = worker_process(
        "-u", redis_url, "--with-scheduler", "jobs", env={**sink.settings(), "JOBS_RETRY_INTERVALS": "1,1,1,1,1,1,1,1"}
    )
    wait_until(lambda: "unreachable: Connection refused" in worker.output(), timeout=20, what="a refused attempt")
    sink.start()
    wait_until(lambda: job.get_status(refresh=True) == "finished", timeout=30, what="delivery after the restart")
    assert len(sink.raw_messages()) == 1
    # (rq 2.3.3 does not keep number_of_retries on a job that finished after a scheduled retry: count the log.)
    assert 1 <= worker.output().count("retrying in 1 s") < 8


@pytest.mark.every_version  # jobs.outcomes counts retries as each rq version records them
def test_retries_after_an_interval_end_on_every_rq_version(smtp_sink, worker_process, redis_url, connection):
    """A retry scheduled after an interval (not 0 s) is counted too: rq 2.3.3 never increments
    number_of_retries for those, so counting on it retried a busy recipient for ever."""
    from jobs.outcomes import transient_failures

    sink = smtp_sink("busy@example.org=451")
    job = queue(connection).enqueue(send_activation_mail, "busy@example.org", "Busy", LINK)
    worker = worker_process(
        "-u", redis_url, "--with-scheduler", "jobs", env={**sink.settings(), "JOBS_RETRY_INTERVALS": "1,1"}
    )
    wait_until(lambda: job.get_status(refresh=True) == "failed", timeout=30, what="the job to give up")
    assert worker.output().count("retrying in 1 s") == 2
    assert transient_failures(Job.fetch(job.id, connection=connection)) == 2
    assert "deferred the recipient: 451" in outcome(job)[1]


def test_timeouts_are_retried(smtp_sink, worker_process, redis_url, connection):
    sink = smtp_sink("slow@example.org=sleep:4")
    job = queue(connection).enqueue(send_activation_mail, "slow@example.org", "Slow", LINK)
    run_burst(worker_process, redis_url, {**sink.settings(), "SMTP_TIMEOUT": "1"})
    status, reason = outcome(job)
    assert status == "failed" and job.number_of_retries == 2
    assert "timed out after 1 s" in reason


def test_wrong_smtp_password_is_a_clear_permanent_error(smtp_sink, worker_process, redis_url, connection):
    sink = smtp_sink()
    job = queue(connection).enqueue(send_activation_mail, "gina@example.org", "Gina", LINK)
    worker = run_burst(worker_process, redis_url, {**sink.settings(), "SMTP_PASSWORD": "wrong-password-123"})
    status, reason = outcome(job)
    assert status == "failed" and job.number_of_retries is None
    assert "refused the login for SMTP_USER (535)" in reason
    assert "wrong-password-123" not in worker.output() + (job.exc_info or "")


def test_implicit_tls_and_settings_from_the_worker_config_module(
    smtp_sink, worker_process, redis_url, connection, tmp_path
):
    sink = smtp_sink(implicit_tls=True)
    settings = sink.settings()
    assert settings["SMTP_SECURITY"] == "tls"
    module = "".join(f"{name} = {value!r}\n" for name, value in settings.items() if name != "SMTP_PASSWORD")
    (tmp_path / "site_settings.py").write_text(module)
    job = queue(connection).enqueue(send_activation_mail, "hank@example.org", "Hank", LINK)
    worker = worker_process(
        "-u",
        redis_url,
        "--burst",
        "-P",
        str(tmp_path),
        "--config",
        "site_settings",
        "jobs",
        env={"SMTP_PASSWORD": settings["SMTP_PASSWORD"]},  # the secret in the environment, the rest in the module
    )
    assert worker.wait(60) == 0, worker.output()
    assert outcome(job)[0] == "finished", outcome(job)
    (delivery,) = [event for event in sink.events() if event["event"] == "message"]
    assert delivery["tls"] is True and delivery["authenticated"] is True
