"""rq's hottest helpers replaced, in rq's own modules, by exact equivalents that cost less.

Each gives rq's answer (or raises rq's error) for every input: what is off its fast path goes to
rq's own function, and a test compares the two.  Installed once, by the worker.

* **Serializers.**  rq resolves the serializer each time it builds a job, queue, registry or
  result, several times per job.  rq 2.12 checks it with ``isinstance`` against a runtime
  ``Protocol``, which is slow; rq's own two serializers pass that check by definition and are
  returned as they are.
* **Dotted names.**  rq imports a job's function by its dotted name at each access of ``Job.func``
  (six times a job: the worker's checks, then rq's call), through ``importlib.import_module`` of
  the longest prefix.  A module already in ``sys.modules`` that has the attribute gives the same
  answer from two dictionary lookups.
* **Timestamps.**  rq writes each timestamp with ``strftime`` and reads it with ``strptime``, several
  times per job.  ``%``-formatting and ``fromisoformat`` give the same for rq's own layout
  (``2026-12-05T13:04:28.432599Z``) for much less.

What each saves, measured: docs/performance-history.md.
"""

from __future__ import annotations

import datetime
import sys
from typing import Any

import rq.serializers
import rq.utils

_rq_utcformat = rq.utils.utcformat
_rq_utcparse = rq.utils.utcparse
_rq_resolve_serializer = rq.serializers.resolve_serializer
_rq_import_attribute = rq.utils.import_attribute
_RQ_SERIALIZERS = (rq.serializers.DefaultSerializer, rq.serializers.JSONSerializer)
_DATETIME = datetime.datetime


def utcformat(dt: datetime.datetime) -> str:
    """rq's ``utcformat``: the datetime's own fields (no conversion), ``%Y-%m-%dT%H:%M:%S.%fZ``."""
    if type(dt) is _DATETIME and dt.year >= 1000 and (dt.tzinfo is None or type(dt.tzinfo) is datetime.timezone):
        return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 - the fastest way, by a third
            dt.year,
            dt.month,
            dt.day,
            dt.hour,
            dt.minute,
            dt.second,
            dt.microsecond,
        )
    return _rq_utcformat(dt)


def utcparse(string: str) -> datetime.datetime:
    """rq's ``utcparse``: ``%Y-%m-%dT%H:%M:%S.%fZ`` (or rq's older layout without fractions), UTC."""
    if (
        type(string) is str
        and len(string) == 27
        and string[26] == "Z"
        and string[19] == "."
        and string[10] == "T"
        and string[4] == string[7] == "-"
        and string[13] == string[16] == ":"
    ):
        try:
            return _DATETIME.fromisoformat(string)  # "Z" is UTC (Python >= 3.11)
        except ValueError:
            pass
    return _rq_utcparse(string)


def resolve_serializer(serializer: Any = None) -> Any:
    """rq's ``resolve_serializer``; rq's own two serializers are returned as they are."""
    if serializer is _RQ_SERIALIZERS[0] or serializer is _RQ_SERIALIZERS[1]:
        return serializer
    return _rq_resolve_serializer(serializer)


def import_attribute(name: str) -> Any:
    """rq's ``import_attribute``: an attribute of a module imported already, as rq's first attempt
    (``import_module`` of all but the last name) finds it; anything else as rq does."""
    module_name, dot, attribute = name.rpartition(".")
    module = sys.modules.get(module_name) if dot else None
    if module is not None:
        try:
            return getattr(module, attribute)
        except AttributeError:
            pass
    return _rq_import_attribute(name)


_REPLACEMENTS = {
    "utcformat": (_rq_utcformat, utcformat),
    "utcparse": (_rq_utcparse, utcparse),
    "resolve_serializer": (_rq_resolve_serializer, resolve_serializer),
    "import_attribute": (_rq_import_attribute, import_attribute),
}


_installed = False


def install() -> None:
    """Swap rq's helpers for these wherever rq's modules imported them (and in ``rq.utils`` and
    ``rq.serializers``, for modules rq imports later); a name something else replaced is left alone.
    Once per process: later calls do nothing."""
    global _installed
    if _installed:
        return
    _installed = True
    import rq.job  # noqa: F401 - rq's modules that use them, loaded before the swap
    import rq.queue  # noqa: F401
    import rq.registry  # noqa: F401
    import rq.results  # noqa: F401
    import rq.worker  # noqa: F401

    for name, module in list(sys.modules.items()):
        if name != "rq" and not name.startswith("rq."):
            continue
        for attribute, (original, replacement) in _REPLACEMENTS.items():
            if getattr(module, attribute, None) is original:
                setattr(module, attribute, replacement)
