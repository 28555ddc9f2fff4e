"""The code's shape, checked: no import cycles among rq-gevent's and the jobs' modules."""

import ast
from pathlib import Path

import pytest

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


def imported_modules(path: Path, package: str) -> set[str]:
    """Modules ``path`` imports at run time (anywhere, lazily too), not those under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    type_checking = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
        for statement in branch.body
        for node in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = [*ROOT.glob("rq_gevent/**/*.py"), *ROOT.glob("jobs/**/*.py")]
    modules = {module_name(path): path for path in paths}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        # A package's own __init__ is not an edge: importing rq_gevent.x runs rq_gevent/__init__ anyway.
        graph[name] = {m for m in imported_modules(path, package) if m in modules and m != name and m != package}
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
