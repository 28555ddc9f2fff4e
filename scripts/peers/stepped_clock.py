"""A wall clock that a test steps, for real, for the processes it starts: libfaketime.

The processes run with ``LD_PRELOAD=libfaketime.so.1`` and read their offset from the real time in
a file on each clock call, so a test moves their ``time.time()`` forward or back while they run,
as an NTP step or a resumed VM would move every process's clock at once; ``os.utime(path)`` stamps
their stepped time too.  The monotonic clocks, timestamps read by ``stat`` and the machine's own
clock are left alone (tests share the machine), so a file the kernel stamps itself (on creation)
keeps the real time, which a real step would have moved.
Debian's ``faketime`` package (with its ``libfaketime``) is installed by apt when missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from peers.system_packages import ensure_command


def libfaketime() -> str:
    """The path of ``libfaketime.so.1``, installing Debian's ``faketime`` package first if missing."""
    ensure_command("faketime", ["faketime"])
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    for directory in (f"/usr/lib/{multiarch}/faketime", "/usr/lib/faketime", "/usr/local/lib/faketime"):
        library = Path(directory) / "libfaketime.so.1"
        if library.exists():
            return str(library)
    raise RuntimeError("the faketime package is installed but libfaketime.so.1 is not found")


class SteppedClock:
    """The wall clock of every process started with :meth:`env`; :meth:`step` moves it at once."""

    def __init__(self, directory: Path):
        self.offset_file = directory / "faketime-offset"
        self.offset = 0
        self.step(0)
        self.library = libfaketime()

    def env(self) -> dict[str, str]:
        """Environment variables that put a process (and the processes it starts) on this clock."""
        return {
            "LD_PRELOAD": self.library,
            "FAKETIME_TIMESTAMP_FILE": str(self.offset_file),
            "FAKETIME_NO_CACHE": "1",  # read the offset at each call, so a step takes effect at once
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "NO_FAKE_STAT": "1",
        }

    def step(self, seconds: int) -> None:
        """Move the clock by ``seconds`` (forward if positive) from where it is now."""
        self.offset += seconds
        temporary = self.offset_file.with_suffix(".new")
        temporary.write_text(f"{self.offset:+d}\n")
        os.replace(temporary, self.offset_file)  # a process never reads half a line

    def ahead_of_real_time(self) -> float:
        """How far this clock is ahead of the machine's, as a process on it reads ``time.time()``:
        the instrument's own check."""
        probe = subprocess.run(
            [sys.executable, "-c", "import time; print(time.time())"],
            env=dict(os.environ, **self.env()),
            capture_output=True,
            text=True,
            check=True,
        )
        return float(probe.stdout) - time.time()
