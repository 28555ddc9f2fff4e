"""What the peer HTTP servers share: serve on a port (plain or TLS), say ``ready <port>``, count the
connections they accept, stop quietly on Ctrl+C."""

from __future__ import annotations

import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANDSHAKE_TIMEOUT = 30.0  # seconds; a client that connects and says nothing does not hold a thread for ever


class PeerHTTPServer(ThreadingHTTPServer):
    # socketserver's default backlog of 5 resets connections when a worker pool of
    # dozens of greenlets connects at once; real forum/Sentry servers listen deeper.
    request_queue_size = 1024
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None):
        super().__init__(address, handler)
        self.tls = tls
        self.counts = {"connections": 0, "tls_handshakes": 0}
        self.counts_lock = threading.Lock()

    def finish_request(self, request, client_address) -> None:
        """Each accepted connection is counted; with TLS, its handshake runs here, in the connection's
        own thread, so a slow client does not hold up the accept loop."""
        self.count("connections")
        # As nginx and Apache do: with Nagle's algorithm on, a kept-alive connection's answer (headers,
        # then body: two writes) waits for the client's delayed ACK, some 40 ms a call.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_TIMEOUT)
        with self.tls.wrap_socket(request, server_side=True) as secured:
            self.count("tls_handshakes")
            super().finish_request(secured, client_address)

    def count(self, what: str) -> None:
        with self.counts_lock:
            self.counts[what] += 1

    def handle_error(self, request, client_address) -> None:
        """A client that hung up before its answer (a job's timeout, a worker shut down cold) or refused
        the handshake (it does not trust the certificate) is the client's business, as on any real
        server; anything else is this server's bug: a traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError | ssl.SSLError):
            return
        super().handle_error(request, client_address)


def tls_context(cert_file: str | None, key_file: str | None) -> ssl.SSLContext | None:
    """A server context for ``cert_file``/``key_file``, or None for plain HTTP when neither is given."""
    if not cert_file and not key_file:
        return None
    if not (cert_file and key_file):
        raise SystemExit("give both --tls-cert and --tls-key, or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


def serve_http(handler: type[BaseHTTPRequestHandler], host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
    """Serve until interrupted (port 0 picks a free one); the first stdout line is ``ready <port>``."""
    server = PeerHTTPServer((host, port), handler, tls)
    print(f"ready {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
