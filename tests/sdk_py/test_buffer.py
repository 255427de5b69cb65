"""The memory buffer and the SQLite spool: order, grouping, bounds, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdk_py.buffer import MemoryBuffer, SpoolBuffer


@pytest.fixture(params=["memory", "spool"])
def buf(request: pytest.FixtureRequest, tmp_path: Path):
    b = MemoryBuffer(10) if request.param == "memory" else SpoolBuffer(tmp_path / "s.db", 10)
    yield b
    b.close()


def test_oldest_first_and_only_acked_items_leave(buf) -> None:
    for i in range(5):
        assert buf.put("tok", "{}", b'{"i":%d}' % i)
    first = buf.take(3, 1 << 20)
    assert [i.body for i in first] == [b'{"i":0}', b'{"i":1}', b'{"i":2}']
    assert [i.body for i in buf.take(3, 1 << 20)] == [i.body for i in first]  # not yet acked
    buf.ack(first)
    assert len(buf) == 2
    assert [i.body for i in buf.take(10, 1 << 20)] == [b'{"i":3}', b'{"i":4}']


def test_a_batch_shares_subject_and_context_and_stays_within_bytes(buf) -> None:
    buf.put("a", "{}", b"x" * 10)
    buf.put("a", "{}", b"x" * 10)
    buf.put("a", '{"os":"iOS"}', b"x" * 10)
    buf.put("b", '{"os":"iOS"}', b"x" * 10)
    assert len(buf.take(10, 1 << 20)) == 2
    assert len(buf.take(10, 15)) == 1  # bytes cut the batch, never below one event
    buf.ack(buf.take(10, 1 << 20))
    assert [(i.subject, i.context) for i in buf.take(10, 1 << 20)] == [("a", '{"os":"iOS"}')]


def test_the_buffer_is_bounded(buf) -> None:
    assert all(buf.put("t", "{}", b"{}") for _ in range(10))
    assert buf.put("t", "{}", b"{}") is False
    assert len(buf) == 10


def test_meta_values(buf) -> None:
    assert buf.get_meta("token") is None
    buf.set_meta("token", "abc")
    buf.set_meta("token", "def")
    assert buf.get_meta("token") == "def"
    buf.set_meta("token", None)
    assert buf.get_meta("token") is None


def test_the_spool_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    first = SpoolBuffer(path, 100)
    for i in range(3):
        first.put("tok", "{}", b"%d" % i)
    first.set_meta("token", "tok")
    first.ack(first.take(1, 1 << 20))
    first.close()
    second = SpoolBuffer(path, 100)
    assert len(second) == 2
    assert [i.body for i in second.take(10, 1 << 20)] == [b"1", b"2"]
    assert second.get_meta("token") == "tok"
    second.close()
