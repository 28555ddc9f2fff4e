"""What the peer HTTP servers share: serve on a port, say ``ready <port>``, stop quietly on Ctrl+C."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_http(handler: type[BaseHTTPRequestHandler], host: str, port: int) -> int:
    """Serve until interrupted (port 0 picks a free one); the first stdout line is ``ready <port>``."""
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    print(f"ready {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
