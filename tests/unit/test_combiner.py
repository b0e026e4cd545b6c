"""Concurrent requests of one process combined into one call (``services.combiner``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from huiyuan.services.combiner import Apply, BatchFailed, Combiner

THREADS = 12


class Gate:
    """An ``apply`` that records every batch and holds the first one until ``open``: the
    requests sent meanwhile line up behind its leader."""

    def __init__(self, combiner: Combiner[int, int], fails: BaseException | None = None) -> None:
        self.combiner = combiner
        self.batches: list[list[int]] = []
        self.opened = threading.Event()
        self.first_running = threading.Event()
        self.fails = fails  # raised, once, by the first batch of more than one request

    def __call__(self, items: list[int], deliver: Callable[[int, int], None]) -> Sequence[int]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.first_running.set()
            assert self.opened.wait(10)
        if self.fails is not None and len(items) > 1:
            failure, self.fails = self.fails, None
            raise failure
        return [item * 10 for item in items]

    def line_up(
        self, most: int = 100, apply: Apply[int, int] | None = None
    ) -> tuple[ThreadPoolExecutor, Future[int], list[Future[int]]]:
        """Request 0 leads a batch held until requests 1… have lined up behind it; every
        request is made with ``apply`` (which calls the gate), by default the gate itself."""
        call = apply or self
        pool = ThreadPoolExecutor(max_workers=THREADS)
        first = pool.submit(self.combiner.submit, 0, call, most)
        assert self.first_running.wait(10)
        rest = [pool.submit(self.combiner.submit, i, call, most) for i in range(1, THREADS)]
        self.open_when_lined_up(THREADS)  # the running batch's request is still at the front
        return pool, first, rest

    def open_when_lined_up(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.combiner._line) < count:
            assert time.monotonic() < deadline, "the requests never lined up"
            time.sleep(0.001)
        self.opened.set()


def test_a_lone_request_is_done_at_once_in_a_batch_of_its_own() -> None:
    combiner: Combiner[int, int] = Combiner()
    assert combiner.submit(7, lambda items, _: [i + 1 for i in items], 100) == 8
    assert (combiner.batches, combiner.largest) == (1, 1)


def test_requests_sent_while_a_batch_runs_are_done_together_each_with_its_own_result() -> None:
    # given a batch at work, held until every other request has lined up behind it
    combiner: Combiner[int, int] = Combiner()
    gate = Gate(combiner)
    pool, first, rest = gate.line_up()
    # then each request gets its own result …
    assert [f.result(10) for f in [first, *rest]] == [i * 10 for i in range(THREADS)]
    # … and the eleven that waited were done in one more batch, in the order they came
    assert gate.batches[0] == [0]
    assert sorted(gate.batches[1]) == list(range(1, THREADS))
    assert len(gate.batches) == 2
    assert combiner.batches == 2
    assert not combiner._line
    pool.shutdown()


def test_a_batch_takes_at_most_the_most_asked_for_and_the_next_leader_takes_the_rest() -> None:
    combiner: Combiner[int, int] = Combiner()
    gate = Gate(combiner)
    pool, first, rest = gate.line_up(most=4)
    assert [f.result(10) for f in [first, *rest]] == [i * 10 for i in range(THREADS)]
    assert [len(b) for b in gate.batches] == [1, 4, 4, 3]
    pool.shutdown()


def test_when_a_batch_fails_its_requests_are_told_to_go_alone_and_the_line_moves_on() -> None:
    # given a first batch that fails once every request has lined up behind it
    combiner: Combiner[int, int] = Combiner()
    gate = Gate(combiner, fails=RuntimeError("the database went away"))
    pool, first, rest = gate.line_up()
    # then the lone first batch succeeded, and every request of the failed one was told so
    assert first.result(10) == 0
    for future in rest:
        with pytest.raises(BatchFailed, match="the database went away"):
            future.result(10)
    # and the next request is combined as before
    assert combiner.submit(5, gate, 100) == 50
    assert not combiner._line
    pool.shutdown()


def test_a_call_that_returns_the_wrong_number_of_results_fails_its_batch() -> None:
    combiner: Combiner[int, int] = Combiner()
    with pytest.raises(BatchFailed, match="0 results for a batch of 1"):
        combiner.submit(1, lambda items, _: [], 100)
    assert not combiner._line


class Interrupted(BaseException):
    """Not an ``Exception``: like ``KeyboardInterrupt``, it must end only its own request."""


def test_a_leader_interrupted_hands_over_and_its_followers_go_alone() -> None:
    combiner: Combiner[int, int] = Combiner()
    gate = Gate(combiner, fails=Interrupted())
    pool, first, rest = gate.line_up()
    assert first.result(10) == 0
    outcomes = []
    for future in rest:
        try:
            future.result(10)
            outcomes.append("done")
        except Interrupted:
            outcomes.append("interrupted")  # the leader's own request
        except BatchFailed:
            outcomes.append("alone")
    assert sorted(outcomes) == ["alone"] * (THREADS - 2) + ["interrupted"]
    assert combiner.submit(3, gate, 100) == 30
    pool.shutdown()


def test_requests_from_many_threads_all_get_their_own_results() -> None:
    # given many threads sending many requests each, with no gate: batches form as they may
    combiner: Combiner[int, int] = Combiner()

    def apply(items: list[int], _: object) -> Sequence[int]:
        time.sleep(0.0005)  # a round trip to a database, say
        return [-item for item in items]

    def sender(base: int) -> list[int]:
        return [combiner.submit(base + n, apply, 8) for n in range(200)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(sender, range(0, 8000, 1000)))
    # then every request got the result of its own item, and some batches held several
    assert got == [[-(base + n) for n in range(200)] for base in range(0, 8000, 1000)]
    assert combiner.batches < 1600
    assert 1 < combiner.largest <= 8
    assert not combiner._line


def test_results_delivered_early_answer_their_requests_before_the_batch_is_done() -> None:
    # given a batch whose call hands out the odd items' results, then works on (held) — all
    # but its leader's (batch[0]), whose thread is the one making the call
    combiner: Combiner[int, int] = Combiner()
    gate = Gate(combiner)
    rest_may_finish = threading.Event()
    early: list[int] = []

    def in_two(items: list[int], deliver: Callable[[int, int], None]) -> Sequence[int]:
        results = gate(items, deliver)
        if len(items) > 1:
            for index, item in enumerate(items):
                if item % 2 and index > 0:
                    deliver(index, item * 10)
                    early.append(item)
            assert rest_may_finish.wait(10)
        return results

    pool, first, rest = gate.line_up(apply=in_two)
    assert first.result(10) == 0
    deadline = time.monotonic() + 10
    while len(early) < 5:
        assert time.monotonic() < deadline, "nothing was delivered early"
        time.sleep(0.001)
    # then those delivered are answered while the batch still works on the others …
    for i, future in enumerate(rest, start=1):
        if i in early:
            assert future.result(10) == i * 10
        else:
            assert not future.done()
    # … and a request answered early may send its next one, which waits its turn
    after = pool.submit(combiner.submit, 99, in_two, 100)
    rest_may_finish.set()
    assert [f.result(10) for f in rest] == [i * 10 for i in range(1, THREADS)]
    assert after.result(10) == 990
    assert not combiner._line
    pool.shutdown()


def test_a_batch_failing_after_some_results_were_delivered_fails_only_the_others() -> None:
    combiner: Combiner[int, int] = Combiner()
    gate = Gate(combiner)

    def half_then_fail(items: list[int], deliver: Callable[[int, int], None]) -> Sequence[int]:
        gate(items, deliver)
        if len(items) > 1:
            for index, item in enumerate(items):
                if item % 2 and index > 0:
                    deliver(index, item * 10)
            raise RuntimeError("the second transaction failed")
        return [item * 10 for item in items]

    pool, first, rest = gate.line_up(apply=half_then_fail)
    assert first.result(10) == 0
    futures.wait(rest, timeout=10)
    leader = gate.batches[1][0]  # its own result was not delivered: it goes alone too
    for i, future in enumerate(rest, start=1):
        if i % 2 and i != leader:
            assert future.result(10) == i * 10
        else:
            with pytest.raises(BatchFailed, match="the second transaction failed"):
                future.result(10)
    assert not combiner._line
    pool.shutdown()
