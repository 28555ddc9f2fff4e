"""A stand-in for Sentry's ingest endpoint: a real HTTP server that stores every envelope it receives.

    python tests/peers/sentry_sink.py --port P --store DIR

Accepts ``POST /api/<project>/envelope/`` (gzip or plain), writes each decompressed body to
``DIR/<n>.envelope`` and answers 200 with an event id, as Sentry does.  Prints ``ready <port>``.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Handler(BaseHTTPRequestHandler):
    store: Path
    counter = itertools.count(1)
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding:
            self.answer(415, {"detail": f"unsupported encoding {encoding}"})
            return
        if not self.path.rstrip("/").endswith("/envelope"):
            self.answer(404, {"detail": "not found"})
            return
        with self.lock:
            number = next(self.counter)
        path = self.store / f"{number}.envelope"
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(body)
        os.replace(temporary, path)
        header = json.loads(body.split(b"\n", 1)[0] or b"{}")
        self.answer(200, {"id": header.get("event_id", "")})

    def answer(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", type=Path, required=True)
    options = parser.parse_args()
    options.store.mkdir(parents=True, exist_ok=True)
    Handler.store = options.store
    server = ThreadingHTTPServer(("127.0.0.1", options.port), Handler)
    print(f"ready {options.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
