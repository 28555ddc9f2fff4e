"""Redis with Sentinel, as rq users run it: a primary, two replicas and three ``redis-sentinel``
processes (Debian's ``redis-sentinel`` package, installed when missing), all on loopback ports.
Every server has ``min-replicas-to-write 1`` (``min-replicas-max-lag`` 2 s), the Redis docs' guard
that makes a primary cut off from its replicas refuse writes instead of losing them.

    with SentinelSet(tmp_path) as redis_ha:
        redis_ha.settings()        # SENTINEL for a --config module, as rq's CLI reads it
        redis_ha.failover()        # SENTINEL FAILOVER, waits for the new primary
        redis_ha.kill_primary()    # kill -9 of the primary, waits for the new primary
        redis_ha.wait_until_writable()  # until it accepts writes (a replica follows it)
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from peers.system_packages import ensure_command
from rq_gevent.embedded_redis import EmbeddedRedis, free_port

MASTER_NAME = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
MIN_REPLICAS_MAX_LAG = 2
GUARD = ["--min-replicas-to-write", "1", "--min-replicas-max-lag", str(MIN_REPLICAS_MAX_LAG)]


class SentinelSet:
    def __init__(self, directory: Path, sentinels: int = 3):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sentinel_binary = ensure_command("/usr/bin/redis-sentinel", ["redis-sentinel"])
        self.primary = EmbeddedRedis(extra_args=GUARD)
        self.replicas: list[EmbeddedRedis] = []
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    def start(self) -> SentinelSet:
        self.primary.start()
        for _ in range(2):
            replica_of = ["--replicaof", "127.0.0.1", str(self.primary.port)]
            self.replicas.append(EmbeddedRedis(extra_args=GUARD + replica_of).start())
        _wait(self._replication_ok, 20, "the replicas in sync")
        for index, port in enumerate(self.sentinel_ports):
            config = self.directory / f"sentinel-{index}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {self.directory}\n"
                f"logfile {self.directory / f'sentinel-{index}.log'}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 2\n"
            )
            self.sentinels.append(subprocess.Popen([self.sentinel_binary, str(config)], stdin=subprocess.DEVNULL))
        _wait(self._sentinels_agree, 30, "the sentinels to see the primary and the replicas")
        return self

    def settings(self) -> dict:
        """rq's ``SENTINEL`` setting for a --config module."""
        return {
            "INSTANCES": [("127.0.0.1", port) for port in self.sentinel_ports],
            "MASTER_NAME": MASTER_NAME,
            "DB": 0,
            "SOCKET_TIMEOUT": 5,
        }

    def primary_address(self) -> tuple[str, int]:
        host, port = self._sentinel(0).execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        return host.decode(), int(port)

    def client(self) -> redis.Redis:
        """A client of whichever server is the primary now."""
        host, port = self.primary_address()
        return redis.Redis(host=host, port=port)

    def failover(self) -> float:
        """``SENTINEL FAILOVER``; returns the monotonic time a replica became the primary."""
        before = self.primary_address()
        self._sentinel(0).execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        return self._wait_for_new_primary(before)

    def kill_primary(self) -> float:
        """``kill -9`` of the primary; returns the monotonic time a replica became the primary."""
        before = self.primary_address()
        (server,) = [server for server in self.servers if server.port == before[1]]
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        return self._wait_for_new_primary(before)

    def wait_until_writable(self, timeout: float = 60) -> float:
        """Wait until the primary accepts writes (``min-replicas-to-write``: a replica follows it, which
        after a ``kill -9`` takes the sentinels from 1 to ~20 s); returns the monotonic time it did."""
        _wait(self.accepts_writes, timeout, "the primary to accept writes")
        return time.monotonic()

    def accepts_writes(self) -> bool:
        """Whether the primary sentinel 0 names takes a write now."""
        try:
            return bool(redis.Redis(*self.primary_address(), socket_timeout=1).set("peers:probe", 1, px=1000))
        except redis.RedisError:
            return False

    def _wait_for_new_primary(self, before: tuple[str, int]) -> float:
        _wait(lambda: self.primary_address() != before and self._is_primary(self.primary_address()), 60,
              "a new primary")  # fmt: skip
        return time.monotonic()

    def _is_primary(self, address: tuple[str, int]) -> bool:
        try:
            return redis.Redis(*address, socket_timeout=1).info("replication")["role"] == "master"
        except redis.RedisError:
            return False

    @property
    def servers(self) -> list[EmbeddedRedis]:
        return [self.primary, *self.replicas]

    def _replication_ok(self) -> bool:
        try:
            infos = [redis.Redis(port=replica.port, socket_timeout=1).info("replication") for replica in self.replicas]
        except redis.RedisError:
            return False
        return all(info.get("master_link_status") == "up" for info in infos)

    def _sentinel(self, index: int) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[index], socket_timeout=2, decode_responses=False)

    def _sentinels_agree(self) -> bool:
        try:
            for index in range(len(self.sentinel_ports)):
                master = self._sentinel(index).sentinel_master(MASTER_NAME)
                replicas, sentinels = master.get("num-slaves", 0), master.get("num-other-sentinels", 0)
                if replicas < len(self.replicas) or sentinels < len(self.sentinels) - 1:
                    return False
        except redis.RedisError:
            return False
        return True

    def stop(self) -> None:
        for process in self.sentinels:
            process.terminate()
        for process in self.sentinels:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        for server in self.servers:
            server.cleanup()

    def __enter__(self) -> SentinelSet:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
