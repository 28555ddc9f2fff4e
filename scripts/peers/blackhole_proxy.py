"""A TCP proxy that can stop forwarding without closing anything: a path to Redis that silently died.
It can also fail over to another server behind the same address, as a managed Redis does.

    python scripts/peers/blackhole_proxy.py --target 127.0.0.1:6379 [--failover-target HOST:PORT] [--port 0]

Prints ``ready <port>``, then forwards every connection to the target.

* SIGUSR1: black-hole.  Every open connection, and every one accepted from now on, is kept open
  and its bytes are read and dropped in both directions: no answer, no FIN, no RST (what a NAT or
  a firewall that forgot the connection does).
* SIGHUP: mute.  Like SIGUSR1, but requests still reach the target: only its replies are dropped
  (a path that lost one direction), so a command runs and its caller never hears.
* SIGUSR2: heal.  Connections accepted from now on are forwarded again; the black-holed and muted
  ones stay dead, as they would behind a NAT that lost them.
* SIGWINCH: fail over.  Every open connection is closed, and connections accepted from now on go to
  ``--failover-target`` (a replica just promoted, with whatever it had received of the old one).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys


class Link:
    """One client connection and its connection to the target."""

    def __init__(self) -> None:
        self.dead = False  # nothing is forwarded
        self.muted = False  # only the target's replies are dropped
        self.writers: list[asyncio.StreamWriter] = []

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class Proxy:
    def __init__(self, target: tuple[str, int], failover_target: tuple[str, int] | None) -> None:
        self.target = target
        self.failover_target = failover_target
        self.blackholing = False
        self.muting = False
        self.links: set[Link] = set()

    def blackhole(self) -> None:
        self.blackholing = True
        for link in self.links:
            link.dead = True

    def mute(self) -> None:
        self.muting = True
        for link in self.links:
            link.muted = True

    def heal(self) -> None:
        self.blackholing = self.muting = False

    def fail_over(self) -> None:
        if self.failover_target is not None:
            self.target = self.failover_target
        for link in self.links:
            link.close()

    async def serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        link = Link()
        link.dead, link.muted = self.blackholing, self.muting
        link.writers.append(client_writer)
        self.links.add(link)
        try:
            if link.dead:
                await self._drain(client_reader)
                return
            target_reader, target_writer = await asyncio.open_connection(*self.target)
            link.writers.append(target_writer)
            await asyncio.gather(
                self._pipe(client_reader, target_writer, link),
                self._pipe(target_reader, client_writer, link, reply=True),
            )
            target_writer.close()
        except OSError:
            pass
        finally:
            self.links.discard(link)
            client_writer.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link, reply: bool = False
    ) -> None:
        while data := await reader.read(65536):
            if link.dead or (reply and link.muted):
                continue
            writer.write(data)
            await writer.drain()
        if not link.dead:
            writer.close()

    @staticmethod
    async def _drain(reader: asyncio.StreamReader) -> None:
        while await reader.read(65536):
            pass


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main(options: argparse.Namespace) -> None:
    proxy = Proxy(options.target, options.failover_target)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, proxy.blackhole)
    loop.add_signal_handler(signal.SIGUSR2, proxy.heal)
    loop.add_signal_handler(signal.SIGHUP, proxy.mute)
    loop.add_signal_handler(signal.SIGWINCH, proxy.fail_over)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", options.port, backlog=1024)
    print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, type=address, help="host:port to forward to")
    parser.add_argument("--failover-target", type=address, help="host:port to forward to after SIGWINCH")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
