"""Job settings: an environment variable, else the worker's ``--config`` module, else a default.

``rq-gevent worker --config mysettings`` exports ``RQ_GEVENT_CONFIG=mysettings`` to its jobs, so a
setting such as ``SMTP_HOST`` can live in that module; under another worker, set ``RQ_GEVENT_CONFIG``
yourself.  The environment wins, so one deployment can override a shared module.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

CONFIG_MODULE_VARIABLE = "RQ_GEVENT_CONFIG"

T = TypeVar("T")


class SettingsError(Exception):
    """A setting is missing or malformed: a deployment problem, never retried."""


def setting(name: str, default: T | None = None, cast: Callable[[Any], T] = str) -> T | None:  # type: ignore[assignment]
    """Read ``name``; returns ``default`` when it is set nowhere."""
    raw = os.environ.get(name)
    if raw is None:
        raw = getattr(_config_module(), name, None)
    if raw is None:
        return default
    try:
        return cast(raw)
    except (TypeError, ValueError) as error:
        raise SettingsError(f"setting {name} is malformed: {error}") from None


def required_setting(name: str, cast: Callable[[Any], T] = str) -> T:  # type: ignore[assignment]
    value = setting(name, cast=cast)
    if value is None or value == "":
        raise SettingsError(f"setting {name} is not set (environment or the worker's --config module)")
    return value


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{raw!r} is not a boolean")


def _config_module() -> object | None:
    name = os.environ.get(CONFIG_MODULE_VARIABLE)
    if not name:
        return None
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise SettingsError(f"{CONFIG_MODULE_VARIABLE}={name} cannot be imported: {error}") from None
