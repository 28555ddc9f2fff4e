"""The whole test suite, as CI runs it: ``python3 -m pip install nox && python3 -m nox``.

The tests run against the oldest and the newest rq release that setup.cfg allows; keep the two in
step.  Each session builds its own virtualenv under .nox/.
"""

import nox

# setup.cfg declares rq >= 2.3.3, < 2.13: exactly these two ends are tested.
RQ_VERSIONS = ["2.3.3", "2.12.0"]
# setup.cfg declares sentry-sdk >= 2.20 (extra "sentry"): the oldest rq runs with the oldest
# sentry-sdk, the newest with the newest.
SENTRY_SDK_WITH_RQ = {"2.3.3": "sentry-sdk==2.20.0", "2.12.0": "sentry-sdk"}

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
@nox.parametrize("rq", RQ_VERSIONS)
def tests(session: nox.Session, rq: str) -> None:
    session.install("-e", ".[test]", f"rq=={rq}", SENTRY_SDK_WITH_RQ[rq])
    session.run("pytest", *session.posargs)
