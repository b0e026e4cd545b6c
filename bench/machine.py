"""Who else used the CPU during a measurement (Linux ``/proc``; elsewhere nothing is known),
and how fast the CPU itself was.

On a small shared box another terminal's test run halves every figure, and a ratio against a
baseline measured a minute earlier does not cancel that out. So each load window is checked:
CPU time of processes that are neither this benchmark's nor the PostgreSQL server's work for
it is "foreign", and a window with much foreign CPU is flagged. A virtual machine can also
slow down with nothing in it to show for it (its host busy): the same Python loop took 0.86 s
at one hour and 1.6 s two hours later on one VM. ``cpu_speed`` times a fixed loop, so a
result measured on a CPU much slower or faster than its baseline's is flagged too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
_BACKEND = re.compile(r"^postgres: [^ ]+: \S+ (\S+) (?:\d|\[|[0-9a-f:]+\()")

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Proc:
    cpu: float  # seconds, user + system
    ppid: int
    name: str
    started: int  # clock ticks after boot: tells a reused pid from the same process


def snapshot() -> dict[int, Proc]:
    procs: dict[int, Proc] = {}
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return procs
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                raw = stat.read()
            with open(f"/proc/{pid}/cmdline", "rb") as cmd:
                name = cmd.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = raw.rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / _TICK
        comm = raw.split("(", 1)[1].rsplit(")", 1)[0]
        procs[pid] = Proc(cpu, int(fields[1]), name or comm, int(fields[19]))
    return procs


def _ours(pid: int, procs: dict[int, Proc], root: int) -> bool:
    seen = 0
    while pid > 1 and seen < 64:
        if pid == root:
            return True
        proc = procs.get(pid)
        if proc is None:
            return False
        pid, seen = proc.ppid, seen + 1
    return False


def _is_ours(pid: int, proc: Proc, procs: dict[int, Proc], root: int) -> bool:
    if _ours(pid, procs, root) or pid == 2 or proc.ppid == 2:
        return True  # this benchmark's processes, or kernel threads (I/O for everyone)
    if proc.name.startswith("postgres"):
        # A backend ("postgres: 15/main: <user> <database> <client> …") serving another
        # database (a test run's) is foreign; the server's own processes (WAL writer,
        # checkpointer, autovacuum …) work for whoever writes.
        backend = _BACKEND.match(proc.name)
        return backend is None or backend.group(1).startswith("huiyuan_bench")
    return False


def foreign_cpu(before: dict[int, Proc], after: dict[int, Proc]) -> tuple[float, list[str]]:
    """CPU seconds used between the snapshots by processes not working for this benchmark,
    and the names of the biggest of them."""
    root = os.getpid()
    used: list[tuple[float, str]] = []
    for pid, proc in after.items():
        if _is_ours(pid, proc, after, root):
            continue
        start = before.get(pid)
        delta = proc.cpu - (start.cpu if start and start.started == proc.started else 0.0)
        if delta > 0:
            used.append((delta, proc.name[:80]))
    used.sort(reverse=True)
    return sum(d for d, _ in used), [f"{name} ({d:.1f} s)" for d, name in used[:3] if d >= 0.2]


@dataclass
class Watch:
    """Foreign CPU over a stretch of time, as a share of the whole machine."""

    share: float = 0.0
    top: tuple[str, ...] = ()

    @property
    def disturbed(self) -> bool:
        return self.share > 0.05

    def describe(self) -> str:
        who = f": {', '.join(self.top)}" if self.top else ""
        return f"other processes used {self.share:.0%} of the machine's CPU{who}"


class Stopwatch:
    def __init__(self) -> None:
        import time

        self._time = time.monotonic
        self._before = snapshot()
        self._started = self._time()

    def stop(self) -> Watch:
        seconds, top = foreign_cpu(self._before, snapshot())
        wall = max(self._time() - self._started, 1e-9)
        return Watch(seconds / (wall * (os.cpu_count() or 1)), tuple(top))


def cpu_speed() -> float:
    """Loops of a fixed pure-Python workload per second, the best of five (~0.1 s on a 2026
    VM): how fast one core runs Python now, to compare with the baseline's moment."""
    import time

    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        total, seen = 0, {}
        for i in range(60_000):
            total += i * i % 7
            seen[i & 255] = total
        best = min(best, time.perf_counter() - started)
    return 1.0 / best


# A result whose CPU ran this much slower or faster than its baseline's is not comparable.
SPEED_BAND = (0.85, 1.18)


def watched(work: Callable[[], T]) -> tuple[T, Watch]:
    watch = Stopwatch()
    result = work()
    return result, watch.stop()
