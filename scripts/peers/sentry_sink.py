"""A stand-in for Sentry's ingest endpoint: a real HTTP server that stores every envelope it receives.

    python scripts/peers/sentry_sink.py --port P --store DIR [--answer ok|429|500|hang|slow:SECONDS]

Accepts ``POST /api/<project>/envelope/`` (gzip or plain), writes each decompressed body to
``DIR/<n>.envelope`` and its request headers to ``DIR/<n>.headers`` (JSON), then answers as told:
``ok`` (200 with the event id, as Sentry does), ``429`` (rate limited for 60 s, with Sentry's
headers), ``500``, ``hang`` (never answers, the connection stays open) or ``slow:S`` (200 after S
seconds).  Prints ``ready <port>``.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from serving import serve_http


class Handler(BaseHTTPRequestHandler):
    store: Path
    answer_with = "ok"
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
        store_atomically(self.store / f"{number}.headers", json.dumps(dict(self.headers.items())).encode())
        store_atomically(self.store / f"{number}.envelope", body)
        if self.answer_with == "hang":
            while True:
                time.sleep(3600)
        if self.answer_with == "429":
            limits = {"Retry-After": "60", "X-Sentry-Rate-Limits": "60::organization"}
            self.answer(429, {"detail": "rate limited"}, limits)
            return
        if self.answer_with == "500":
            self.answer(500, {"detail": "internal error"})
            return
        if self.answer_with.startswith("slow:"):
            time.sleep(float(self.answer_with.split(":", 1)[1]))
        header = json.loads(body.split(b"\n", 1)[0] or b"{}")
        self.answer(200, {"id": header.get("event_id", "")})

    def answer(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        pass


def store_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--answer", default="ok", help="ok, 429, 500, hang or slow:SECONDS")
    options = parser.parse_args()
    if options.answer not in ("ok", "429", "500", "hang") and not options.answer.startswith("slow:"):
        parser.error(f"--answer: unknown {options.answer!r}")
    options.store.mkdir(parents=True, exist_ok=True)
    Handler.store = options.store
    Handler.answer_with = options.answer
    return serve_http(Handler, "127.0.0.1", options.port)


if __name__ == "__main__":
    sys.exit(main())
