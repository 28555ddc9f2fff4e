"""The Lua scripts the worker sends to Redis, one ``.lua`` file each beside this module.

Each file opens with a header naming every key it touches, the fields it writes, and the rq code it
mirrors (file, function, rq versions); ``tests/test_lua.py`` checks the headers against the bodies.  A
fragment several scripts share is pulled in by a ``-- include: name.lua`` line.  Files are read through
``importlib.resources``, so the package works from a zipped wheel too.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

_INCLUDE = re.compile(r"^-- include:(.*)$", re.MULTILINE)
_FRAGMENT = re.compile(r"[a-z_]+\.lua")


@dataclass(frozen=True)
class LuaScript:
    name: str
    source: str
    sha: str  # what EVALSHA names it by


def _included(match: re.Match[str]) -> str:
    file_name = match.group(1).strip()
    if not _FRAGMENT.fullmatch(file_name):
        raise ValueError(f"bad include line {match.group(0)!r}: '-- include: name.lua' expected")
    fragment = _read(file_name)
    if _INCLUDE.search(fragment):
        raise ValueError(f"{file_name} includes another file: fragments are included one level deep")
    return fragment


def _read(file_name: str) -> str:
    return resources.files(__name__).joinpath(file_name).read_text(encoding="utf-8")


@functools.cache
def load(name: str) -> LuaScript:
    """The script of ``<name>.lua``, its includes in place."""
    source = _INCLUDE.sub(_included, _read(f"{name}.lua"))
    return LuaScript(name, source, hashlib.sha1(source.encode()).hexdigest())
