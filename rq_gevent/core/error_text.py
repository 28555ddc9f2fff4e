"""What a job's failure may write: bounded text, and for a sensitive job no exception message at all.

A job's input can be as large as its enqueuer likes (a 1 MB ``locale``, a 1 MB job id), and an
exception message repeats it.  Everything a job contributes to a log line, to the error stored in
Redis (the job hash's ``exc_info``, its failure ``Result``, a webhook) and to a Sentry event is cut
to the caps below.  A cut keeps the head and the tail, with a note of how much went.

For a sensitive job (:mod:`rq_gevent.sensitivity`) no exception message leaves the process: a
message may carry a secret or something derived from one (its ``.upper()``, a prefix, a hash), which
no value matching can recognise.  :func:`describe_failure` keeps the exception types and the
traceback's frames (file, line, function, source line) and puts :data:`WITHHELD` where each message was,
unless the exception is marked with :func:`rq_gevent.sensitivity.public_message`.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from types import TracebackType

from ..sensitivity import has_public_message

# Characters of a traceback kept in a stored error, a log line or a Sentry exception.
ERROR_TEXT_MAX = 8192
# Characters of each exception message inside that traceback (its type always stays readable).
MESSAGE_MAX = 2048
# Characters any other value (a job id, a description, an argument) puts into a log line.
LOG_VALUE_MAX = 256
# Characters of any one string of a Sentry event; a tag's value (Sentry's own limit is 200).
SENTRY_VALUE_MAX = 4096
SENTRY_TAG_MAX = 200
# At most this many exceptions of a chain (``raise ... from ...``) or a group are described.
EXCEPTIONS_MAX = 10

WITHHELD = "[message withheld: the job is sensitive]"
# How Python's (and so rq's) formatted tracebacks begin.
TRACEBACK_HEAD = "Traceback (most recent call last):"

_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


class BoundedText(str):
    """A text already cut to its cap: the log filter passes it on whole."""


@dataclass(frozen=True)
class Failure:
    """How a job failed, as it may be written: kept for the job's greenlet from rq's
    ``handle_exception`` to its ``handle_job_failure`` (rq formats its own text in between).
    The text only: the exception would keep the job's frames, and their locals, alive."""

    text: BoundedText

    @classmethod
    def of(cls, exc_info: tuple, sensitive: bool) -> Failure:
        exc_type, exc_value, tb = (tuple(exc_info) + (None, None, None))[:3]
        return cls(describe_failure(exc_type, exc_value, tb, sensitive=sensitive))


def cap(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its head and tail around a note of the cut.

    The tail gets the larger share: a traceback's innermost frames and its message are at the end.
    """
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    while True:  # the note's own length counts: at most two rounds, when the count gains a digit
        note = f" [... {cut} characters cut ...] "
        room = max(limit - len(note), 0)
        if len(text) - room == cut:
            break
        cut = len(text) - room
    head = room // 4
    tail = room - head
    return f"{text[:head]}{note}{text[len(text) - tail :] if tail else ''}"


def describe_failure(
    exc_type: type[BaseException] | None,
    exc_value: BaseException | None,
    tb: TracebackType | None,
    *,
    sensitive: bool,
) -> BoundedText:
    """The traceback of ``exc_value`` and the exceptions chained to it, at most ``ERROR_TEXT_MAX``
    characters, each message at most ``MESSAGE_MAX``, or :data:`WITHHELD` when ``sensitive``."""
    if exc_value is None:
        name = _type_name(exc_type) if exc_type is not None else "Exception"
        return BoundedText(f"{name}: {WITHHELD if sensitive else '(no exception)'}\n")
    lines: list[str] = []
    for link, error in chain(exc_value):
        if link:
            lines.append(link)
        frames = tb if error is exc_value else error.__traceback__
        lines.extend(_frames(frames))
        lines.extend(_exception_lines(error, sensitive))
    return BoundedText(cap("".join(lines), ERROR_TEXT_MAX))


def chain(error: BaseException) -> list[tuple[str, BaseException]]:
    """``(what Python prints before it, exception)`` from the first cause to ``error``, as Python prints them."""
    entries: list[tuple[str, BaseException]] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(entries) < EXCEPTIONS_MAX:
        seen.add(id(current))
        if current.__cause__ is not None:
            earlier, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            earlier, link = current.__context__, _CONTEXT
        else:
            earlier, link = None, ""
        entries.append((link, current))
        current = earlier
    entries.reverse()
    return [("", entries[0][1]), *entries[1:]]


def _frames(tb: TracebackType | None) -> list[str]:
    if tb is None:
        return []
    stack = traceback.StackSummary.extract(traceback.walk_tb(tb), capture_locals=False)
    return [f"{TRACEBACK_HEAD}\n", *stack.format()]


def withheld(error: BaseException, sensitive: bool) -> bool:
    """Whether ``error``'s message must not be shown: a sensitive job's, unless marked public."""
    return sensitive and not has_public_message(error)


def public_text(error: BaseException) -> str:
    """What :func:`rq_gevent.sensitivity.public_message` vouches for: ``str(error)``, without the
    ``__notes__`` (PEP 678) that anything up the stack may add, nor the arguments behind a ``__str__``."""
    try:
        return str(error)
    except Exception:  # a __str__ that raises: Python prints the same
        return "<exception str() failed>"


def _exception_lines(error: BaseException, sensitive: bool) -> list[str]:
    if withheld(error, sensitive):
        lines = [f"{_type_name(type(error))}: {WITHHELD}\n"]
    elif sensitive:  # a public message: that message only, its notes are not vouched for
        name, message = _type_name(type(error)), public_text(error)
        lines = [cap(f"{name}: {message}\n" if message else f"{name}\n", MESSAGE_MAX)]
    else:
        try:
            text = "".join(traceback.format_exception_only(type(error), error))
        except Exception:  # a __str__ that raises: Python prints the same
            text = f"{_type_name(type(error))}: <exception str() failed>\n"
        lines = [cap(text, MESSAGE_MAX)]
    if isinstance(error, BaseExceptionGroup):
        for number, member in enumerate(error.exceptions[:EXCEPTIONS_MAX], 1):
            member_lines = _exception_lines(member, sensitive)
            lines.append(f"  +-- {number}: " + "".join(member_lines).replace("\n", "\n      ").rstrip(" "))
    return lines


def _type_name(kind: type[BaseException]) -> str:
    module = getattr(kind, "__module__", None)
    name = getattr(kind, "__qualname__", None) or getattr(kind, "__name__", "Exception")
    return name if module in (None, "builtins", "__main__") else f"{module}.{name}"
