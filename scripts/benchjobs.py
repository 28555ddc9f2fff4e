"""Job functions for the benchmark scripts (workers import them with ``-P scripts``)."""

from __future__ import annotations

import time


def io_job(seconds: float, fail: bool = False) -> str:
    """Wait ``seconds`` as a network call would (a green sleep), then succeed or raise."""
    time.sleep(seconds)
    if fail:
        raise RuntimeError("the remote API answered 503")
    return "ok"
