"""gc_pause: the cyclic collector is off inside a section and back on when the last section ends."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from edgesel_server.gc_pause import gc_paused


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


def test_a_section_pauses_and_resumes() -> None:
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_not_pausing_leaves_the_collector_alone() -> None:
    with gc_paused(False):
        assert gc.isenabled()
    assert gc.isenabled()


def test_an_error_inside_still_resumes() -> None:
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_collector_disabled_by_the_program_stays_disabled() -> None:
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_sections_of_two_threads_resume_once_the_last_ends() -> None:
    """Thread A enters, B enters, A leaves (still paused: B is inside), B leaves (resumed)."""
    a_in, b_in, a_out, b_may_leave = (threading.Event() for _ in range(4))
    seen: dict[str, bool] = {}

    def a() -> None:
        with gc_paused():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b() -> None:
        a_in.wait(5)
        with gc_paused():
            b_in.set()
            a_out.wait(5)
            seen["after A left"] = gc.isenabled()
            b_may_leave.wait(5)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    a_out.wait(5)
    b_may_leave.set()
    for t in threads:
        t.join(5)
    assert seen == {"after A left": False}
    assert gc.isenabled()
