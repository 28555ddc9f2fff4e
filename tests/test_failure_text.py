"""What a failed job leaves behind (the worker's log, Redis, Sentry): no exception message of a sensitive
job, and bounded text from any job, however large its input.  Real worker processes, a real Redis, the
local Sentry sink.  Each search is paired with a control that finds what we know is there, so an empty
search cannot pass by accident.
"""

from __future__ import annotations

import pytest
import sentryjobs
import testjobs
from redis_dump import redis_dump as every_value
from rq import Queue
from rq.job import Job
from sentryjobs import derived_markers

from jobs.mail.activation import send_activation_mail
from rq_gevent.core.error_text import ERROR_TEXT_MAX, SENTRY_TAG_MAX, SENTRY_VALUE_MAX, WITHHELD

# Talks to Sentry: also run with the oldest sentry-sdk setup.cfg declares (noxfile.py).
pytestmark = pytest.mark.sentry


def redis_dump(connection) -> str:
    return every_value(connection).decode(errors="replace")


def stored_errors(job: Job) -> list[str]:
    """The error rq keeps in the job's failure result, and before rq 3 in the job's hash too."""
    job.refresh()
    return [job.latest_result().exc_string, *([job._exc_info] if job._exc_info is not None else [])]


@pytest.mark.parametrize("config", ["sentry_config", "sentry_by_hand"])  # rq-gevent's Sentry set-up, or the app's
def test_a_sensitive_jobs_exception_message_leaves_the_process_nowhere(
    connection, redis_url, worker_process, sentry_sink, config
):
    sink = sentry_sink()
    queue = Queue(connection=connection)
    secrets = {"marked": "Marked-Pw-4417", "pattern": "Pattern-Pw-5528", "control": "Control-Pw-6639"}
    marked = queue.enqueue(sentryjobs.derived_marked, "alice", secrets["marked"])
    by_pattern = queue.enqueue(sentryjobs.derived_by_pattern, "bob", secrets["pattern"])
    control = queue.enqueue(sentryjobs.derived_unmarked, "carol", secrets["control"])
    worker = worker_process(
        "-u", redis_url, "--burst", "--logging-level", "DEBUG", "--config", config,
        env={"TEST_SENTRY_DSN": sink.dsn()},
    )  # fmt: skip
    assert worker.wait(60) == 0, worker.output()

    log = worker.output()
    dump = redis_dump(connection)
    events = b"\n".join(sink.received()).decode(errors="replace")
    by_job = {event["extra"]["rq-job"]["job_id"]: event for event in sink.events()}  # sentry-sdk's own
    # Controls: an ordinary job's message, its cause's and its note reach every haystack.
    for marker in derived_markers(secrets["control"]):
        assert (marker in log, marker in dump, marker in events) == (True, True, True), marker
    assert f"while trying {secrets['control']}" in log + dump + events
    assert secrets["control"].upper() in by_job[control.id]["exception"]["values"][-1]["value"]
    for job in (marked, by_pattern):
        secret = secrets["marked" if job is marked else "pattern"]
        for marker in [secret, secret[:8], *derived_markers(secret)]:
            assert marker not in log, marker
            assert marker not in events, marker
        for marker in derived_markers(secret):  # the secret itself is the job's argument, in its hash
            assert marker not in dump, marker
        # What the operator needs stays: types, frames, why the message is missing.
        for text in (log, *stored_errors(job)):
            assert f"KeyError: {WITHHELD}" in text and f"RuntimeError: {WITHHELD}" in text
            assert 'sentryjobs.py", line' in text and "in _raise_derived" in text
        exceptions = by_job[job.id]["exception"]["values"]
        assert [(value["type"], value["value"]) for value in exceptions] == [
            ("KeyError", WITHHELD),
            ("RuntimeError", WITHHELD),
        ]
        frames = exceptions[-1]["stacktrace"]["frames"]
        assert frames[-1]["function"] == "_raise_derived" and frames[-1]["filename"].endswith("sentryjobs.py")
        assert not any("vars" in frame for value in exceptions for frame in value["stacktrace"]["frames"])


def test_the_workers_own_messages_show_for_a_sensitive_job(connection, redis_url, worker_process):
    """A timeout's message is the worker's, not the job's: public (rq_gevent.sensitivity.public_message)."""
    job = Queue(connection=connection).enqueue(sentryjobs.sleep_marked, 30, job_timeout=1)
    worker = worker_process("-u", redis_url, "--burst")
    assert worker.wait(60) == 0, worker.output()
    for text in (worker.output(), *stored_errors(job)):
        assert "JobTimeoutException: Task exceeded maximum timeout value (1 seconds)" in text


def test_a_megabyte_of_input_leaves_bounded_text_in_logs_redis_and_sentry(
    connection, redis_url, worker_process, sentry_sink
):
    sink = sentry_sink()
    queue = Queue(connection=connection)
    megabyte = 1_000_000
    huge = queue.enqueue(testjobs.fail, "M" * megabyte, job_id="I" * megabyte)
    locale = queue.enqueue(send_activation_mail, "ann@example.org", "Ann", "https://example.com/a?t=1", "L" * megabyte)
    worker = worker_process(
        "-u", redis_url, "--burst", "--logging-level", "DEBUG", "--sentry-dsn", sink.dsn(),
        env={"MAIL_FROM": "Example <noreply@example.com>"},
    )  # fmt: skip
    assert worker.wait(60) == 0, worker.output()

    log = worker.output()
    # Controls: both failed, and each haystack holds the start of the huge input, cut.
    assert huge.get_status(refresh=True) == "failed" and locale.get_status(refresh=True) == "failed"
    assert "I" * 50 in log and "M" * 50 in log
    assert max(len(line) for line in log.splitlines()) < ERROR_TEXT_MAX
    assert len(log) < 200_000  # a few dozen lines; the job id alone is in ten of them
    assert "characters cut ...]" in log
    for text in stored_errors(huge):
        assert "ValueError: " + "M" * 50 in text and "characters cut ...]" in text
        assert len(text) <= ERROR_TEXT_MAX
    for text in stored_errors(locale):  # the mail job's refusal names the rule, never the locale
        assert "PermanentError: the locale is not a language code" in text and "LLLL" not in text
        assert len(text) <= ERROR_TEXT_MAX

    events = sink.events()
    assert len(events) == 2
    for body in sink.received():
        assert len(body) < 8 * SENTRY_VALUE_MAX, len(body)
    huge_event = next(event for event in events if event["tags"]["rq.func"] == "testjobs.fail")
    assert huge_event["tags"]["rq.job_id"].startswith("I" * 40)
    assert len(huge_event["tags"]["rq.job_id"]) <= SENTRY_TAG_MAX
    value = huge_event["exception"]["values"][-1]["value"]
    # Cut by our cap, or first by sentry-sdk's own max_value_length (1,024 in 2.20; far higher later).
    assert value.startswith("M" * 50) and len(value) <= SENTRY_VALUE_MAX


SHAPED_JOBS = """
from rq_gevent import sensitive


@sensitive
def group(user, secret):
    raise ExceptionGroup("group " + secret[::-1], [ValueError("member " + secret[::-1])])


@sensitive
def nested_group(user, secret):
    inner = BaseExceptionGroup("inner " + secret[::-1], [KeyboardInterrupt("deep " + secret[::-1])])
    raise BaseExceptionGroup("outer", [inner, ValueError("side")])


@sensitive
def from_unraised_cause(user, secret):
    raise RuntimeError("sync failed") from ValueError("cause " + secret[::-1])


@sensitive
def many_lines(user, secret):
    raise ValueError("first line\\n" + secret[::-1])


@sensitive
def syntax_error(user, secret):
    compile("x = '" + secret[::-1] + "' +", "<template>", "exec")
"""
SHAPES = ["group", "nested_group", "from_unraised_cause", "many_lines", "syntax_error"]


def test_a_sensitive_jobs_message_is_withheld_whatever_its_tracebacks_first_line(
    connection, redis_url, worker_process, tmp_path, sentry_sink
):
    """rq logs ``exception raised while executing (...)\\n<traceback>``: an exception group's starts with
    ``  + Exception Group Traceback``, a chain's whose first exception was never raised with that
    exception's message; neither starts with ``Traceback (most recent call last):``.  The messages
    are derived from the secret (reversed), so only withholding, not matching, keeps them out."""
    sink = sentry_sink()
    (tmp_path / "shapedjobs.py").write_text(SHAPED_JOBS)
    secret = "Shaped-Secret-7781"
    queue = Queue(connection=connection)
    jobs = [queue.enqueue(f"shapedjobs.{shape}", "alice", secret) for shape in SHAPES]
    worker = worker_process("-u", redis_url, "-P", str(tmp_path), "--burst", "--sentry-dsn", sink.dsn())
    assert worker.wait(60) == 0, worker.output()
    log = worker.output()
    events = b"\n".join(sink.received()).decode(errors="replace")
    for job in jobs:  # the instrument: rq's line is there for each, and each failure was recorded
        assert f"job {job.id}: exception raised while executing" in log or f"[Job {job.id}]" in log, job
        assert job.get_status(refresh=True) == "failed" and WITHHELD in stored_errors(job)[-1]
    haystacks = {"log": log, "redis": redis_dump(connection), "sentry": events}
    leaks = [(name, line) for name, text in haystacks.items() for line in text.splitlines() if secret[::-1] in line]
    assert leaks == []
    assert "ExceptionGroup" in log and "SyntaxError" in log and len(sink.events()) == len(SHAPES)


NOTED_JOBS = """
from jobs.outcomes import PermanentError
from rq_gevent import sensitive


@sensitive
def noted(user, secret):
    try:
        raise PermanentError("the forum refused the account")  # public: constants only
    except PermanentError as error:
        error.add_note("while syncing " + secret[::-1])  # a note is not the message the class vouches for
        raise
"""


def test_a_public_exceptions_notes_are_not_public(connection, redis_url, worker_process, tmp_path, sentry_sink):
    """``public_message`` vouches for an exception class's *message*; traceback.format_exception_only
    (and sentry-sdk, which appends notes to the value) also show its ``__notes__``, which anything up
    the stack may add: a sensitive job's note, derived from its secret (reversed here, so value
    matching cannot catch it), stays out of the worker log, the failure stored in Redis and Sentry."""
    sink = sentry_sink()
    (tmp_path / "notedjobs.py").write_text(NOTED_JOBS)
    secret = "Noted-Secret-3390"
    job = Queue(connection=connection).enqueue("notedjobs.noted", "alice", secret)
    worker = worker_process("-u", redis_url, "-P", str(tmp_path), "--burst", "--sentry-dsn", sink.dsn())
    assert worker.wait(60) == 0, worker.output()
    stored = stored_errors(job)[-1]
    events = b"\n".join(sink.received()).decode(errors="replace")
    haystacks = {"log": worker.output(), "redis": stored, "sentry": events}
    for text in haystacks.values():  # the instrument: the public message is shown
        assert "the forum refused the account" in text
    assert [name for name, text in haystacks.items() if secret[::-1] in text] == []


ABANDONED_JOBS = """
from rq_gevent import sensitive


@sensitive
def charge(user, secret):
    return "charged"


def on_failure(job, connection, kind, value, traceback):
    # notifying the user failed: an exception quoting what it was given, as libraries' do
    raise ConnectionError("could not notify about card " + job.args[1][::-1])
"""


def test_a_sensitive_abandoned_jobs_failure_callback_error_stays_out_of_the_log(
    connection, redis_url, worker_process, tmp_path, sentry_sink
):
    """rq's maintenance runs the failure callback of a job whose worker died (StartedJobRegistry.cleanup),
    outside any job's greenlet, and logs a raising callback with ``logger.exception`` (rq 3:
    rq.registry; rq 2 raises it out of the maintenance): its message stays out of the log and,
    through sentry-sdk's logging integration, of Sentry; its type stays."""
    from rq.job import Callback

    (tmp_path / "abandonedjobs.py").write_text(ABANDONED_JOBS)
    secret = "Abandoned-Card-4242"
    queue = Queue(connection=connection)
    job = Job.create("abandonedjobs.charge", args=["alice", secret], connection=connection, origin=queue.name,
                     on_failure=Callback("abandonedjobs.on_failure"))  # fmt: skip
    job.set_status("started")  # as a dead worker leaves it: started, long past its heartbeat
    job.save()
    connection.zadd(queue.started_job_registry.key, {job.id: 1})
    sink = sentry_sink()
    worker = worker_process("-u", redis_url, "-P", str(tmp_path), "--burst", "--sentry-dsn", sink.dsn())
    assert worker.wait(60) == 0, worker.output()
    log = worker.output()
    events = b"\n".join(sink.received()).decode(errors="replace")
    assert "failure callback" in log and "ConnectionError" in log  # the instrument: the callback ran
    assert (secret[::-1] in log, secret[::-1] in events) == (False, False)
    assert f"ConnectionError: {WITHHELD}" in log  # its type and frames stay
