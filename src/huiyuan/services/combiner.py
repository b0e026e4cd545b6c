"""Combining the concurrent requests of one process into one call (in-memory group commit).

Requests that each need one unit of work done and committed — and that wait for it — line up;
the first in line *leads*: it takes the line's front (itself and whoever queued behind it, up to
``most``), does all of it with one call, hands every request its own result, and wakes the next
in line to lead the requests that queued meanwhile. This is how a database groups commits (and
LevelDB its writers): while one batch is being written, the next one gathers, so the busier the
process, the bigger the batches and the cheaper each request. Before it takes its batch, the
leader yields the interpreter (again while that brings more), so that the threads running right
now — say, those just answered, sending their next request — join it; that alone made batches
of four senders grow from 2.5 to 3.9 requests (``bench/README.md``). A request alone in line
leads a batch of one at once: nothing waits for a timer.

Nothing is stored before the batch is: a request is answered only once its work is committed —
when the call returns, or earlier if the call delivers its result early (events: a batch
applied in two transactions answers those of the first when it commits, without waiting for
members busy in other transactions). If the process dies first, nobody is answered and the
senders send again (events are idempotent).

If the call fails for a reason of its own (not a refusal — those are results), every request of
the batch gets ``BatchFailed`` and does its work alone, so that one bad request cannot fail the
others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# ``apply(items, deliver)``: one result per item; ``deliver(index, result)`` answers early.
Apply = Callable[[list[T], Callable[[int, R], None]], Sequence[R]]


class BatchFailed(Exception):
    """The batch this request was in failed as a whole: do its work alone."""


@dataclass(eq=False)
class _Request(Generic[T, R]):
    item: T
    woken: threading.Event = field(default_factory=threading.Event)
    result: R | None = None
    done: bool = False
    failed: BaseException | None = None


class Combiner(Generic[T, R]):
    """A line of requests of one process; see the module docstring. Thread-safe."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._line: deque[_Request[T, R]] = deque()
        self.batches = 0  # batches done, for tests and diagnostics
        self.largest = 0  # the most requests one batch took

    def submit(self, item: T, apply: Apply[T, R], most: int) -> R:
        """``item``'s result, computed by ``apply`` on a batch of at most ``most`` items that
        includes it: ``apply(items, deliver)`` returns one result per item, in order, and may
        hand some out before it is done with the rest (``deliver(index, result)``, once their
        work is committed), which answers their requests at once. Raises ``BatchFailed`` if
        the batch's call failed before this item's result was delivered: the caller then does
        the work alone."""
        request: _Request[T, R] = _Request(item)
        with self._mutex:
            self._line.append(request)
            leads = len(self._line) == 1
        if not leads:
            request.woken.wait()
            if request.done:
                return self._result_of(request)
            # Woken to lead: it is at the front now.
        return self._lead(request, apply, most)

    def _lead(self, own: _Request[T, R], apply: Apply[T, R], most: int) -> R:
        # Let the requests running right now line up behind: yield the interpreter, again
        # while that brings more (one yield that brings nobody costs a microsecond or two).
        lined = 0
        while lined < len(self._line) < most:
            lined = len(self._line)
            time.sleep(0)
        with self._mutex:
            batch = [self._line[i] for i in range(min(most, len(self._line)))]
        failed: BaseException | None = None

        def deliver(index: int, result: R) -> None:
            _done(batch[index], result, wake=batch[index] is not own)

        try:
            results = apply([r.item for r in batch], deliver)
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
        except BaseException as error:  # every request of the batch must be woken
            failed, results = error, []
            if isinstance(error, Exception):
                log.exception("a batch of %d combined requests failed; each goes alone", len(batch))
        finally:
            with self._mutex:
                for _ in batch:
                    self._line.popleft()
                following = self._line[0] if self._line else None
                self.batches += 1
                self.largest = max(self.largest, len(batch))
        for index, request in enumerate(batch):
            if request.done:  # delivered already, maybe answered and gone
                continue
            if failed is not None:
                request.failed = failed
            _done(request, results[index] if failed is None else None, wake=request is not own)
        if following is not None:
            following.woken.set()  # not done: it leads the next batch
        if failed is not None and not isinstance(failed, Exception):
            raise failed  # KeyboardInterrupt and the like end the leader's own request only
        return self._result_of(own)

    @staticmethod
    def _result_of(request: _Request[T, R]) -> R:
        if request.failed is not None:
            raise BatchFailed(str(request.failed)) from request.failed
        return request.result  # type: ignore[return-value]


def _done(request: _Request[T, R], result: R | None, *, wake: bool) -> None:
    if request.done:
        return
    request.result = result
    request.done = True
    if wake:
        request.woken.set()
