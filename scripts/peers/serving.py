"""What the peer HTTP servers share: serve on a port, say ``ready <port>``, stop quietly on Ctrl+C."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PeerHTTPServer(ThreadingHTTPServer):
    # socketserver's default backlog of 5 resets connections when a worker pool of
    # dozens of greenlets connects at once; real forum/Sentry servers listen deeper.
    request_queue_size = 1024
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that hung up before its answer (a job's timeout, a worker shut down cold) is the
        client's business, as on any real server; anything else is this server's bug: a traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


def serve_http(handler: type[BaseHTTPRequestHandler], host: str, port: int) -> int:
    """Serve until interrupted (port 0 picks a free one); the first stdout line is ``ready <port>``."""
    server = PeerHTTPServer((host, port), handler)
    print(f"ready {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
