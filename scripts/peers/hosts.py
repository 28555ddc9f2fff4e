"""Worker hosts as Linux network namespaces: each its own network stack behind a veth pair on a
bridge, where Redis listens.  Cutting a host's link drops its packets silently (no RST, no FIN),
as a failed switch port or a partition does.  Needs root (``ip netns``, ``ip link``).

    with Fleet(hosts=2) as fleet:
        fleet.redis_address                      # what the hosts reach Redis at
        fleet.run(0, ["python", "-m", "rq_gevent", ...])   # a process on host 0
        fleet.cut(0); fleet.restore(0)
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from pathlib import Path

SUBNET = "10.77.{}.{}"


class Fleet:
    def __init__(self, hosts: int = 2):
        self.count = hosts
        self.network: int | None = None  # 10.77.N.0/24, chosen by start(): test sessions may run fleets at once

    @property
    def bridge(self) -> str:
        return f"rqbr{self.network}"

    @property
    def hosts(self) -> list[str]:
        return [f"rqhost{self.network}-{index}" for index in range(self.count)]

    @property
    def redis_address(self) -> str:
        return SUBNET.format(self.network, 1)

    def start(self) -> Fleet:
        # One fleet at a time picks its network and puts its address on it (which marks it in use), so
        # two sessions cannot take the same network, nor the same names (derived from the network).
        with open(os.path.join(tempfile.gettempdir(), "rq-gevent-fleet.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.network = _unused_network(os.getpid() % 250)
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.redis_address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for index, host in enumerate(self.hosts):
            inside, outside = self._veth(index)
            _ip("netns", "add", host)
            _ip("link", "add", inside, "type", "veth", "peer", "name", outside)
            _ip("link", "set", inside, "netns", host)
            _ip("link", "set", outside, "master", self.bridge)
            _ip("link", "set", outside, "up")
            _ip("-n", host, "addr", "add", f"{self.address(index)}/24", "dev", inside)
            _ip("-n", host, "link", "set", inside, "up")
            _ip("-n", host, "link", "set", "lo", "up")
        return self

    def address(self, index: int) -> str:
        return SUBNET.format(self.network, 10 + index)

    def _veth(self, index: int) -> tuple[str, str]:
        return f"rqv{self.network}h{index}", f"rqv{self.network}b{index}"

    def run(self, index: int, argv: list[str], **popen: object) -> subprocess.Popen:
        """``argv`` as a process on host ``index`` (``ip netns exec``; no shell)."""
        return subprocess.Popen(["ip", "netns", "exec", self.hosts[index], *argv], **popen)  # type: ignore[call-overload]

    def cut(self, index: int) -> None:
        """Every packet to and from host ``index`` is dropped from now on, silently."""
        _ip("link", "set", self._veth(index)[1], "down")

    def restore(self, index: int) -> None:
        _ip("link", "set", self._veth(index)[1], "up")

    def stop(self) -> None:
        if self.network is None:
            return
        for index, host in enumerate(self.hosts):
            _ip("link", "del", self._veth(index)[1], check=False)
            _ip("netns", "del", host, check=False)
        _ip("link", "del", self.bridge, check=False)

    def __enter__(self) -> Fleet:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _unused_network(first: int) -> int:
    """The first ``SUBNET`` network from ``first`` on (wrapping at 250) that no interface here is on."""
    shown = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    for offset in range(250):
        network = (first + offset) % 250
        if SUBNET.format(network, "") not in shown:
            return network
    raise RuntimeError("every 10.77.N.0/24 network is in use here")


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


def available() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not Path("/usr/sbin/ip").exists() and not Path("/sbin/ip").exists() and not Path("/bin/ip").exists():
        return "iproute2 (ip) is missing"
    return None
