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

_INCLUDE = re.compile(r"^-- include: ([a-z_]+\.lua)$", re.MULTILINE)


@dataclass(frozen=True)
class LuaScript:
    name: str
    source: str
    sha: str  # what EVALSHA names it by


def _read(file_name: str) -> str:
    return resources.files(__name__).joinpath(file_name).read_text(encoding="utf-8")


@functools.cache
def load(name: str) -> LuaScript:
    """The script of ``<name>.lua``, its includes in place."""
    source = _INCLUDE.sub(lambda match: _read(match.group(1)), _read(f"{name}.lua"))
    return LuaScript(name, source, hashlib.sha1(source.encode()).hexdigest())
