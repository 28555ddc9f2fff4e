"""Remove secrets from a Sentry event (a plain dict, before it is sent).

Sentry's own scrubber matches key names (``password``, ``token``...); it cannot see a secret inside
a string such as an exception message or a command line.  These functions work on values:

* :func:`secret_strings` collects the strings a sensitive job was given;
* :func:`redact` replaces every occurrence of them anywhere in the event;
* :func:`filter_job_extra`, :func:`strip_frame_variables` and :func:`trim_subprocess_breadcrumbs`
  drop the places where arguments are copied wholesale.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

FILTERED = "[Filtered]"
# Shorter strings are not searched for: replacing every "id" or "en" would wreck the event, and
# no real secret is that short.
MIN_SECRET_LENGTH = 4
_MAX_DEPTH = 6


def secret_strings(*values: Any) -> list[str]:
    """Every string (and decodable bytes) inside ``values``: containers and plain objects included.

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
        for key, item in value.items():
            _collect(key, found, depth + 1)
            _collect(item, found, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _collect(item, found, depth + 1)
    elif hasattr(value, "__dict__"):
        _collect(vars(value), found, depth + 1)


def redact(event: Any, secrets: Iterable[str]) -> Any:
    """``event`` with every occurrence of each secret replaced by ``[Filtered]`` (keys included)."""
    secrets = list(secrets)
    if not secrets:
        return event
    return _redact(event, secrets)


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, FILTERED)
        return value
    if isinstance(value, dict):
        return {_redact(key, secrets): _redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item, secrets) for item in value]
    if isinstance(value, tuple):
        return tuple(_redact(item, secrets) for item in value)
    return value


def filter_job_extra(event: dict[str, Any]) -> None:
    """The description, args and kwargs that sentry-sdk's rq integration copies into ``extra``."""
    job = event.get("extra", {}).get("rq-job")
    if isinstance(job, dict):
        for key in ("description", "args", "kwargs"):
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
