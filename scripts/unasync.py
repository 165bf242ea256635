"""Generate the blocking SDK client (client/edgesel_client/client.py) from the asyncio one (aio.py).

    python scripts/unasync.py           # rewrite client.py
    python scripts/unasync.py --check   # exit 1 (with a diff) if client.py is not what aio.py gives

The habit of httpcore's scripts/unasync.py: one source, the sync twin made by plain token substitutions, and
a check in CI, so the two clients cannot drift (they used to: a lazy channel in one, an eager one in the
other). The output is formatted with the project's ruff so it reads like the rest of the code.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE = REPO_ROOT / "client" / "edgesel_client" / "aio.py"
TARGET = REPO_ROOT / "client" / "edgesel_client" / "client.py"

SYNC_DOCSTRING = '''"""The blocking client device apps embed, EdgeselClient.

Generated from aio.py (AsyncEdgeselClient) by scripts/unasync.py: do not edit; edit aio.py and run
``python scripts/unasync.py``. scripts/test.sh checks that this file is up to date.
"""
'''

# (pattern, replacement), applied in order; \\b keeps e.g. AsyncEdgeselClient from matching inside names.
SUBSTITUTIONS: tuple[tuple[str, str], ...] = (
    (r"^import grpc\.aio\n", ""),
    (r"\bgrpc\.aio\.(secure_channel|insecure_channel|Channel)\b", r"grpc.\1"),
    (r"\bAsyncEdgeselClient\b", "EdgeselClient"),
    (r"\bAsyncSelection\b", "Selection"),
    (r"\bcall_with_retry_async\b", "call_with_retry"),
    (r"\basync def __aenter__\b", "def __enter__"),
    (r"\basync def __aexit__\b", "def __exit__"),
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\bawait ", ""),
)


def _replace_module_docstring(text: str) -> str:
    match = re.match(r'"""(.*?)"""\n', text, flags=re.DOTALL)
    if match is None:
        raise SystemExit(f"{SOURCE}: expected a module docstring first")
    return SYNC_DOCSTRING + text[match.end() :]


def _ruff(*arguments: str, text: str) -> str:
    command = [sys.executable, "-m", "ruff", *arguments, "--stdin-filename", str(TARGET), "-"]
    done = subprocess.run(command, input=text, capture_output=True, text=True, cwd=REPO_ROOT)
    if done.returncode != 0:
        failure = f"{done.stderr}{done.stdout}"
        raise SystemExit(f"ruff {' '.join(arguments)} failed on the generated code:\n{failure}")
    return done.stdout


def generate() -> str:
    text = SOURCE.read_text()
    for pattern, replacement in SUBSTITUTIONS:
        text = re.sub(pattern, replacement, text, flags=re.MULTILINE)
    text = _replace_module_docstring(text)
    text = _ruff("check", "--fix", "--select", "I", "--quiet", text=text)  # the import list changed
    return _ruff("format", "--quiet", text=text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if client.py is not generated from aio.py")
    args = parser.parse_args(argv)
    fresh = generate()
    if not args.check:
        TARGET.write_text(fresh)
        print(f"Wrote {TARGET.relative_to(REPO_ROOT)} from {SOURCE.relative_to(REPO_ROOT)}.")
        return 0
    current = TARGET.read_text()
    if current == fresh:
        print(f"{TARGET.relative_to(REPO_ROOT)} is up to date with {SOURCE.relative_to(REPO_ROOT)}.")
        return 0
    sys.stdout.writelines(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            fresh.splitlines(keepends=True),
            fromfile=f"committed/{TARGET.name}",
            tofile=f"generated/{TARGET.name}",
        )
    )
    print(f"\n{TARGET.name} is stale or edited by hand: edit aio.py, run `python scripts/unasync.py`.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
