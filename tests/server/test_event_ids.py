"""Event ids: the creation time then 128 random bits taken from the OS's generator in batches
(space.new_event_id) — never the same twice, in one process, across threads, or in a forked child."""

from __future__ import annotations

import os
import re
import threading

from edgesel_server.space import _RandomHex, event_id_time, new_event_id

ID = re.compile(r"[0-9a-f]{44}")


def test_ids_are_well_formed_carry_their_time_and_never_repeat() -> None:
    ids = [new_event_id(1_700_000_000.123) for _ in range(5 * _RandomHex.BATCH + 7)]  # several refills
    assert all(ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert event_id_time(ids[0]) == 1_700_000_000.123
    assert len({i[12:] for i in ids}) == len(ids)  # the random parts themselves differ


def test_threads_taking_ids_at_once_never_share_one() -> None:
    got: list[list[str]] = [[] for _ in range(8)]

    def take(out: list[str]) -> None:
        for _ in range(3 * _RandomHex.BATCH):
            out.append(new_event_id())

    threads = [threading.Thread(target=take, args=(out,)) for out in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for out in got for i in out]
    assert len(set(every)) == len(every) == 8 * 3 * _RandomHex.BATCH


def test_a_forked_child_does_not_hand_out_the_parents_next_ids() -> None:
    new_event_id()  # the batch is filled: the parent has parts left that a child must not reuse
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, "".join(new_event_id()[12:] for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = f.read()
    os.waitpid(pid, 0)
    child_parts = {child[i : i + 32] for i in range(0, len(child), 32)}
    parent_parts = {new_event_id()[12:] for _ in range(_RandomHex.BATCH)}
    assert len(child_parts) == 10 and not child_parts & parent_parts
