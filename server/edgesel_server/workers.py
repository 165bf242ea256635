"""`edgesel-server --workers N`: one supervisor process and N worker processes that serve one port.

Every worker is a whole edgesel server: a Redis replica with the full learned state, which tails the Redis
log and applies every event in order, exactly as separate replicas do. So `--workers N > 1` needs the Redis
store: the embedded SQLite store has one in-process writer thread (group commit, each committed event applied
to the learned state before the ack), and other processes would have to tail its log to see those updates in
order — what Redis replicas already do. The workers listen on the same address with `grpc.so_reuseport`; the
kernel hands each new TCP connection to one of them.

The supervisor imports neither grpc nor the engine (grpc must not be imported before a fork; the supervisor
never forks, it starts each worker as a fresh `python -m edgesel_server.cli ... --worker-index I`). It binds
the address once itself with SO_REUSEPORT (port 0: a free port, which every worker is then given), forwards
SIGTERM/SIGINT to the workers and waits for their graceful stop, and restarts a worker that dies (after a
backoff when it died soon after starting). A worker's stdin is a pipe from the supervisor: at its end (the
supervisor gone, even by kill -9) the worker stops gracefully, so no worker outlives its supervisor.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 60.0  # per worker: its graceful stop (drain, in-flight RPCs, final snapshot), then SIGKILL
QUICK_DEATH_S = 10.0  # a worker that dies sooner than this after its start is restarted after a backoff
MAX_BACKOFF_S = 30.0
WORKER_PID_HEADER = "edgesel-worker-pid"  # initial metadata of every CatalogService reply of a worker
WORKER_HEADER = "edgesel-worker"


def sqlite_refusal(workers: int) -> str:
    return (
        f"edgesel-server: --workers {workers} requires the Redis store "
        '(server.store = "redis://host:port/db" or --store redis://host:port/db): the embedded SQLite '
        "store is written by one process, and the other workers would not see its updates. Use --workers 1 "
        'with the SQLite store, or run Redis (docs/redis.md, "Several processes on one machine").'
    )


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host, int(port)


def worker_metrics_listen(listen: str, index: int) -> str:
    """Worker `index`'s metrics port: the configured port + index (port 0: each worker picks a free one)."""
    host, port = _split(listen)
    return f"{host}:{port + index}" if port else listen


def reserve_port(listen: str) -> tuple[socket.socket, str]:
    """Bind `listen` once, with SO_REUSEPORT, and keep it bound while the supervisor runs: port 0 becomes one
    free port that every worker then binds, and the port stays this deployment's while workers restart.
    A bound socket that does not listen takes no connections. First a probe bind without SO_REUSEPORT, so
    that an address someone already holds (another server, with or without SO_REUSEPORT) fails loudly here
    instead of being silently shared."""
    host, port = _split(listen)
    bare = host.strip("[]")
    family, kind, proto, _, addr = socket.getaddrinfo(
        bare or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    probe = socket.socket(family, kind, proto)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC: TIME_WAIT does not block
        try:
            probe.bind(addr)
        except OSError as e:
            raise OSError(f"cannot listen on {listen}: {e.strerror}") from e
        port = probe.getsockname()[1]
    finally:
        probe.close()
    held = socket.socket(family, kind, proto)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        held.bind((addr[0], port, *addr[2:]))
    except OSError as e:
        held.close()
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror}") from e
    return held, f"{host}:{port}"


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    listening: threading.Event = field(default_factory=threading.Event)
    restarts: int = 0
    quick_deaths: int = 0
    restart_at: float = 0.0


class Supervisor:
    """Starts and watches the workers; `run` returns the exit code."""

    def __init__(self, argv: list[str], workers: int, listen: str) -> None:
        self.argv = argv  # the supervisor's own arguments: each worker gets them plus its address and index
        self.listen = listen
        self.workers = [_Worker(i) for i in range(workers)]
        self.wake = threading.Event()
        self.stopping = False

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True
        self.wake.set()

    def _spawn(self, w: _Worker) -> None:
        cmd = [sys.executable, "-m", "edgesel_server.cli", *self.argv,
               "--listen", self.listen, "--worker-index", str(w.index)]  # fmt: skip
        w.listening = threading.Event()
        w.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        w.started_at = time.monotonic()
        log.info("worker started", extra={"worker": w.index, "pid": w.proc.pid, "restart": w.restarts})
        threading.Thread(target=self._read_stdout, args=(w, w.proc), daemon=True).start()

    def _read_stdout(self, w: _Worker, proc: subprocess.Popen) -> None:
        """The worker's LISTENING line says it serves; anything else it prints is passed on."""
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("LISTENING ") and not w.listening.is_set():
                w.listening.set()
                self.wake.set()
            else:
                sys.stdout.write(line)
                sys.stdout.flush()
        self.wake.set()  # it exited

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for w in self.workers:
            self._spawn(w)
        while not all(w.listening.is_set() for w in self.workers):
            failed = [w for w in self.workers if w.proc is not None and w.proc.poll() is not None]
            if failed or self.stopping:
                # A worker that cannot start (config, certificates, Redis) would fail the same way again.
                if failed:
                    w = failed[0]
                    assert w.proc is not None
                    log.error("worker failed to start", extra={"worker": w.index, "code": w.proc.returncode})
                self._stop_all()
                code = failed[0].proc.returncode if failed and failed[0].proc else 0
                return code if code and code > 0 else (1 if failed else 0)
            self.wake.wait(0.5)
            self.wake.clear()
        # One plain line on stdout, as a single server prints it, once every worker serves.
        print(f"LISTENING {self.listen}", flush=True)
        pids = [w.proc.pid for w in self.workers if w.proc is not None]
        log.info(
            "edgesel server listening", extra={"listen": self.listen, "workers": len(pids), "pids": pids}
        )
        while not self.stopping:
            self.wake.wait(0.5)
            self.wake.clear()
            if self.stopping:
                break
            now = time.monotonic()
            for w in self.workers:
                if w.proc is not None and w.proc.poll() is not None:
                    self._died(w, now)
                if w.proc is None and now >= w.restart_at:
                    w.restarts += 1
                    self._spawn(w)
        return self._stop_all()

    def _died(self, w: _Worker, now: float) -> None:
        assert w.proc is not None
        code = w.proc.returncode
        ran = now - w.started_at
        w.quick_deaths = w.quick_deaths + 1 if ran < QUICK_DEATH_S else 0
        backoff = min(MAX_BACKOFF_S, 2.0 ** (w.quick_deaths - 1)) if w.quick_deaths else 0.0
        w.restart_at = now + backoff
        how = {"signal": signal.Signals(-code).name} if code < 0 else {"code": code}
        log.error(
            "worker died",
            extra={
                "worker": w.index,
                "pid": w.proc.pid,
                **how,
                "ran_s": round(ran, 1),
                "restart_in_s": backoff,
            },
        )
        self._close(w.proc)
        w.proc = None

    @staticmethod
    def _close(proc: subprocess.Popen) -> None:
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass

    def _stop_all(self) -> int:
        """SIGTERM to every worker, then wait for each (SIGKILL after STOP_TIMEOUT_S); 0 if all stopped
        cleanly."""
        live = [w for w in self.workers if w.proc is not None and w.proc.poll() is None]
        log.info("stopping workers", extra={"pids": [w.proc.pid for w in live if w.proc is not None]})
        for w in live:
            assert w.proc is not None
            w.proc.send_signal(signal.SIGTERM)
        clean = True
        for w in live:
            assert w.proc is not None
            try:
                code = w.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.error("worker did not stop in time; killing it", extra={"worker": w.index})
                w.proc.kill()
                code = w.proc.wait()
            if code != 0:
                how = {"signal": signal.Signals(-code).name} if code < 0 else {"code": code}
                log.error("worker did not stop cleanly", extra={"worker": w.index, "pid": w.proc.pid, **how})
            clean = clean and code == 0
            self._close(w.proc)
        log.info("workers stopped", extra={"clean": clean})
        return 0 if clean else 1


def supervise(argv: list[str], workers: int, listen: str) -> int:
    try:
        held, listen = reserve_port(listen)
    except OSError as e:
        print(f"edgesel-server: {e}", file=sys.stderr)
        return 1
    try:
        return Supervisor(argv, workers, listen).run()
    finally:
        held.close()


def exit_with_supervisor() -> None:
    """In a worker: stop gracefully (SIGTERM to itself) when the supervisor's end of stdin closes."""

    def watch() -> None:
        # The raw descriptor, not sys.stdin: a daemon thread blocked in a buffered read holds its lock, and
        # the interpreter's shutdown aborts on it.
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="edgesel-supervisor-watch", daemon=True).start()
