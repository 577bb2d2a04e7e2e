"""Killing a `datasync sync` subprocess at a chosen moment."""

from __future__ import annotations

import signal
import subprocess
import time


def sigkill_after(process: subprocess.Popen[bytes], seconds: float) -> bool:
    """SIGKILL `process` after `seconds` unless it finished first, then reap it and close
    its output. True when it was still running and was killed."""
    time.sleep(seconds)
    running = process.poll() is None
    if running:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    if process.stdout is not None:
        process.stdout.close()
    return running
