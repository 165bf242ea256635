"""The replicas' bulk decoder of raw Redis log entries (`store/redis.py` `_Page`, whose fields are read in
Rust by `_core.log_page_columns`) gives exactly the events of the per-entry decoder it replaced (`_seq_of` +
`_decode_entries`, still the fallback): same types, strings, floats bit for bit, x vectors, seqs — or the
same exception. Entries in edgesel's canonical form (what `_event_fields` writes) take the Rust path; any
other (field order, numbers `float()` reads that repr never writes, odd ids, other encodings) falls back."""

from __future__ import annotations

import math
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesel_server._core import log_page_columns
from edgesel_server.store.base import LogEvent
from edgesel_server.store.redis import FIELD_NAMES, _decode_entries, _event_fields, _Page, _seq_of

SPACE = "fleet"


def reference(entries: list) -> list[LogEvent] | type[BaseException]:
    """The per-entry decoding of the previous release (or the type of what it raised)."""
    try:
        return _decode_entries(SPACE, [(_seq_of(i), flat) for i, flat in entries])
    except Exception as e:  # noqa: BLE001 - the type is what is compared
        return type(e)


def decoded(entries: list) -> list[LogEvent] | type[BaseException]:
    try:
        return _Page(SPACE, entries).events()
    except Exception as e:  # noqa: BLE001
        return type(e)


def same_value(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)  # type: ignore[arg-type]
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        return (a.dtype, a.shape, a.flags.writeable, a.tobytes()) == (
            b.dtype,
            b.shape,
            b.flags.writeable,
            b.tobytes(),
        )
    return a == b


def assert_same(got: object, want: object) -> None:
    if isinstance(want, type):
        assert got is want, (got, want)
        return
    assert isinstance(got, list) and len(got) == len(want)  # type: ignore[arg-type]
    for g, w in zip(got, want, strict=True):  # type: ignore[call-overload]
        for name in LogEvent.__dataclass_fields__:
            assert same_value(getattr(g, name), getattr(w, name)), (name, getattr(g, name), getattr(w, name))


floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 5e-324, 1e308, 1.5e16]
)
odd_numbers = st.sampled_from([b"nan", b"inf", b"-inf", b" 1.5", b"1.5 ", b"1_0", b"1e999", b"abc", b"",
                               b"0x1p3", b"\xff", b"+2E3", b".5", b"5.", b"007"])  # fmt: skip


@st.composite
def canonical_entry(draw: st.DrawFn, seq: int) -> list:
    kind = draw(st.sampled_from(["feedback", "default_reward", "add_model", "retire_model", "é-kind"]))
    d = draw(st.integers(1, 4))
    x = None if draw(st.booleans()) else np.array(draw(st.lists(floats, min_size=d, max_size=d)))
    event = LogEvent(
        SPACE,
        kind,
        event_id=draw(st.none() | st.text("0123456789abcdef", min_size=1, max_size=24)),
        model_id=draw(st.sampled_from(["mobilenet_v3_small", "late", "ünï"])),
        x=x,
        reward=draw(floats),
        payload=draw(st.binary(max_size=40)),
        created=draw(floats.filter(lambda v: v != 0.0)),  # (0 means "now" to _event_fields)
    )
    flat = [v.encode() if isinstance(v, str) else v for v in _event_fields(event)]
    return [b"0-%d" % seq, flat]


@st.composite
def perturbed(draw: st.DrawFn, entry: list) -> list:
    stream_id, flat = entry[0], list(entry[1])
    how = draw(st.sampled_from(["id", "order", "number", "encoding", "missing", "extra", "x"]))
    if how == "id":
        stream_id = draw(
            st.sampled_from([b"0-007", b"1-5", b"0-", b"0-1a", b"0-" + b"9" * 25, b"0- 3", b"x"])
        )
    elif how == "order":
        pairs = [flat[i : i + 2] for i in range(0, len(flat), 2)]
        pairs = draw(st.permutations(pairs))
        flat = [v for p in pairs for v in p]
    elif how == "number":
        flat[draw(st.sampled_from([9, 13]))] = draw(odd_numbers)
    elif how == "encoding":
        flat[draw(st.sampled_from([1, 3, 5]))] = b"\xff\xfe"
    elif how == "missing":
        del flat[draw(st.integers(0, 6)) * 2 : 2 * draw(st.integers(0, 6)) + 2]
    elif how == "extra":
        flat += [b"z", b"1"]
    else:
        flat[7] = draw(st.sampled_from([b"", b"\x01" + b"\x00" * 7, b"\x02", b"\x01" + b"\x00" * 8 * 3]))
    return [stream_id, flat]


@st.composite
def pages(draw: st.DrawFn) -> tuple[list, bool]:
    n = draw(st.integers(0, 12))
    first = draw(st.integers(1, 10**12))
    entries = [draw(canonical_entry(first + k)) for k in range(n)]
    odd = False
    if entries and draw(st.booleans()):
        k = draw(st.integers(0, n - 1))
        entries[k] = draw(perturbed(entries[k]))
        odd = True
    return entries, odd


@settings(max_examples=600, deadline=None)
@given(pages())
def test_bulk_decoding_equals_the_per_entry_decoding(page: tuple[list, bool]) -> None:
    entries, odd = page
    assert_same(decoded(entries), reference(entries))
    if not odd:  # what edgesel writes takes the Rust path
        assert log_page_columns(entries) is not None


def test_canonical_fields_read_in_rust() -> None:
    """The columns themselves, for a page with an x-less entry and an empty event id."""
    x = np.array([0.5, -2.0])
    events = [
        LogEvent(SPACE, "add_model", None, "m1", None, 0.0, b'{"id": "m1"}', 1.25),
        LogEvent(SPACE, "feedback", "abc", "m1", x, 0.734, b"{}", 1796195836.5275588),
    ]
    entries = [[b"0-%d" % (k + 7), [v.encode() if isinstance(v, str) else v for v in _event_fields(e)]]
               for k, e in enumerate(events)]  # fmt: skip
    columns = log_page_columns(entries)
    assert columns is not None
    seqs, kinds, eids, mids, blobs, rewards, payloads, created = columns
    assert (seqs, kinds, eids, mids) == ([7, 8], ["add_model", "feedback"], [None, "abc"], ["m1", "m1"])
    assert blobs == [b"\x00", b"\x01" + x.tobytes()] and payloads == [b'{"id": "m1"}', b"{}"]
    assert rewards == [0.0, 0.734] and created == [1.25, 1796195836.5275588]
    assert [name.decode() for name in FIELD_NAMES] == list("kemxrpc")
    assert (
        math.copysign(
            1.0, log_page_columns([[b"0-1", [*entries[0][1][:9], b"-0.0", *entries[0][1][10:]]]])[5][0]
        )
        == -1.0
    )  # type: ignore[index]
