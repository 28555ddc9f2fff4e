"""scripts/soak.py, shortened: every kind of fault once or more, and the ledger says nothing was lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_a_short_soak_with_every_fault_loses_nothing():
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "soak.py"),
            "--jobs",
            "3000",
            "--minutes",
            "0.6",
            "--fault-every",
            "3:5",
            "--seed",
            "7",
            "--settle-minutes",
            "5",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    faults = next(line for line in result.stdout.splitlines() if line.startswith("faults: "))
    for kind in ("kill -9", "Redis restart", "CLIENT KILL", "SIGTERM warm", "SIGTERM cold"):
        assert kind in faults, faults
    assert "ledger: " in result.stdout and "lost 0 []" in result.stdout
    assert "soak: no job lost" in result.stdout
