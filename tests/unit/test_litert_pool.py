"""litert.Pool's policy with plain objects as members: a lone call takes the lone member,
company takes the pool's, and while the lone member runs the others wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from modelzoo_server.litert import Pool

pytestmark = pytest.mark.unit

WAIT_S = 60  # a hang fails the test; nothing here takes nearly that long


@dataclass(eq=False)  # members are told apart by identity, as the pool does
class Member:
    threads: int


class Holder:
    """A call in another thread: takes a member and holds it until released."""

    def __init__(self, pool: Pool[Member]) -> None:
        self.member: Member | None = None
        self.got = threading.Event()
        self.release = threading.Event()
        self._thread = threading.Thread(target=self._hold, args=(pool,), daemon=True)
        self._thread.start()

    def _hold(self, pool: Pool[Member]) -> None:
        with pool.take() as member:
            self.member = member
            self.got.set()
            self.release.wait(WAIT_S)

    def taken(self) -> Member:
        assert self.got.wait(WAIT_S), "never got a member"
        assert self.member is not None
        return self.member

    def done(self) -> None:
        self.release.set()
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive()


def _until(condition: Callable[[], bool]) -> None:
    """Wait for another thread to get somewhere (a hang fails the test)."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "never got there"
        time.sleep(0.001)


def _pool(size: int = 2, threads: int = 1, lone_threads: int = 2) -> Pool[Member]:
    return Pool(Member, threads, size, lone_threads)


def test_the_members_and_their_threads() -> None:
    pool = _pool()
    assert [m.threads for m in pool.members] == [1, 1, 2]
    assert pool.lone is pool.members[-1]
    assert pool.pooled == pool.members[:2]


@pytest.mark.parametrize("lone_threads", [0, 1, 2])
def test_no_lone_member_unless_it_has_more_threads(lone_threads: int) -> None:
    pool = _pool(threads=2, lone_threads=lone_threads)
    assert pool.lone is None
    assert pool.members == pool.pooled
    with pool.take() as member:  # alone, and on a pool member
        assert member in pool.pooled


def test_a_pool_needs_a_member() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        _pool(size=0)


def test_a_lone_call_takes_the_lone_member_each_time() -> None:
    pool = _pool()
    for _ in range(3):
        with pool.take() as member:
            assert member is pool.lone


def test_while_the_lone_member_runs_the_others_wait_and_its_return_wakes_them() -> None:
    pool = _pool()
    lone = Holder(pool)
    assert lone.taken() is pool.lone
    company = [Holder(pool), Holder(pool)]
    _until(lambda: pool.waiting == 2)
    assert not any(h.got.is_set() for h in company)  # both pool members free, yet they wait
    lone.done()
    assert {id(h.taken()) for h in company} == {id(m) for m in pool.pooled}
    for holder in company:
        holder.done()
    assert pool.waiting == 0


def test_with_a_call_in_flight_the_next_takes_a_pool_member() -> None:
    pool = _pool()
    lone = Holder(pool)
    assert lone.taken() is pool.lone
    first = Holder(pool)
    _until(lambda: pool.waiting == 1)
    lone.done()
    assert first.taken() in pool.pooled  # it waited, so it came in company
    with pool.take() as second:  # the lone member is free, but a call is in flight
        assert second in pool.pooled and second is not first.taken()
    first.done()


def test_with_every_pool_member_busy_a_call_waits_for_one_not_for_the_lone() -> None:
    pool = _pool()
    lone = Holder(pool)
    lone.taken()
    busy = [Holder(pool), Holder(pool)]
    _until(lambda: pool.waiting == 2)
    lone.done()
    members = [h.taken() for h in busy]
    late = Holder(pool)
    _until(lambda: pool.waiting == 1)
    busy[0].done()
    assert late.taken() is members[0]
    busy[1].done()
    late.done()


def test_a_member_comes_back_when_the_block_raises() -> None:
    pool = _pool(lone_threads=0)
    with pytest.raises(RuntimeError), pool.take():
        raise RuntimeError("the model rejected the input")
    taken = [Holder(pool), Holder(pool)]
    assert {id(h.taken()) for h in taken} == {id(m) for m in pool.pooled}
    for holder in taken:
        holder.done()
