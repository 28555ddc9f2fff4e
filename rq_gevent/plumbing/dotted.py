"""Why a dotted path (``package.module.Class.method``) does not import.

rq's ``import_attribute`` answers "Invalid attribute name" to every failure: a module that is not on
the path, a module whose own import failed (a dependency it imports is missing), a missing name.
Only the reason tells a user what to fix.  rq still does the importing, as it always has; this is
asked only once rq's import has failed.
"""

from __future__ import annotations

import importlib
import os
import sys

_SHOWN_PATHS = 4


def why_not_importable(path: str, path_hint: str = "") -> str:
    """The reason ``path`` does not import, as one sentence; empty if it imports now.  ``path_hint``
    (how to add a directory to the path) is added when a module is not found."""
    parts = path.split(".")
    if len(parts) < 2 or not all(parts):
        return f"{path!r} is not a dotted path of the form module.name"
    missing = None
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and (module_name + ".").startswith(error.name + "."):
                missing = missing or error.name  # no such module: the name may go on in its parent
                continue
            return f"module {module_name!r} cannot be imported: {type(error).__name__}: {error}"
        except Exception as error:
            return f"module {module_name!r} cannot be imported: {type(error).__name__}: {error}"
        owner = module
        for depth, attribute in enumerate(parts[cut:]):
            if not hasattr(owner, attribute):
                if depth == 0 and missing == f"{module_name}.{attribute}":
                    return f"no module named {missing!r} ({_searched()}{path_hint})"
                return f"module {module_name!r} has no attribute {'.'.join(parts[cut : cut + depth + 1])!r}"
            owner = getattr(owner, attribute)
        return ""
    return f"no module named {missing or parts[0]!r} ({_searched()}{path_hint})"


def _searched() -> str:
    """The directories of ``sys.path`` a program's own modules come from (not Python's or a venv's)."""
    installed = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    own = []
    for entry in sys.path:
        directory = os.path.abspath(entry or os.curdir)
        if not directory.startswith(installed) and directory not in own:
            own.append(directory)
    if not own:
        return "looked for among installed packages only"
    more = f" and {len(own) - _SHOWN_PATHS} more" if len(own) > _SHOWN_PATHS else ""
    return f"looked for in {', '.join(own[:_SHOWN_PATHS])}{more} and installed packages"
