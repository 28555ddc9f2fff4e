"""Calling a third-party HTTP API: the typical I/O-bound job that greenlets overlap."""

from __future__ import annotations

import json
import urllib.request
from urllib.error import HTTPError


class ApiError(Exception):
    """The API answered with an error status."""


def call_api(url: str, timeout: float = 10.0) -> dict:
    """GET ``url`` and return its JSON body.  Runs cooperatively under the worker's gevent patching."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "rq-gevent-demo"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except HTTPError as error:
        raise ApiError(f"{url} answered HTTP {error.code}") from None
