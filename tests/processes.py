"""Child processes a test starts: ended and their pipes closed, whatever the test did."""

from __future__ import annotations

import subprocess
from typing import Any


def reap(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """Kill the process if it still runs, wait for it, close its pipes (an open pipe left to the
    garbage collector is a ResourceWarning, which fails the suite)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
