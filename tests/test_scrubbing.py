"""The value scrubber and the failure text on their own: what counts as a secret of a job, where it is
found, what a sensitive job's failure shows."""

import io
import logging
import sys

import pytest

from rq_gevent import public_message
from rq_gevent.core.error_text import ERROR_TEXT_MAX, MESSAGE_MAX, WITHHELD, cap, describe_failure
from rq_gevent.core.job_code_outside import mark_withheld
from rq_gevent.core.log_bounds import BoundedRecordFilter
from rq_gevent.integrations.scrubbing import (
    FILTERED,
    redact,
    secret_strings,
    trim_subprocess_breadcrumbs,
    withhold_exception_messages,
)

# Talks to Sentry: also run with the oldest sentry-sdk setup.cfg declares (noxfile.py).
pytestmark = pytest.mark.sentry


class Account:
    def __init__(self, login: str, password: str):
        self.login = login
        self.password = password


def test_values_are_collected_from_nested_arguments_and_objects_and_names_are_not():
    found = secret_strings(("user1", {"token": b"tok-123456"}), {"account": Account("login1", "pw-98765")})
    assert {"user1", "tok-123456", "login1", "pw-98765"} <= set(found)
    # Keyword argument names, mapping keys, attribute names: words of every file name and message.
    assert not {"token", "account", "login", "password"} & set(found)
    assert found == sorted(found, key=len, reverse=True)  # longest replaced first


def test_short_strings_are_not_secrets_and_repr_spellings_are():
    secret = "C:\\keys\\k1"
    found = secret_strings(["id", secret])
    assert "id" not in found
    assert repr(secret)[1:-1] in found and repr(secret)[1:-1] != secret  # how a message quoting a repr() shows it


def test_redact_reaches_every_string_of_the_event_keys_included():
    event = {
        "exception": {"values": [{"value": "Command '['tool', 'pw-98765']' failed"}]},
        "breadcrumbs": {"values": [{"message": "logging in with pw-98765", "data": {"pw-98765": 1}}]},
        "tags": ("pw-98765-suffix",),
        "number": 7,
    }
    redacted = redact(event, secret_strings("pw-98765"))
    assert "pw-98765" not in repr(redacted)
    assert redacted["exception"]["values"][0]["value"] == f"Command '['tool', '{FILTERED}']' failed"
    assert redacted["tags"] == (f"{FILTERED}-suffix",) and redacted["number"] == 7


def test_subprocess_breadcrumbs_keep_only_the_program():
    event = {
        "breadcrumbs": {
            "values": [
                {"category": "subprocess", "message": "/usr/bin/php bridge.php secret-arg"},
                {"category": "subprocess", "message": "/bin/true"},
                {"category": "log", "message": "kept as it is"},
            ]
        }
    }
    trim_subprocess_breadcrumbs(event)
    assert [crumb["message"] for crumb in event["breadcrumbs"]["values"]] == [
        f"php {FILTERED}",
        "true",
        "kept as it is",
    ]


def test_redact_keeps_code_locations_and_event_keys_whole():
    # Values a job may well be given that are also parts of names: a user called "name" or "file".
    event = {
        "exception": {
            "values": [
                {
                    "type": "ForumConflict",
                    "module": "jobs.discuz.errors",
                    "value": "the name is taken",
                    "stacktrace": {
                        "frames": [
                            {"filename": "jobs/mail/activation.py", "function": "send_activation_mail",
                             "context_line": "    self.name = name", "lineno": 3}
                        ]
                    },
                }
            ]
        },
        "breadcrumbs": {"values": [{"message": "hello name", "data": {"filename": "x"}}]},
    }  # fmt: skip
    redacted = redact(event, secret_strings("name", "file", "activation"))
    value = redacted["exception"]["values"][0]
    assert value["stacktrace"]["frames"][0] == event["exception"]["values"][0]["stacktrace"]["frames"][0]
    assert value["type"] == "ForumConflict" and value["value"] == f"the {FILTERED} is taken"
    assert redacted["breadcrumbs"]["values"][0] == {"message": f"hello {FILTERED}", "data": {"filename": "x"}}


def test_withheld_messages_keep_types_and_public_ones_only_where_the_chain_matches():
    # sentry-sdk's value of a public exception appends its notes: only the public message is kept
    values = [{"type": "KeyError", "value": "k"}, {"type": "JobNotAllowed", "value": "j\na note"}]
    event = {"exception": {"values": values}}
    withhold_exception_messages(event, WITHHELD, [("KeyError", None), ("JobNotAllowed", "j")])
    assert [value["value"] for value in event["exception"]["values"]] == [WITHHELD, "j"]
    other = {"exception": {"values": [{"type": "RuntimeError", "value": "r"}]}}
    withhold_exception_messages(other, WITHHELD, [("JobNotAllowed", "j")])  # not the same chain: withheld
    assert other["exception"]["values"][0]["value"] == WITHHELD


def _failing(secret: str, error_type: type[Exception] = RuntimeError) -> tuple:
    try:
        try:
            raise KeyError(secret)
        except KeyError:
            error = error_type(f"refused {secret.upper()}")
            error.add_note(f"note {secret[::-1]}")
            raise error  # noqa: B904 - the implicit context is what the test formats
    except Exception:
        return sys.exc_info()


def test_a_sensitive_failure_keeps_types_and_frames_and_no_message():
    text = describe_failure(*_failing("pw-98765"), sensitive=True)
    assert "98765" not in text and "PW-98765" not in text and "56789-wp" not in text
    assert f"KeyError: {WITHHELD}" in text and f"RuntimeError: {WITHHELD}" in text
    assert "During handling of the above exception" in text
    assert 'test_scrubbing.py", line' in text and "in _failing" in text
    plain = describe_failure(*_failing("pw-98765"), sensitive=False)
    assert "RuntimeError: refused PW-98765\nnote 56789-wp" in plain and "KeyError: 'pw-98765'" in plain


@public_message
class QuotaExceeded(ValueError):
    """Its message names a quota, never an input."""


def test_a_public_message_shows_for_a_sensitive_job():
    text = describe_failure(*_failing("pw-98765", QuotaExceeded), sensitive=True)
    assert "QuotaExceeded: refused PW-98765" in text  # the job's author vouched for it (here wrongly)
    assert f"KeyError: {WITHHELD}" in text  # its cause is no public exception


@public_message
class Refused(ValueError):
    """Its ``str()`` is a constant; its arguments are not."""

    def __str__(self) -> str:
        return "refused"


def test_a_public_message_shows_without_its_notes_or_arguments_for_a_sensitive_job():
    exc_info = _failing("pw-98765", QuotaExceeded)
    exc_info[1].add_note("noted pw-56789")
    text = describe_failure(*exc_info, sensitive=True)
    assert "QuotaExceeded: refused PW-98765" in text and "pw-56789" not in text
    assert "noted pw-56789" in describe_failure(*exc_info, sensitive=False)  # not sensitive: shown whole
    stream, record_filter, logger = io.StringIO(), BoundedRecordFilter(lambda: (True, None)), logging.getLogger("t.p")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.addFilter(record_filter)
    try:
        logger.warning("failed: %r", Refused("pw-11111"))  # repr() would show the arguments
    finally:
        logger.removeFilter(record_filter)
        logger.removeHandler(handler)
    assert stream.getvalue() == "failed: 'refused'\n"


def test_a_public_message_in_sentry_is_scrubbed_of_the_jobs_strings_and_has_no_notes():
    from rq_gevent.integrations.sentry import _public_messages

    error = QuotaExceeded("refused pw-98765")
    error.add_note("noted pw-56789")  # sentry-sdk's value would end with it
    assert _public_messages(error, ["pw-98765"]) == [("QuotaExceeded", f"refused {FILTERED}")]
    assert _public_messages(KeyError("pw-98765"), []) == [("KeyError", None)]


def test_failure_text_is_bounded_with_the_type_and_the_end_kept():
    text = describe_failure(*_failing("x" * 1_000_000), sensitive=False)
    assert len(text) <= ERROR_TEXT_MAX and "RuntimeError: refused XXXX" in text and "characters cut ...]" in text
    assert len(cap("y" * 5000, MESSAGE_MAX)) == MESSAGE_MAX and cap("short", MESSAGE_MAX) == "short"


def test_log_records_are_bounded_and_a_sensitive_jobs_exceptions_show_their_type_only():
    sensitive = False
    stream = io.StringIO()
    logger = logging.getLogger("tests.log_bounds")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    record_filter = BoundedRecordFilter(lambda: (sensitive, None))
    logger.addFilter(record_filter)
    try:
        logger.warning("job %s (attempt %d)", "i" * 100_000, 2)
        sensitive = True
        logger.error(ValueError("secret-1"))
        logger.warning("failed: %s", RuntimeError("secret-2"))
        # a traceback whatever its first line (a group's, a chain's from an unraised cause): withheld
        logger.error("raised:\n%s", "  + Exception Group Traceback (most recent call last):\n  | secret-4\n")
        try:
            raise KeyError("secret-3")
        except KeyError:
            logger.exception("failed")
        sensitive = False  # withheld once (rq's maintenance logged it), withheld again anywhere
        error = OSError("secret-5")
        mark_withheld(error)
        logger.warning("again: %s", error)
        logger.error("again", exc_info=(OSError, error, None))
    finally:
        logger.removeFilter(record_filter)
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("job iii") and lines[0].endswith("iii (attempt 2)") and len(lines[0]) < 300
    assert lines[1:5] == [f"ValueError: {WITHHELD}", f"failed: RuntimeError: {WITHHELD}", "raised:", WITHHELD]
    assert lines[-4] == f"KeyError: {WITHHELD}"  # its frame's source line above shows the code, not values
    assert lines[-3:] == [f"again: OSError: {WITHHELD}", "again", f"OSError: {WITHHELD}"]
    assert [n for n in (1, 2, 4, 5) if f"secret-{n}" in stream.getvalue()] == []  # 3: its source line only
