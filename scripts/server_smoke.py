"""Smoke run of an installed edgesel-server on the Python running this script (scripts/test.sh uses it for
the Pythons other than the development one): the server wheel pulled in neither matplotlib nor the tools and
`edgesel-server --help` works; then start the server on the example config, one Select and one Feedback
through the SDK, and a graceful SIGTERM that must exit 0. With --tools (after `pip install ./tools` into the
same venv): `edgesel-sim`, `edgesel-bench` and `edgesel-demo` answer --help, and a short simulator run on the
tiny scenario writes its report and plot (the data files and matplotlib came with the tools). Exit status 0
only if all of it worked.

    python scripts/server_smoke.py [--tools]
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from edgesel_client import EdgeselClient, FeedbackOutcome, RetryPolicy
from edgesel_server.process import server_command, start_listening

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "examples" / "edgesel.toml"
TINY_SCENARIO = ROOT / "examples" / "scenarios" / "tiny.toml"
SPACE = "image-classification"
BIN = Path(sys.executable).parent  # the venv's console scripts


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _runs(*command: str) -> bool:
    """The console script exits 0; its output is shown when it does not."""
    done = subprocess.run([str(BIN / command[0]), *command[1:]], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        sys.stderr.write(
            f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return done.returncode == 0


def light_server() -> bool:
    """The server wheel alone: no matplotlib, no tools (nor their old places inside the server), and its
    command works."""
    heavy = [d for d in ("matplotlib", "edgesel-tools") if _installed(d)]
    modules = (
        "matplotlib",
        "edgesel_tools",
        *(f"edgesel_server.{old}" for old in ("sim", "bench", "demo", "data")),
    )
    heavy += [m for m in modules if importlib.util.find_spec(m) is not None]
    ok = not heavy and _runs("edgesel-server", "--help")
    print(
        f"server wheel alone: installed besides the server {sorted(set(heavy)) or 'nothing heavy'}: "
        f"{'ok' if ok else 'FAILED'}"
    )
    return ok


def tools() -> int:
    """edgesel-tools installed next to the server wheel: every command answers, the simulator really runs."""
    ok = all(_runs(c, "--help") for c in ("edgesel-sim", "edgesel-bench", "edgesel-demo"))
    with tempfile.TemporaryDirectory() as out:
        short_run = "--rounds 300 --policies hybrid_linucb,random --quiet".split()
        ran = _runs("edgesel-sim", "--scenario", str(TINY_SCENARIO), "--out", out, *short_run)
        wrote = sorted(p.name for p in Path(out).iterdir())
    ok = ok and ran and wrote == ["regret.png", "report.json"]
    print(
        f"tools on CPython {platform.python_version()}: --help of edgesel-sim/-bench/-demo, "
        f"edgesel-sim on tiny.toml wrote {wrote}: {'ok' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


def main() -> int:
    if not light_server():
        return 1
    with tempfile.TemporaryDirectory() as data_dir:
        with tempfile.TemporaryFile("w+") as log:
            try:
                proc, target = start_listening(server_command(EXAMPLE_CONFIG, data_dir), stderr=log)
            except RuntimeError:
                log.seek(0)
                sys.stderr.write(log.read()[-4000:])
                raise
            try:
                with EdgeselClient(target, space=SPACE, retry=RetryPolicy(max_attempts=1)) as client:
                    selection = client.select()
                    receipt = selection.feedback(latency_ms=35.0, user_rating=4)
            finally:
                proc.terminate()
                code = proc.wait(timeout=30)
                if proc.stdout is not None:
                    proc.stdout.close()
            log.seek(0)
            errors = log.read()
    python = f"CPython {platform.python_version()}"
    ok = not selection.from_cache and receipt.outcome is FeedbackOutcome.ACCEPTED and code == 0
    print(
        f"server smoke on {python}: Select -> {selection.model_id} (event {selection.event_id or 'none'}), "
        f"Feedback -> {receipt.outcome.name}, SIGTERM exit {code}: {'ok' if ok else 'FAILED'}"
    )
    if not ok:
        sys.stderr.write(errors[-4000:])
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(tools() if sys.argv[1:] == ["--tools"] else main())
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:
        print(f"server smoke on CPython {platform.python_version()}: FAILED ({error})")
        sys.exit(1)
