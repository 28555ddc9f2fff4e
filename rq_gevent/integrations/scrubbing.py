"""Remove secrets from a Sentry event (a plain dict, before it is sent).

Sentry's own scrubber matches key names (``password``, ``token``...); it cannot see a secret inside
a string such as an exception message or a command line.  These functions work on values:

* :func:`secret_strings` collects the strings a sensitive job was given: its arguments' *values*,
  never the names of its keyword arguments or of its objects' attributes (``name``, ``username``
  are words of every file name, source line and message);
* :func:`redact` replaces every occurrence of them in the event's values, except where the event
  names code (a frame's file, function and source lines, an exception's type): those come from the
  source, not from the job's input;
* :func:`withhold_exception_messages` removes every exception message (a sensitive job's message
  may carry something derived from a secret, which no matching finds);
* :func:`filter_job_extra`, :func:`strip_frame_variables` and :func:`trim_subprocess_breadcrumbs`
  drop the places where arguments are copied wholesale;
* :func:`cap_strings` bounds every string of any event.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from ..core.error_text import cap

FILTERED = "[Filtered]"
# Shorter strings are not searched for: replacing every "id" or "en" would wreck the event, and
# no real secret is that short.
MIN_SECRET_LENGTH = 4
_MAX_DEPTH = 6


def secret_strings(*values: Any) -> list[str]:
    """Every string (and decodable bytes) inside ``values``: containers and plain objects included,
    their values only (not a mapping's keys, nor an object's attribute names).

    Longest first, each with its ``repr`` spelling too (``'a\\\\b'`` shows up escaped in reprs).
    """
    found: set[str] = set()
    for value in values:
        _collect(value, found, 0)
    variants = set(found)
    for text in found:
        variants.add(repr(text)[1:-1])
    return sorted((text for text in variants if len(text) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def _collect(value: Any, found: set[str], depth: int) -> None:
    if depth > _MAX_DEPTH or value is None or isinstance(value, (bool, int, float)):
        return
    if isinstance(value, str):
        found.add(value)
    elif isinstance(value, (bytes, bytearray)):
        found.add(bytes(value).decode("utf-8", "replace"))
    elif isinstance(value, Mapping):
        for item in value.values():
            _collect(item, found, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _collect(item, found, depth + 1)
    elif hasattr(value, "__dict__"):
        _collect(vars(value), found, depth + 1)


# Where an event names code, not data: a frame's location and source, an exception's type.
CODE_KEYS = {
    "frames": frozenset({"filename", "abs_path", "module", "function", "package", "lineno", "colno",
                         "context_line", "pre_context", "post_context", "in_app", "platform"}),
    "values": frozenset({"type", "module"}),
}  # fmt: skip
# Keys of Sentry's event format: names, kept even when a secret is part of one ("name" in "filename").
EVENT_KEYS = frozenset(
    {"abs_path", "breadcrumbs", "category", "colno", "context_line", "contexts", "data", "environment",
     "event_id", "exception", "extra", "filename", "fingerprint", "formatted", "frames", "function",
     "handled", "in_app", "level", "lineno", "logentry", "logger", "mechanism", "message", "meta",
     "module", "modules", "package", "params", "platform", "post_context", "pre_context", "release",
     "rq-job", "sdk", "server_name", "stacktrace", "tags", "threads", "timestamp", "transaction",
     "type", "user", "value", "values", "vars", "description", "args", "kwargs", "job_id", "func"}
)  # fmt: skip


def redact(event: Any, secrets: Iterable[str]) -> Any:
    """``event`` with every occurrence of each secret in its values replaced by ``[Filtered]``.

    Keys are redacted too (a mapping may be keyed by a value), except the names of Sentry's event
    format (``EVENT_KEYS``); the code fields of ``CODE_KEYS`` are kept whole.
    """
    secrets = list(secrets)
    if not secrets:
        return event
    return _redact(event, secrets, frozenset())


def _redact(value: Any, secrets: list[str], code_keys: frozenset[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, FILTERED)
        return value
    if isinstance(value, dict):
        return {
            _redact_key(key, secrets): item
            if key in code_keys
            else _redact(item, secrets, CODE_KEYS.get(key, frozenset()))
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        # The entries of a list named in CODE_KEYS (each frame, each exception) keep their code fields.
        redacted = [_redact(item, secrets, code_keys) for item in value]
        return redacted if isinstance(value, list) else tuple(redacted)
    return value


def _redact_key(key: Any, secrets: list[str]) -> Any:
    return key if key in EVENT_KEYS else _redact(key, secrets, frozenset())


def withhold_exception_messages(event: dict[str, Any], note: str, public: list[tuple[str, str | None]]) -> None:
    """Every exception's message (``value``) becomes ``note``; its type and frames stay.

    ``public``: ``(type name, public message or None)`` of each exception of the chain, oldest first,
    as sentry-sdk lists them; where both lists match entry by entry, a public message is shown (that
    message only: sentry-sdk's value appends the exception's notes, which nobody vouched for).
    """
    values = [value for value in (event.get("exception") or {}).get("values") or [] if isinstance(value, dict)]
    matching = len(values) == len(public) and all(
        value.get("type") == name for value, (name, _) in zip(values, public, strict=True)
    )
    for index, value in enumerate(values):
        message = public[index][1] if matching else None
        value["value"] = note if message is None else message


def cap_strings(value: Any, limit: int) -> Any:
    """``value`` with each string (keys included) cut to ``limit`` characters."""
    if isinstance(value, str):
        return cap(value, limit)
    if isinstance(value, dict):
        return {cap_strings(key, limit): cap_strings(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [cap_strings(item, limit) for item in value]
    if isinstance(value, tuple):
        return tuple(cap_strings(item, limit) for item in value)
    return value


def filter_job_arguments(event: dict[str, Any]) -> None:
    """The args and kwargs that sentry-sdk's rq integration copies into ``extra`` (2.20 always does; 2.x
    later, with personal data; 3.x, with its ``queues`` data collection)."""
    _filter_rq_job(event, ("args", "kwargs"))


def filter_job_extra(event: dict[str, Any]) -> None:
    """The description, args and kwargs that sentry-sdk's rq integration copies into ``extra``."""
    _filter_rq_job(event, ("description", "args", "kwargs"))


def _filter_rq_job(event: dict[str, Any], keys: tuple[str, ...]) -> None:
    job = event.get("extra", {}).get("rq-job")
    if isinstance(job, dict):
        for key in keys:
            if key in job:
                job[key] = FILTERED


def strip_frame_variables(event: dict[str, Any]) -> None:
    for frame in _frames(event):
        frame.pop("vars", None)


def _frames(event: dict[str, Any]) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    for section in ("exception", "threads"):
        for value in (event.get(section) or {}).get("values") or []:
            frames.extend((value.get("stacktrace") or {}).get("frames") or [])
    return frames


def trim_subprocess_breadcrumbs(event: dict[str, Any]) -> None:
    """Keep only the program's name of each command line (its arguments may be secrets)."""
    for crumb in (event.get("breadcrumbs") or {}).get("values") or []:
        if crumb.get("category") == "subprocess" and isinstance(crumb.get("message"), str):
            words = crumb["message"].split(" ", 1)
            program = os.path.basename(words[0])
            crumb["message"] = f"{program} {FILTERED}" if len(words) > 1 else program
