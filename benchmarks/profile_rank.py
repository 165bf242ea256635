"""Rank a py-spy profile of the server: where its CPU goes, by thread, by function (inclusive) and by leaf.

    .venv/bin/py-spy record --native --pid SERVER_PID --duration 20 --rate 50 --format raw -o out/prof.txt &
    .venv/bin/edgesel-bench --config examples/edgesel.toml --target HOST:PORT --server-pid SERVER_PID \\
        --phases select --duration 20
    .venv/bin/python benchmarks/profile_rank.py out/prof.txt [--top 30] > out/prof-ranked.txt

Input: py-spy's raw (collapsed) format, one stack per line ("outer;...;leaf COUNT"). Native frames that py-spy
could not name ("0x7f... (libfoo.so)") are shown by their library. With --native py-spy samples threads that
wait too; samples that wait (epoll_wait, fdatasync, a lock or condition wait) are counted apart and the
shares are of the others: CPU, not wall time.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

ADDRESS = re.compile(r"^0x[0-9a-f]+ \((.*)\)$")
LINE = re.compile(r" \(([^()]*):\d+\)$")  # "func (file.py:123)" -> "func (file.py)"


def frame_name(frame: str) -> str:
    m = ADDRESS.match(frame)
    if m:
        return f"[{m.group(1).rsplit('/', 1)[-1]}]"
    return LINE.sub(r" (\1)", frame)


WAIT_LEAVES = (
    "epoll_wait", "fdatasync", "fsync", "poll ", "nanosleep", "clock_nanosleep", "accept", "pthread_cond_"
)  # fmt: skip
WAIT_FRAMES = (
    "PyThread_acquire_lock_timed", "Condition.wait", "pthread_cond_", "sem_wait", "sem_timedwait"
)  # fmt: skip


def waiting(frames: list[str]) -> bool:
    leaf = frames[-1]
    if leaf.startswith(WAIT_LEAVES):
        return True
    # An unnamed libc leaf under a lock/condition wait is the futex call itself.
    return leaf.endswith("(libc.so.6)") and any(f.startswith(WAIT_FRAMES) for f in frames)


def thread_of(frames: list[str]) -> str:
    text = ";".join(frames)
    for marker, name in (
        ("_write_loop", "store writer thread"),
        ("_tail_loop", "store tailer thread"),
        ("_run_module_as_main", "event loop (main) thread"),
        ("BaseEventLoop.run_forever", "event loop (main) thread"),  # started as the edgesel-server script
        ("metrics", "metrics thread"),
    ):
        if marker in text:
            return name
    if "grpc" in text or "libgrpc" in text:
        return "gRPC C-core threads"
    return "other threads"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile")
    p.add_argument("--top", type=int, default=30)
    args = p.parse_args()
    threads: Counter = Counter()
    inclusive: Counter = Counter()
    leaves: Counter = Counter()
    waits: Counter = Counter()
    total = 0
    for line in Path(args.profile).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        if waiting(frames):
            waits[thread_of(frames)] += n
            continue
        total += n
        threads[thread_of(frames)] += n
        leaves[frame_name(frames[-1])] += n
        for name in {frame_name(f) for f in frames}:
            inclusive[name] += n
    print(f"{total} CPU samples ({sum(waits.values())} waiting samples left out: {dict(waits)})")
    print("\nby thread:")
    for name, n in threads.most_common():
        print(f"  {100 * n / total:6.1f}%  {name}")
    print(f"\ntop {args.top} functions, inclusive (a function's share with everything it calls):")
    for name, n in inclusive.most_common(args.top):
        print(f"  {100 * n / total:6.1f}%  {name}")
    print(f"\ntop {args.top} leaf frames (self time):")
    for name, n in leaves.most_common(args.top):
        print(f"  {100 * n / total:6.1f}%  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
