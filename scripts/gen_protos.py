"""Generate the Python code of the edgesel.v1 contract into client/edgesel/.

    python scripts/gen_protos.py           # regenerate the committed files
    python scripts/gen_protos.py --check   # exit 1 (with a diff) if the committed files are stale

The generated code is committed so that installing the client needs no protoc; the check keeps it honest.
grpcio-tools is pinned exactly (requirements-dev.txt) because its protoc stamps the minimum protobuf runtime.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
OUTPUT_ROOT = REPO_ROOT / "client"
GENERATED_PACKAGE = Path("edgesel")
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
PACKAGE_INIT_TEXT = '"""Code generated from proto/ by scripts/gen_protos.py. Do not edit."""\n'


def proto_files() -> list[Path]:
    return sorted(path.relative_to(PROTO_ROOT) for path in (PROTO_ROOT / GENERATED_PACKAGE).rglob("*.proto"))


def generate(output_root: Path) -> None:
    """Run protoc from grpc_tools over every .proto and write package __init__ files."""
    protos = proto_files()
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / GENERATED_PACKAGE}")
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={output_root}",
        f"--pyi_out={output_root}",
        f"--grpc_python_out={output_root}",
        *(str(proto) for proto in protos),
    ]
    subprocess.run(command, check=True, cwd=PROTO_ROOT)
    for proto in protos:
        for package_dir in [*proto.parents][:-1]:
            init = output_root / package_dir / "__init__.py"
            init.write_text(PACKAGE_INIT_TEXT)
    # Type checkers read the generated .pyi stubs only from a package marked as typed (PEP 561).
    (output_root / GENERATED_PACKAGE / "py.typed").write_text("")


def generated_files(root: Path) -> dict[Path, str]:
    package_root = root / GENERATED_PACKAGE
    if not package_root.exists():
        return {}
    files = {}
    for path in sorted(package_root.rglob("*")):
        if path.name in ("__init__.py", "py.typed") or path.name.endswith(GENERATED_SUFFIXES):
            files[path.relative_to(root)] = path.read_text()
    return files


def remove_stale(root: Path, fresh: dict[Path, str]) -> None:
    for relative in generated_files(root):
        if relative not in fresh:
            (root / relative).unlink()


def check() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        generate(Path(scratch))
        fresh = generated_files(Path(scratch))
    committed = generated_files(OUTPUT_ROOT)
    stale = False
    for relative in sorted(set(fresh) | set(committed)):
        expected = fresh.get(relative)
        actual = committed.get(relative)
        if expected == actual:
            continue
        stale = True
        if expected is None or actual is None:
            state = "missing from the committed tree" if actual is None else "not produced by protoc"
            print(f"{relative}: {state}")
        diff = difflib.unified_diff(
            (actual or "").splitlines(keepends=True),
            (expected or "").splitlines(keepends=True),
            fromfile=f"committed/{relative}",
            tofile=f"regenerated/{relative}",
        )
        sys.stdout.writelines(diff)
    if stale:
        print("\nGenerated protobuf code is stale: run `python scripts/gen_protos.py` and commit the result.")
        return 1
    print(f"Generated protobuf code is up to date ({len(fresh)} files).")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if the committed generated code is stale")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    with tempfile.TemporaryDirectory() as scratch:
        generate(Path(scratch))
        fresh = generated_files(Path(scratch))
    remove_stale(OUTPUT_ROOT, fresh)
    for relative, text in fresh.items():
        target = OUTPUT_ROOT / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    print(f"Wrote {len(fresh)} files under {OUTPUT_ROOT / GENERATED_PACKAGE}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
