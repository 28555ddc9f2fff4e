"""The code's shape, checked: no import cycles among rq-gevent's and the jobs' modules (``TYPE_CHECKING``
imports included), and no collaborator of the worker reaching a sibling through it."""

import ast
import importlib
import re
from pathlib import Path

import pytest
from conftest import REPO_DIR

import jobs
import rq_gevent

# Runs once, not on each rq, Python and server (docs/contributing.md):
# the source's import graph.
pytestmark = pytest.mark.once

# Where the packages under test are: this tree, or site-packages when the installed wheel is tested.
ROOT = Path(rq_gevent.__file__).resolve().parent.parent
assert Path(jobs.__file__).resolve().parent.parent == ROOT, (rq_gevent.__file__, jobs.__file__)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, package: str, modules: set[str]) -> set[str]:
    """Modules ``path`` imports (anywhere: lazily, and under ``if TYPE_CHECKING`` too).  ``from p import
    m`` of a submodule ``m`` is an edge to ``p.m`` only; of any other name, to ``p`` itself."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            submodules = {f"{base}.{alias.name}" for alias in node.names} & modules
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(base)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = [*ROOT.glob("rq_gevent/**/*.py"), *ROOT.glob("jobs/**/*.py")]
    modules = {module_name(path): path for path in paths}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {m for m in imported_modules(path, package, set(modules)) if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    graph = import_graph()
    assert "rq_gevent.worker" in graph and "jobs.discuz.backend" in graph
    assert "rq_gevent.options" in graph["rq_gevent.cli"]  # the graph sees imports at all
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_type_checking_imports_and_the_package_itself_are_edges(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nfrom . import __version__, sub\n"
                      "if TYPE_CHECKING:\n    from .worker import W\n")  # fmt: skip
    assert imported_modules(module, "p", {"p", "p.sub", "p.worker"}) == {"typing", "p", "p.sub", "p.worker"}
    module.write_text("from . import sub\n")
    assert imported_modules(module, "p", {"p", "p.sub"}) == {"p.sub"}


# What GeventWorker builds and hands to its collaborators: none may reach another through the worker.
COLLABORATORS = {"admission", "commands", "counters", "dequeuer", "heartbeats", "job_writes", "jobs", "loop",
                 "loss_window", "maintenance", "metrics", "outcomes", "redis_outage", "requeues", "shutdown",
                 "suspension"}  # fmt: skip


def reaches_through_the_worker(source: str) -> list[str]:
    """``worker.<collaborator>`` (or ``<anything>.worker.<collaborator>``) in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in COLLABORATORS:
            owner = node.value
            name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            if name in ("worker", "_worker"):
                found.append(ast.unparse(node))
    return found


def test_the_reach_finder_finds_a_reach():
    assert reaches_through_the_worker("self.worker.maintenance.due()\nworker.jobs.add(x)") == [
        "self.worker.maintenance",
        "worker.jobs",
    ]
    assert reaches_through_the_worker("self.maintenance.due()\nworker.name") == []


def test_no_collaborator_reaches_a_sibling_through_the_worker():
    from rq_gevent.worker import GeventWorker

    built = set(GeventWorker.__init__.__code__.co_names) | set(GeventWorker._build_parts.__code__.co_names)
    assert COLLABORATORS <= built, COLLABORATORS - built  # the list names what the worker builds
    reaches = {
        path.name: found
        for path in ROOT.glob("rq_gevent/**/*.py")
        if path.name != "worker.py" and (found := reaches_through_the_worker(path.read_text()))
    }
    assert reaches == {}


# Dotted names in the docs that are not import paths: a Sentry tag.
NOT_PATHS = {"rq_gevent.alert"}


def resolves(dotted: str) -> bool:
    """``dotted`` names a module, or an attribute of one, that imports."""
    module_name, attribute = dotted, None
    while module_name:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            module_name, _, last = module_name.rpartition(".")
            attribute = last if attribute is None else f"{last}.{attribute}"
            continue
        value = module
        for part in (attribute or "").split(".") if attribute else []:
            if not hasattr(value, part):
                return False
            value = getattr(value, part)
        return True
    return False


def test_every_rq_gevent_path_the_docs_show_imports():
    """Moving a module must not break a path users were shown (rq_gevent.sentry.init_sentry, say)."""
    assert resolves("rq_gevent.sentry.init_sentry") and not resolves("rq_gevent.sentry.no_such_name")
    assert not resolves("rq_gevent.no_such_module.X")
    shown = {match for path in [*(REPO_DIR / "docs").glob("*.md"), REPO_DIR / "README.md"]
             for match in re.findall(r"\brq_gevent(?:\.[A-Za-z_]\w*)+", path.read_text())}  # fmt: skip
    assert "rq_gevent.allowlist.JobNotAllowed" in shown
    assert sorted(name for name in shown - NOT_PATHS if not resolves(name)) == []
