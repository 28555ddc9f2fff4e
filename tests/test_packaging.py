"""What ``pip install rq-gevent`` gets: the sdist and the wheel, their contents and their metadata.

The package session of noxfile.py builds both (the wheel from the sdist) and passes them in
``RQ_GEVENT_TEST_DIST``; run alone, these tests build them from this tree.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import pytest
from conftest import REPO_DIR, dashboard_shows_a_busy_worker_and_one_of_its_jobs
from packaging.requirements import Requirement
from packaging.version import Version

import rq_gevent

# Runs once, not on each rq, Python and server (docs/contributing.md):
# the built artefacts.
pytestmark = pytest.mark.once

# Every file the code reads at run time, found through importlib.resources.
RUN_TIME_FILES = [
    *(
        f"jobs/mail/templates/{locale}/activation.{part}"
        for locale in ("en", "zh")
        for part in ("subject.txt", "txt", "html")
    ),
    "jobs/discuz/uc_client_bridge.php",
    "rq_gevent/py.typed",
    *(
        f"rq_gevent/plumbing/lua/{name}.lua"
        for name in (
            "start",
            "success",
            "heartbeat",
            "pop",
            "put_back",
            "outcome_recorded",
            "apply_if_absent",
            "not_withdrawn",
            "refusal",
        )
    ),
]
PACKAGES = ("rq_gevent/", "jobs/")


@dataclass
class Artefacts:
    sdist: Path
    wheel: Path

    def sdist_names(self) -> list[str]:
        """Files inside the sdist, without its top directory (``rq_gevent-X/``)."""
        with tarfile.open(self.sdist) as archive:
            return [member.name.split("/", 1)[1] for member in archive.getmembers() if member.isfile()]

    def wheel_names(self) -> list[str]:
        with zipfile.ZipFile(self.wheel) as archive:
            return archive.namelist()

    def wheel_member(self, suffix: str) -> bytes:
        with zipfile.ZipFile(self.wheel) as archive:
            (name,) = [name for name in archive.namelist() if name.endswith(suffix)]
            return archive.read(name)

    def sdist_member(self, name: str) -> bytes:
        with tarfile.open(self.sdist) as archive:
            top = archive.getnames()[0].split("/")[0]
            return archive.extractfile(f"{top}/{name}").read()

    def metadata(self) -> Message:
        return message_from_bytes(self.wheel_member(".dist-info/METADATA"))


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Artefacts:
    given = os.environ.get("RQ_GEVENT_TEST_DIST")
    if given:
        dist = Path(given)
    else:
        dist = tmp_path_factory.mktemp("dist")
        command = [sys.executable, "-m", "build", "--outdir", str(dist), str(REPO_DIR)]
        built = subprocess.run(command, capture_output=True, text=True)
        assert built.returncode == 0, built.stdout + built.stderr
    (sdist,) = dist.glob("rq_gevent-*.tar.gz")
    (wheel,) = dist.glob("rq_gevent-*.whl")
    return Artefacts(sdist, wheel)


def package_files(names: list[str]) -> set[str]:
    return {name for name in names if name.startswith(PACKAGES) and "__pycache__" not in name}


def test_both_artefacts_hold_every_file_the_code_reads_at_run_time(artefacts):
    assert set(RUN_TIME_FILES) <= package_files(artefacts.wheel_names())
    assert set(RUN_TIME_FILES) <= package_files(artefacts.sdist_names())


def test_the_wheel_holds_every_file_of_the_sdists_packages(artefacts):
    """Whatever lands in the packages' directories (a template, a Lua script) ships, not only .py files."""
    assert package_files(artefacts.sdist_names()) == package_files(artefacts.wheel_names())


def test_both_artefacts_carry_the_license(artefacts):
    license_text = artefacts.sdist_member("LICENSE")
    assert license_text.startswith(b"BSD 2-Clause License")
    assert artefacts.wheel_member(".dist-info/licenses/LICENSE") == license_text
    assert artefacts.metadata()["License-Expression"] == "BSD-2-Clause"


def test_the_version_is_the_packages_and_has_a_changelog_entry(artefacts):
    version = artefacts.metadata()["Version"]
    assert version == rq_gevent.__version__  # setup.cfg reads it from the package: written in one place
    assert artefacts.wheel.name.startswith(f"rq_gevent-{version}-")
    changelog = artefacts.sdist_member("docs/changelog.md").decode()
    assert re.search(rf"^## {re.escape(version)} \(\d{{4}}-\d\d-\d\d\)$", changelog, re.MULTILINE), changelog[:500]


def test_the_console_script_prints_the_installed_version():
    script = Path(sys.executable).parent / "rq-gevent"
    shown = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert (shown.returncode, shown.stdout) == (0, f"rq-gevent {rq_gevent.__version__}\n"), shown.stderr


def noxfile_constants() -> dict[str, object]:
    """noxfile.py's module-level constants made of literals and earlier constants (nox itself is not
    installed where the tests run)."""
    found: dict[str, object] = {}
    for node in ast.parse((REPO_DIR / "noxfile.py").read_text()).body:
        if isinstance(node, ast.Assign) and all(isinstance(target, ast.Name) for target in node.targets):
            if all(
                isinstance(part, (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Name, ast.expr_context))
                for part in ast.walk(node.value)
            ):
                value = eval(compile(ast.Expression(node.value), "noxfile.py", "eval"), {"__builtins__": {}}, found)
                found.update((target.id, value) for target in node.targets)
    return found


def minor(version: str) -> int:
    return int(version.split(".")[1])


def test_the_python_versions_declared_are_those_ci_tests(artefacts):
    constants = noxfile_constants()
    tested = sorted({python for _, python, _ in constants["MATRIX"]} | {constants["PACKAGE_PYTHON"]}, key=minor)
    minors = [minor(version) for version in tested]
    assert minors == list(range(minors[0], minors[-1] + 1)), f"a Python between the ends is not tested: {tested}"
    metadata = artefacts.metadata()
    declared = sorted(
        (
            classifier.rsplit(" :: ", 1)[1]
            for classifier in metadata.get_all("Classifier")
            if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", classifier)
        ),
        key=minor,
    )
    assert declared == tested
    oldest, newest = tested[0], tested[-1]
    assert metadata["Requires-Python"] == f"<3.{minor(newest) + 1},>={oldest}"


def test_each_matrix_entry_differs_from_the_base_in_one_thing():
    """So that a failure in one session alone points to one cause: its rq, its Python or its server."""
    base, *others = noxfile_constants()["MATRIX"]
    assert others
    for entry in others:
        assert sum(mine != theirs for mine, theirs in zip(entry, base, strict=True)) == 1, (entry, base)
    for axis in range(3):  # and each of rq, Python and server is varied by some entry
        assert any(entry[axis] != base[axis] for entry in others), axis


def test_the_sentry_sdk_range_declared_is_the_one_ci_tests(artefacts):
    """The floor is the oldest CI installs; the cap is the major after 3, the newest CI runs (the
    matrix installs the newest release the range allows)."""
    requirements = artefacts.metadata().get_all("Requires-Dist")
    (requirement,) = [r for r in requirements if r.startswith("sentry-sdk") and 'extra == "sentry"' in r]
    specifiers = {specifier.operator: Version(specifier.version) for specifier in Requirement(requirement).specifier}
    assert specifiers.keys() == {">=", "<"}, requirement
    assert specifiers[">="] == Version(noxfile_constants()["SENTRY_SDK_2X"]["oldest"].removeprefix("=="))
    assert specifiers["<"] == Version("4")


def test_the_rq_range_declared_is_the_one_ci_tests(artefacts):
    rq_versions = [rq for rq, _, _ in noxfile_constants()["MATRIX"]]
    (requirement,) = [
        r for r in artefacts.metadata().get_all("Requires-Dist") if re.match(r"rq ?[<>=!~]", r) and "extra" not in r
    ]
    oldest = min(rq_versions, key=lambda version: tuple(map(int, version.split("."))))
    newest = max(rq_versions, key=lambda version: tuple(map(int, version.split("."))))
    major, minor = newest.split(".")[:2]
    assert requirement.replace(" ", "") == f"rq<{major}.{int(minor) + 1},>={oldest}"


def test_every_extra_the_docs_name_exists(artefacts):
    extras = set(artefacts.metadata().get_all("Provides-Extra"))
    named = set()
    for doc in ["README.md", *(f"docs/{path.name}" for path in (REPO_DIR / "docs").glob("*.md"))]:
        text = artefacts.sdist_member(doc).decode()
        for group in re.findall(r"(?:rq-gevent|\.)\[([^]]*)\]", text, re.IGNORECASE):
            named.update(extra.strip().lower() for extra in group.split(","))
    assert {"jobs", "sentry", "metrics", "embedded", "demo", "test"} <= named  # the scan finds what it should
    assert named <= extras, named - extras


def extra_requirements(artefacts: Artefacts, extra: str) -> list[Requirement]:
    requirements = [Requirement(line) for line in artefacts.metadata().get_all("Requires-Dist")]
    return [r for r in requirements if r.marker and r.marker.evaluate({"extra": extra}) and
            not r.marker.evaluate({"extra": ""})]  # fmt: skip


def test_the_test_extra_takes_the_dashboard_from_the_dashboard_extra(artefacts):
    """One list: the dashboard the tests run (tests/test_rq_api.py, in every session) is the one
    ``rq-gevent[dashboard]`` installs, six included."""
    dashboard = {r.name.lower(): r for r in extra_requirements(artefacts, "dashboard")}
    assert dashboard.keys() == {"rq-dashboard", "six"}, dashboard
    assert dashboard["rq-dashboard"].specifier.contains("0.9.0")
    test = extra_requirements(artefacts, "test")
    assert [(r.name, r.extras) for r in test if r.name == "rq-gevent"] == [("rq-gevent", {"dashboard"})]
    assert not dashboard.keys() & {r.name.lower() for r in test}, "listed in the test extra by hand too"


def test_the_dashboard_extra_alone_gives_an_rq_dashboard_that_shows_our_workers(
    artefacts, connection, redis_url, tmp_path
):
    """``pip install 'rq-gevent[dashboard]'`` into a fresh virtualenv, as a user does it (the wheel for
    the name), and nothing else: its ``rq-dashboard`` command starts and shows a busy GeventWorker and
    one of its jobs.  (``pip install rq-dashboard`` alone gives 0.9.0, which exits on its import of
    six.)"""
    venv = tmp_path / "dashboard"
    # Without a pip of its own (~5 s saved): this interpreter's pip installs into it (--python).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", f"{artefacts.wheel}[dashboard]"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}  # the virtualenv's alone
    dashboard_shows_a_busy_worker_and_one_of_its_jobs([str(venv / "bin" / "rq-dashboard")], connection, redis_url, env)


def test_the_project_urls_are_declared(artefacts):
    urls = dict(entry.split(", ", 1) for entry in artefacts.metadata().get_all("Project-URL"))
    assert set(urls) == {"Documentation", "Source", "Changelog", "Issues"}
    assert all(url.startswith("https://") for url in urls.values())
    assert urls["Changelog"].endswith("docs/changelog.md")


def test_package_data_is_read_from_the_wheel_as_a_zip(artefacts, tmp_path):
    """importlib.resources, not paths beside __file__: a template renders and the PHP bridge runs as a
    file when the packages are imported straight from the wheel (zipimport), and the bridge's extracted
    copy is gone when the process exits."""
    code = f"""
import sys
sys.path.insert(0, {str(artefacts.wheel)!r})
import jobs, rq_gevent
assert jobs.__file__.startswith({str(artefacts.wheel)!r}), jobs.__file__
assert rq_gevent.__file__.startswith({str(artefacts.wheel)!r}), rq_gevent.__file__
from email.headerregistry import Address
from jobs.mail.message import activation_message
from jobs.discuz.uc_client_php import bridge_script_file
to = Address("王五", "ww", "example.cn")
sent = activation_message(Address("", "noreply", "example.org"), to, "<m@example.org>", "https://x/a", "zh", "论坛")
from email import message_from_bytes, policy
print(message_from_bytes(sent.data, policy=policy.default)["Subject"])
print(bridge_script_file())
print(bridge_script_file().stat().st_size)
from rq_gevent.plumbing import lua
assert "local function not_withdrawn" in lua.load("start").source
"""
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert ran.returncode == 0, ran.stderr
    subject, bridge, size = ran.stdout.splitlines()
    assert "论坛" in subject
    assert not bridge.startswith(str(artefacts.wheel)) and bridge.endswith("uc_client_bridge.php")
    assert int(size) == len(artefacts.wheel_member("jobs/discuz/uc_client_bridge.php"))
    assert not Path(bridge).exists(), "the bridge's extracted copy outlived the process"


def test_the_job_modules_without_their_extra_name_it(artefacts, tmp_path):
    """The wheel alone, without the extra "jobs": importing the job modules says what to install."""
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", str(artefacts.wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    imported = subprocess.run(
        [python, "-c", "import rq_gevent; import jobs.mail.activation"], capture_output=True, text=True, cwd=tmp_path
    )
    assert imported.stderr.strip().splitlines()[-1] == (
        "ImportError: the job modules need cryptography, email-validator, PyMySQL, bcrypt, urllib3, defusedxml: "
        "pip install 'rq-gevent[jobs]'"
    ), imported.stderr
