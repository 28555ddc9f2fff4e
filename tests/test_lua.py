"""The Lua scripts (``rq_gevent/plumbing/lua/``): each header names every key its body touches and the rq code it
mirrors, the shared fragments agree with the Python they stand for, and Redis compiles each script."""

import ast
import re
from importlib import resources

import pytest
from conftest import REPO_DIR

from rq_gevent import compat
from rq_gevent.plumbing import lua

# Runs once, not on each rq, Python and server (docs/contributing.md): the scripts' text.
pytestmark = pytest.mark.once

FILES = sorted(path.name for path in resources.files(lua).iterdir() if path.name.endswith(".lua"))
SCRIPTS = [
    name.removesuffix(".lua") for name in FILES if "(a fragment" not in resources.files(lua).joinpath(name).read_text()
]


def header_and_body(text: str) -> tuple[str, str]:
    lines = text.splitlines()
    header_end = next(index for index, line in enumerate(lines) if not line.startswith("--"))
    return "\n".join(lines[:header_end]), "\n".join(lines[header_end:])


def unnamed_keys(text: str) -> list[str]:
    """``KEYS[n]`` the body of a script uses that its header does not name."""
    header, body = header_and_body(text)
    named = set(re.findall(r"^--\s+(KEYS\[\d+\])", header, re.MULTILINE))
    return sorted(set(re.findall(r"KEYS\[\d+\]", body)) - named)


def test_the_key_check_finds_an_unnamed_key():
    assert unnamed_keys("-- x.lua\n--   KEYS[1]  job hash\nredis.call('GET', KEYS[1], KEYS[2])\n") == ["KEYS[2]"]


@pytest.mark.parametrize("file_name", FILES)
def test_each_header_names_its_keys_and_what_it_mirrors(file_name):
    text = resources.files(lua).joinpath(file_name).read_text()
    header, _ = header_and_body(text)
    assert header.startswith(f"-- {file_name}"), "the header opens with the file's name"
    assert unnamed_keys(text) == []
    if file_name.removesuffix(".lua") in SCRIPTS:
        assert re.search(r"Mirrors (\(rq [\d., ]+\)|no rq function)", header), "the rq code it mirrors, with versions"
        assert "Returns" in header


def test_a_script_is_its_file_with_its_includes_in_place():
    start = lua.load("start")
    assert "-- include:" not in start.source
    assert "local function not_withdrawn(key)" in start.source and "local function run(...)" in start.source
    assert {"start", "success", "outcome_recorded", "heartbeat", "pop", "put_back", "apply_if_absent"} <= set(SCRIPTS)


def test_the_withdrawn_statuses_are_compats():
    text = resources.files(lua).joinpath("not_withdrawn.lua").read_text()
    table = re.search(r"local withdrawn_status = \{(.*)\}", text).group(1)
    assert set(re.findall(r"(\w+) = true", table)) == set(compat.WITHDRAWN_STATUSES)


@pytest.mark.parametrize("name", SCRIPTS)
def test_redis_compiles_each_script(connection, name):
    script = lua.load(name)
    assert "-- include:" not in script.source
    assert connection.script_load(script.source) == script.sha


def test_the_scripts_mirror_exactly_the_rq_releases_ci_tests():
    """compat.TESTED_RQ_VERSIONS, where the scripts replace rq's code, is noxfile.py's matrix."""
    noxfile = ast.parse((REPO_DIR / "noxfile.py").read_text())
    matrix = next(node.value for node in noxfile.body
                  if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "MATRIX")  # fmt: skip
    tested = {rq for rq, _python, _server in ast.literal_eval(matrix)}
    assert set(compat.TESTED_RQ_VERSIONS) == tested
