"""BLAS threads: the count read and set at run time, and chosen by the machine's load.

By default a run's count follows the load (``ThreadChooser``); ``threads=N`` pins it. The same
command with the same pinned count gives the same model bit for bit, resumed or not; the default
gives the same model to float32 rounding, since BLAS's float32 sums may change with the count.
The count is set through OpenBLAS's ``openblas_set_num_threads``, found with ctypes among the
libraries the process has loaded (/proc/self/maps: Linux only; elsewhere ``openblas()`` is None
and nothing changes). Measurements: docs/training.md, "Threads and a busy machine".
"""

from __future__ import annotations

import ctypes
import numbers
import os
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from .config import MAX_THREADS
from .errors import UsageError, option

__all__ = ["IdleCores", "OpenBLAS", "ThreadChooser", "ThreadPlan", "check_threads",
           "one_thread", "openblas", "plan_threads", "threads"]

ROOM = 0.5  # idle cores a try of more threads needs


class OpenBLAS(NamedTuple):
    """``get()`` / ``set(n)`` of the loaded OpenBLAS's thread count."""

    get: Callable[[], int]
    set: Callable[[int], None]


def _find() -> OpenBLAS | None:
    try:
        with open("/proc/self/maps", "rb") as maps:  # address perms offset dev inode path
            paths = {os.fsdecode(f[5]) for line in maps
                     if len(f := line.rstrip(b"\n").split(maxsplit=5)) == 6}
    except OSError:
        return None
    found = [p for p in paths if "openblas" in Path(p).name.lower() and Path(p).is_file()]
    for path in sorted(found, key=lambda p: ("numpy" not in p, p)):  # NumPy's own copy first
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same library, no second copy
        except OSError:
            continue
        for name in (p + "_{}_num_threads" + s for p in ("scipy_openblas", "openblas")
                     for s in ("64_", "", "_64")):
            get, set_ = (getattr(lib, name.format(verb), None) for verb in ("get", "set"))
            if get is not None and set_ is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                return OpenBLAS(get, set_)
    return None


_FOUND: list[OpenBLAS | None] = []


def openblas() -> OpenBLAS | None:
    """The loaded OpenBLAS's thread controls, or None where there are none (looked up once)."""
    if not _FOUND:
        _FOUND.append(_find())
    return _FOUND[0]


@contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` BLAS threads (None: leave the count alone), then restore it."""
    blas = openblas() if n is not None else None
    before = blas.get() if blas else None
    if blas:
        blas.set(n)
    try:
        yield
    finally:
        if blas:
            blas.set(before)


def one_thread():
    """A block on one BLAS thread, for the small products of ``sample`` and ``inspect`` (one
    character at a time, a model's weight matrices): a second thread gains them little on an
    idle machine and can cost them 2x on a busy one (docs/performance.md)."""
    return threads(1)


class ThreadChooser:
    """Keeps the BLAS thread count that makes steps fastest: one thread or the library's count.

    Work starts on one thread (``begin()``); call ``record(seconds)`` after every step. After
    ``first`` steps, then every ``every``, it tries the other count for a step or two and keeps
    it when 10% faster; after a failed try it waits twice as long (up to ``longest`` steps, and
    20 times the try's time). A try of more threads waits for ROOM idle cores (``free_cores()``,
    None where unknown): threads that wait for busy cores can make a step 10x slower. ``record``
    returns a line for the user when the count changed (not at the idle machine's first move to
    more threads). ``close()`` restores the library's count and ends the choosing.
    """

    def __init__(self, blas: OpenBLAS | None = None, first: int = 3, every: int = 50,
                 longest: int = 800, free_cores: Callable[[], float | None] | None = None):
        self.blas = blas if blas is not None else openblas()
        self.start = self.blas.get() if self.blas else 1  # restored by close()
        if self.start < 2:
            self.blas = None  # one thread (or unknown): nothing to choose
        self.current, self.other = 1, self.start
        self.free_cores = free_cores or IdleCores().free
        self.every, self.longest = every, longest
        self.wait, self.cooldown = first, 0.0  # steps, and seconds of steps, before a try
        self.steps, self.seconds = 0, 0.0  # since the last try
        self.times: deque[float] = deque(maxlen=5)
        self.trial: list[float] | None = None  # the try's step times, while one runs
        self.moves = 0  # changes of count kept

    @property
    def active(self) -> bool:
        return self.blas is not None

    def begin(self) -> None:
        """Set the starting count (one thread) and start the first look's interval."""
        if self.blas is not None:
            self.blas.set(self.current)
            self.free_cores()

    def record(self, seconds: float) -> str | None:
        if self.blas is None:
            return None
        seconds = max(seconds, 1e-9)  # a clock that did not move is still a time
        if self.trial is None:
            self.times.append(seconds)
            self.steps, self.seconds = self.steps + 1, self.seconds + seconds
            if self.steps >= self.wait and self.seconds >= self.cooldown:
                free = self.free_cores()  # read at every look: each covers one interval
                if self.other > self.current and free is not None and free < ROOM:
                    self.steps, self.wait = 0, self.every  # look again soon
                else:
                    self.trial = []
                    self.blas.set(self.other)
            return None
        self.trial.append(seconds)
        base = statistics.median(self.times)
        if len(self.trial) == 1 and seconds <= 2 * base:
            return None  # a second step: the first may carry the switch's own cost
        trial, self.trial = self.trial, None
        # a stalled try (the process stopped, the machine swapping) must not stop the choosing
        self.cooldown = min(20 * sum(trial), 10 * self.longest * base)
        self.steps, self.seconds = 0, 0.0
        if min(trial) >= 0.9 * base:
            self.blas.set(self.current)
            self.wait = min(2 * max(self.wait, self.every // 2), self.longest)
            return None
        self.current, self.other = self.other, self.current
        self.times, self.wait, self.moves = deque(trial, maxlen=5), self.every, self.moves + 1
        if self.moves == 1 and self.current > 1:
            return None  # the idle machine's start: nothing to tell
        return (f"{self.current} BLAS thread{'s' if self.current > 1 else ''} "
                f"{'again' if self.current > 1 else 'now'}: {base / min(trial):.1f}x faster "
                "steps" + (" (other processes keep the cores busy)" if self.current == 1 else ""))

    def close(self) -> None:
        if self.blas is not None:
            self.blas.set(self.start)
            self.blas = None


class IdleCores:
    """The cores other processes leave idle, from Linux's /proc/stat.

    ``free()``: the sum, over the CPUs this process may run on, of the share of its time each
    stood idle since the previous call (since construction, the first time); None where
    /proc/stat cannot be read or no clock tick passed.
    """

    def __init__(self, path: str = "/proc/stat") -> None:
        self.path = path
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        self.cpus = None if cpus is None else {f"cpu{n}" for n in cpus}
        self.last = self._read()

    def _read(self) -> dict[str, tuple[int, int]]:
        """CPU name -> (idle ticks, all ticks)."""
        try:
            with open(self.path) as stat:
                lines = [line.split() for line in stat]
        except OSError:
            return {}
        # cpuN user nice system idle iowait irq softirq steal (guest time is in user's)
        return {name: (int(f[3]) + int(f[4]), sum(map(int, f[:8]))) for name, *f in lines
                if name.startswith("cpu") and name != "cpu"
                and (self.cpus is None or name in self.cpus)}

    def free(self) -> float | None:
        now, before = self._read(), self.last
        self.last = now
        shares = [(now[c][0] - before[c][0]) / (now[c][1] - before[c][1])
                  for c in now if c in before and now[c][1] > before[c][1]]
        return sum(shares) if shares else None


class ThreadPlan:
    """How a run sets BLAS's threads: ``fixed`` (pinned), a ``chooser`` that follows the load,
    or neither (NumPy's count as it is); ``notes`` for the start of the run.

    ``running()`` holds the plan's count for a block, ``apply(reports)`` for the reports of a
    run; ``timed()`` wraps each step (``record(seconds)``: each unit of work) for the chooser;
    ``take_news()`` gives what it said since the last call; ``counts_to_time()`` the counts
    to time a step at before the run (``charrnn.speed``).
    """

    def __init__(self, fixed: int | None = None, chooser: ThreadChooser | None = None,
                 notes=()) -> None:
        self.fixed, self.chooser, self.notes = fixed, chooser, list(notes)
        self.news: list[str] = []

    @contextmanager
    def running(self) -> Iterator[ThreadPlan]:
        """The plan's count during the block (which gets the plan); after it, the count as it
        was."""
        with threads(self.fixed):
            try:
                if self.chooser is not None:
                    self.chooser.begin()
                yield self
            finally:
                if self.chooser is not None:
                    self.chooser.close()

    def apply(self, reports: Iterator[Any]) -> Iterator[Any]:
        """The reports, run with the plan's count (restored at the end, on an error or when the
        caller stops)."""
        with self.running():
            yield from reports

    @contextmanager
    def timed(self) -> Iterator[None]:
        """Time the block (one step) for the chooser."""
        began = time.perf_counter()
        yield
        self.record(time.perf_counter() - began)

    def record(self, seconds: float) -> None:
        """Count one unit of work's seconds."""
        if self.chooser is not None and (note := self.chooser.record(seconds)):
            self.news.append(note)

    def counts_to_time(self) -> Iterator[int | None]:
        """The thread counts a run's steps may take, for timing steps before the run: the pinned
        count; following the load, one thread, then the library's count if ROOM cores stood
        idle while the one thread ran (the chooser's own condition for a try); else None (the
        count as it is)."""
        if self.fixed is not None or self.chooser is None:
            yield self.fixed
            return
        self.chooser.free_cores()  # the idle time from here on
        yield 1
        idle = self.chooser.free_cores()
        if idle is None or idle >= ROOM:
            yield self.chooser.start

    def take_news(self) -> list[str]:
        news, self.news = self.news, []
        return news


def plan_threads(count: int | str | None) -> ThreadPlan:
    """The plan for the ``threads`` option: None or "auto" follow the load, a number pins it."""
    if count is not None and count != "auto":
        return ThreadPlan(fixed=int(count), notes=_notes(int(count)))
    chooser = ThreadChooser()
    if chooser.active:
        return ThreadPlan(chooser=chooser)
    return ThreadPlan(notes=_notes(count) if count == "auto" else ())


def _notes(count: int | str) -> list[str]:
    """What a user should know about the thread count they gave."""
    if openblas() is None or count == "auto":  # auto with one thread: nothing to choose
        return [f"{option('threads')} has no effect here (NumPy's BLAS is not OpenBLAS, or it "
                "runs one thread); OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or MKL_NUM_THREADS, "
                "set before the start, choose the count"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    if count > cores:
        return [f"{option('threads', count)} is more than this machine's {cores} core(s): "
                "threads beyond the cores wait for each other, which makes training slower"]
    return []


def check_threads(count) -> None:
    """Raise a UsageError unless ``count`` is None, "auto" or a number from 1 to MAX_THREADS."""
    if not (count in (None, "auto") or (isinstance(count, numbers.Integral)
                                        and not isinstance(count, bool)
                                        and 1 <= count <= MAX_THREADS)):
        raise UsageError(f"{option('threads')} must be a number from 1 to {MAX_THREADS} or "
                         f"'auto', not {count!r}")
