"""Smoke run of an installed edgesel-server on the Python running this script (scripts/test.sh uses it for
the Pythons other than the development one): start the server on the example config, one Select and one
Feedback through the SDK, then a graceful SIGTERM that must exit 0. Exit status 0 only if all of it worked.

    python scripts/server_smoke.py
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from edgesel_client import EdgeselClient, FeedbackOutcome, RetryPolicy
from edgesel_server.process import server_command, start_listening

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "edgesel.toml"
SPACE = "image-classification"


def main() -> int:
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
        sys.exit(main())
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:
        print(f"server smoke on CPython {platform.python_version()}: FAILED ({error})")
        sys.exit(1)
