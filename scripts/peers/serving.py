"""What the peer HTTP servers share: serve on a port, say ``ready <port>``, stop quietly on Ctrl+C."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PeerHTTPServer(ThreadingHTTPServer):
    # socketserver's default backlog of 5 resets connections when a worker pool of
    # dozens of greenlets connects at once; real forum/Sentry servers listen deeper.
    request_queue_size = 1024
    daemon_threads = True


def serve_http(handler: type[BaseHTTPRequestHandler], host: str, port: int) -> int:
    """Serve until interrupted (port 0 picks a free one); the first stdout line is ``ready <port>``."""
    server = PeerHTTPServer((host, port), handler)
    print(f"ready {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
