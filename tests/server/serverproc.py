"""A real edgesel-server process on loopback, for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The SDK's tests on other Pythons (scripts/test.sh: 3.8 with the floor runtimes, the newest) run the server
# from the development venv, since the server needs CPython >= 3.10 and the Rust extension.
SERVER_PYTHON = os.environ.get("EDGESEL_SERVER_PYTHON") or sys.executable

TEST_CONFIG = """
[server]
store = "{store}"
snapshot_every = {snapshot_every}
durability = "{durability}"
max_message_bytes = 65536
max_eligible = 500
decision_retention_s = {retention}

[[space]]
name = "vision"
description = "image classification on phones and boards"
reward_window_s = {window}
on_missing_feedback = "{on_missing}"
default_reward = 0.25
reward_aggregation = "{aggregation}"

[space.policy]
kind = "{policy}"
alpha = 0.3
lam = 1.0
half_life = {half_life}

[[space.device_features]]
name = "ram_gb"
min = 0.25
max = 64
transform = "log"

[[space.device_features]]
name = "has_npu"
min = 0
max = 1
default = 0

[[space.device_features]]
name = "battery_percent"
min = 0
max = 100
default = 100

[[space.model_features]]
name = "top1"
min = 40
max = 95

[[space.model_features]]
name = "file_size_mb"
min = 0.5
max = 2000
transform = "log"

[[space.model_features]]
name = "quantized"
min = 0
max = 1

[[space.models]]
id = "tiny"
artifact_uri = "file:///models/tiny.pt"
features = {{ top1 = 58.0, file_size_mb = 2.0, quantized = 1 }}

[[space.models]]
id = "small"
artifact_uri = "file:///models/small.pt"
features = {{ top1 = 72.0, file_size_mb = 14.0, quantized = 0 }}

[[space.models]]
id = "big"
artifact_uri = "file:///models/big.pt"
features = {{ top1 = 81.0, file_size_mb = 98.0, quantized = 0 }}

[[space]]
name = "second"

[[space.device_features]]
name = "ram_gb"
min = 0.25
max = 64

[[space.models]]
id = "only"
"""


def write_config(
    directory: Path,
    *,
    policy: str = "hybrid_linucb",
    window: float = 600.0,
    on_missing: str = "drop",
    snapshot_every: int = 50,
    store: str = "sqlite",
    durability: str = "fsync",
    half_life: int = 0,
    aggregation: str = "first",
    retention: float = 7 * 24 * 3600.0,
) -> Path:
    path = directory / "edgesel.toml"
    path.write_text(
        TEST_CONFIG.format(
            policy=policy,
            window=window,
            on_missing=on_missing,
            snapshot_every=snapshot_every,
            store=store,
            durability=durability,
            half_life=half_life,
            aggregation=aggregation,
            retention=retention,
        )
    )
    return path


class ServerProcess:
    """Starts `edgesel-server` on 127.0.0.1 with a free port and waits until it listens."""

    def __init__(
        self, config: Path, data_dir: Path, *, port: int = 0, extra: list[str] | None = None
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.port = port
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None
        self.stderr_lines: list[str] = []

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        cmd = [
            SERVER_PYTHON,
            "-m",
            "edgesel_server.cli",
            "--config",
            str(self.config),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--data-dir",
            str(self.data_dir),
            *self.extra,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("LISTENING "):
                self.port = int(line.split(":")[-1])
                self._wait_for_log_line("edgesel server listening", deadline)
                return self
            if not line and self.proc.poll() is not None:
                break
        self.kill()
        raise RuntimeError("server did not start:\n" + "\n".join(self.stderr_lines[-30:]))

    def _wait_for_log_line(self, text: str, deadline: float) -> None:
        """stdout and stderr are separate pipes: LISTENING on stdout says nothing about how far the stderr
        thread has read. The server logs `text` right before LISTENING, so once it is here, every startup
        log line ("space ready", ...) is in `stderr_lines` too (tests read them right after start)."""
        seen = 0
        while time.monotonic() < deadline and self.proc is not None and self.proc.poll() is None:
            lines = self.stderr_lines[seen:]
            if any(text in line for line in lines):
                return
            seen += len(lines)
            time.sleep(0.005)

    def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with self.proc.stderr:
            for line in self.proc.stderr:
                self.stderr_lines.append(line.rstrip())

    def kill(self) -> None:
        """SIGKILL: no chance to flush or snapshot."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._close_stdout()

    def _close_stdout(self) -> None:
        if self.proc is not None and self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._close_stdout()
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
