"""Starting and stopping edgesel's own processes (the server, the bench's floor server) from Python tools.

Each prints one line `LISTENING host:port` on stdout once it serves, so a caller can ask for port 0 and learn
the real address. Used by the bench and by the simulator's live mode.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

START_TIMEOUT_S = 60.0


def server_command(config: str | Path, data_dir: str | Path, *, log_level: str = "warning") -> list[str]:
    """`edgesel-server` on a free loopback port."""
    return [sys.executable, "-m", "edgesel_server.cli", "--config", str(config), "--listen", "127.0.0.1:0",
            "--data-dir", str(data_dir), "--log-level", log_level]  # fmt: skip


def start_listening(
    cmd: list[str], *, stderr: IO[Any] | int = subprocess.DEVNULL
) -> tuple[subprocess.Popen, str]:
    """Start `cmd` and wait for its LISTENING line; returns the process and its host:port."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("LISTENING "):
            return proc, line.split()[1]
        if not line and proc.poll() is not None:
            break
    stop(proc, timeout=5)
    raise RuntimeError(f"could not start {' '.join(cmd)}")


def stop(proc: subprocess.Popen, *, timeout: float = 30.0) -> None:
    """SIGTERM (graceful: in-flight RPCs finish, a final snapshot), SIGKILL if that takes too long."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
