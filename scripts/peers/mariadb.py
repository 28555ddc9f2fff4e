"""A real MariaDB server for the session, in a private data directory on a loopback port.

Installed through apt when the machine lacks it (as on a fresh CI machine); never a skip.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pymysql

from peers.processes import free_port
from peers.system_packages import ensure_command

SBIN = ("/usr/sbin", "/usr/local/sbin")


class MariaDB:
    def __init__(self, base_dir: Path):
        self.base_dir = base_dir
        self.datadir = base_dir / "data"
        self.socket = base_dir / "mysqld.sock"
        self.error_log = base_dir / "error.log"
        # MariaDB names its temporary tables after its pid and a counter; servers sharing /tmp
        # (nox runs sessions side by side) collide and mariadb-install-db fails one in five.
        self.tmpdir = base_dir / "tmp"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.server = ensure_command("mariadbd", ["mariadb-server"], SBIN)
        self.install_db = ensure_command("mariadb-install-db", ["mariadb-server"], SBIN)

    def start(self) -> MariaDB:
        self.tmpdir.mkdir(exist_ok=True)
        if not self.datadir.exists():
            installed = subprocess.run(
                [
                    self.install_db,
                    "--no-defaults",
                    f"--datadir={self.datadir}",
                    f"--tmpdir={self.tmpdir}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    *self._user_option(),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            if installed.returncode:
                raise RuntimeError(f"mariadb-install-db failed:\n{installed.stderr[-3000:]}")
        self.process = subprocess.Popen(
            [
                self.server,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--tmpdir={self.tmpdir}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.base_dir / 'mysqld.pid'}",
                f"--log-error={self.error_log}",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
                "--sql-mode=",
                *self._user_option(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.admin().close()
                return self
            except pymysql.err.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"MariaDB did not start:\n{self.error_log.read_text()[-3000:]}") from None
                time.sleep(0.2)

    def admin(self, database: str | None = None) -> pymysql.connections.Connection:
        return pymysql.connect(unix_socket=str(self.socket), user="root", database=database, autocommit=True)

    def kill(self) -> None:
        """Die like a crashed server: SIGKILL, no clean shutdown."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    @staticmethod
    def _user_option() -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []
