"""A logging filter that holds every record of the worker's loggers to :mod:`rq_gevent.core.error_text`'s caps.

rq formats a failed job's traceback, message included, into its ``exception raised while executing``
line, and logs job ids and descriptions as they were enqueued, however long.  This filter, on the
worker's logger and rq's own, rewrites each record before any handler formats it:

* a traceback argument becomes the failure the worker described for that job (bounded; for a
  sensitive job with every exception message withheld), and so does the exception of ``exc_info``;
  in a sensitive job's greenlet any argument of more than one line is taken for a traceback,
  whatever its first line (an exception group's, a chain's whose first exception was never raised);
* in a sensitive job's greenlet an exception passed as an argument shows its type only (unless its
  message is marked public: :func:`rq_gevent.sensitivity.public_message`, which vouches for its
  ``str()`` only, not its notes nor the arguments its ``repr()`` shows);
* an exception once withheld (:mod:`rq_gevent.core.job_code_outside`) stays withheld in any record;
* any other argument, and a message without arguments, is cut to ``LOG_VALUE_MAX`` characters
  (``ERROR_TEXT_MAX`` for a message), as are the ``extra`` fields rq attaches (job id, arguments...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from .error_text import (
    ERROR_TEXT_MAX,
    LOG_VALUE_MAX,
    TRACEBACK_HEAD,
    WITHHELD,
    BoundedText,
    Failure,
    cap,
    describe_failure,
    public_text,
    withheld,
)
from .job_code_outside import is_withheld, mark_withheld

# Loggers rq writes to from a worker process, besides the worker's own (``rq.worker``).
RQ_LOGGERS = ("rq.worker", "rq.job", "rq.queue", "rq.registry", "rq.webhook", "rq.scheduler", "rq.scripts")
# The ``extra`` fields rq's handle_exception attaches to its record (a JSON handler prints them).
EXTRA_FIELDS = ("func", "arguments", "kwargs", "queue", "job_id")


class BoundedRecordFilter(logging.Filter):
    """``job_state()`` answers, for the calling greenlet, ``(sensitive, failure)``: whether it runs a
    sensitive job, and the failure the worker recorded for that job (``None`` before one)."""

    def __init__(self, job_state: Callable[[], tuple[bool, Failure | None]]):
        super().__init__()
        self.job_state = job_state

    def filter(self, record: logging.LogRecord) -> bool:
        sensitive, failure = self.job_state()
        if record.args:
            record.args = _bounded_args(record.args, sensitive, failure)
        if isinstance(record.msg, str):
            if not record.args:
                record.msg = cap(record.msg, ERROR_TEXT_MAX)
        else:  # logged as an object: ``log.error(exc)``
            record.msg = _bounded(record.msg, sensitive, failure, ERROR_TEXT_MAX)
        if record.exc_info and record.exc_info[1] is not None:
            sensitive = sensitive or is_withheld(record.exc_info[1])
            # Without the last newline, as logging.Formatter.formatException leaves it.
            record.exc_text = describe_failure(*record.exc_info, sensitive=sensitive).rstrip("\n")
            if sensitive:
                mark_withheld(record.exc_info[1])
                record.exc_info = None  # a handler that formats it itself would print the message
        elif isinstance(record.exc_text, str):
            record.exc_text = cap(record.exc_text, ERROR_TEXT_MAX)
        if isinstance(record.stack_info, str):
            record.stack_info = cap(record.stack_info, ERROR_TEXT_MAX)
        fields = record.__dict__
        for name in EXTRA_FIELDS:
            value = fields.get(name)
            if value is not None and not isinstance(value, (int, float)):
                text = value if isinstance(value, str) else repr(value)
                if len(text) > LOG_VALUE_MAX:
                    setattr(record, name, cap(text, LOG_VALUE_MAX))
        return True


def install(logger: logging.Logger, record_filter: logging.Filter) -> None:
    """Put ``record_filter`` on ``logger`` and on each of rq's loggers, once."""
    for target in {logger, *(logging.getLogger(name) for name in RQ_LOGGERS)}:
        if record_filter not in target.filters:
            target.addFilter(record_filter)


def _bounded_args(args: Any, sensitive: bool, failure: Failure | None) -> Any:
    if isinstance(args, Mapping):
        return {key: _bounded(value, sensitive, failure) for key, value in args.items()}
    if isinstance(args, tuple):
        for value in args:  # the common case (names, ids, short descriptions) needs nothing
            if type(value) is not str or len(value) > LOG_VALUE_MAX or "\n" in value:
                return tuple(_bounded(value, sensitive, failure) for value in args)
        return args
    return _bounded(args, sensitive, failure)


def _bounded(value: Any, sensitive: bool, failure: Failure | None, limit: int = LOG_VALUE_MAX) -> Any:
    if value is None or isinstance(value, (BoundedText, bool, int, float)):
        return value
    if isinstance(value, BaseException):
        if withheld(value, sensitive or is_withheld(value)):
            return f"{type(value).__name__}: {WITHHELD}"
        if sensitive:  # its public message, not the object: its repr() would show its arguments
            return cap(public_text(value), limit)
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = str(value)
        except Exception:
            return f"<{type(value).__name__}>"
    if sensitive and "\n" in text:  # a traceback, whatever its first line, or a message of many lines
        return failure.text if failure is not None else WITHHELD
    if text.startswith(TRACEBACK_HEAD):
        if failure is not None:
            return failure.text
        return f"{TRACEBACK_HEAD} {WITHHELD}" if sensitive else cap(text, ERROR_TEXT_MAX)
    if len(text) > limit:
        return cap(text, limit)
    return value
