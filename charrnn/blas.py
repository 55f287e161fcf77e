"""The BLAS library's thread count: read and set at run time, and chosen by measurement.

`threads(n)` fixes the count for a block of work. `ThreadChooser` times the steps and keeps
the faster of one thread and the library's count; it starts on one thread and tries more only
while `IdleCores` shows a core that other processes leave idle. `CoreShare` tells, from the
steps' CPU and wall time, when other processes keep the training thread from its core.
Whether a run's results may depend on the count is checked in `train_threads`; the
measurements are in docs/training.md, "Threads and a busy machine".

The count is set through OpenBLAS's ``openblas_set_num_threads`` under any symbol prefix and
suffix NumPy's builds use. It is found with ctypes among the libraries the process has loaded,
through /proc/self/maps, so it works on Linux only. Elsewhere `openblas()` is None and nothing
is changed.
"""

from __future__ import annotations

import ctypes
import os
import statistics
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["CoreShare", "IdleCores", "OpenBLAS", "ThreadChooser", "openblas", "threads"]

ROOM = 0.5  # idle cores a try of more threads needs


class OpenBLAS:
    """``get()`` / ``set(n)`` of the loaded OpenBLAS's thread count."""

    def __init__(self, get: Callable[[], int], set: Callable[[int], None]):
        self.get, self.set = get, set


def _loaded_libraries() -> list[str]:
    """Paths of the loaded shared libraries whose file name says OpenBLAS, NumPy's first."""
    try:
        with open("/proc/self/maps", "rb") as maps:
            # address perms offset dev inode path (which may hold spaces)
            fields = [line.rstrip(b"\n").split(maxsplit=5) for line in maps]
    except OSError:
        return []
    paths = {os.fsdecode(f[5]) for f in fields if len(f) == 6}
    found = sorted(p for p in paths if "openblas" in Path(p).name.lower() and Path(p).is_file())
    return sorted(found, key=lambda p: "numpy" not in p)  # NumPy's own copy first


def _find() -> OpenBLAS | None:
    for path in _loaded_libraries():
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same library, no second copy
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", "", "_64"):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
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
def threads(n: int | None, library: OpenBLAS | None = None) -> Iterator[None]:
    """Run a block with ``n`` BLAS threads (None: leave the count alone), then restore it;
    ``library``: the controls to use (default: the loaded OpenBLAS's)."""
    blas = (library or openblas()) if n is not None else None
    before = blas.get() if blas else None
    if blas:
        blas.set(n)
    try:
        yield
    finally:
        if blas:
            blas.set(before)


class ThreadChooser:
    """Keeps the BLAS thread count that makes steps fastest: one thread or the library's count.

    Work starts on one thread (``begin()``). Call ``record(seconds)`` after every step with the
    time its arithmetic took. After ``first`` steps, then every ``every`` steps, it runs a step
    or two on the other count and keeps that count when at least 10% faster; after a failed try
    it waits longer, up to ``longest`` steps. A try of more threads waits for room: at least
    ROOM of a core that other processes left idle since the last look (``free_cores()``, None
    where unknown), because a step whose threads wait for busy cores can take 10x longer.

    ``record`` returns a line worth telling the user when the count changed (but not at the
    first move to the library's count, the idle machine's usual start), else None.
    ``active`` is False where there is nothing (more) to choose: no OpenBLAS, one thread, or
    after ``hold(n)``, which keeps ``n`` threads. ``close()`` restores the library's count.
    """

    def __init__(self, blas: OpenBLAS | None = None, first: int = 3, every: int = 50,
                 longest: int = 800, free_cores: Callable[[], float | None] | None = None):
        self.library = blas if blas is not None else openblas()
        self.start = self.library.get() if self.library else 1  # restored by close()
        if self.start < 2:
            self.library = None  # one thread (or unknown): nothing to choose
        self.blas = self.library  # None once the choosing has ended
        self.current, self.other = 1, self.start
        self.free_cores = free_cores or IdleCores().free
        self.every, self.longest = every, longest
        self.wait, self.cooldown = first, 0.0  # steps, and seconds of steps, before a probe
        self.steps, self.seconds = 0, 0.0  # since the last probe
        self.times: deque[float] = deque(maxlen=5)
        self.probe: list[float] | None = None
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
        if self.probe is None:
            self.times.append(seconds)
            self.steps, self.seconds = self.steps + 1, self.seconds + seconds
            if self.steps >= self.wait and self.seconds >= self.cooldown:
                free = self.free_cores()  # read at every look: each covers one interval
                if self.other > self.current and free is not None and free < ROOM:
                    self.steps, self.wait = 0, self.every  # look again soon
                else:
                    self.probe = []
                    self.blas.set(self.other)
            return None
        self.probe.append(seconds)
        base = statistics.median(self.times)
        if len(self.probe) == 1 and seconds <= 2 * base:
            return None  # a second probe step: the first may carry the switch's own cost
        probe, self.probe = self.probe, None
        # a stalled probe (the process stopped, the machine swapping) must not stop the choosing
        self.cooldown = min(20 * sum(probe), 10 * self.longest * base)
        self.steps, self.seconds = 0, 0.0
        if min(probe) >= 0.9 * base:
            self.blas.set(self.current)
            self.wait = min(2 * max(self.wait, self.every // 2), self.longest)
            return None
        return self._switched(base, probe)

    def _switched(self, base: float, probe: list[float]) -> str | None:
        """Keep the other count, whose steps took ``probe`` against ``base``; the note."""
        self.current, self.other = self.other, self.current
        self.times = deque(probe, maxlen=5)
        self.steps, self.seconds, self.wait = 0, 0.0, self.every
        self.moves += 1
        if self.moves == 1 and self.current > 1:
            return None  # the idle machine's start: nothing to tell
        return (f"{self.current} BLAS thread{'s' if self.current > 1 else ''} "
                f"{'again' if self.current > 1 else 'now'}: {base / min(probe):.1f}x faster "
                "steps" + (" (other processes keep the cores busy)" if self.current == 1 else ""))

    def hold(self, n: int) -> None:
        """``n`` threads from now on, and no more choosing (until ``close()``)."""
        if self.blas is not None:
            self.blas.set(n)
            self.current, self.blas, self.probe = n, None, None

    def close(self) -> None:
        if self.library is not None:
            self.library.set(self.start)
            self.library = self.blas = None


class IdleCores:
    """The cores other processes leave idle, from Linux's /proc/stat.

    ``free()``: the sum, over the CPUs this process may run on, of the share of its time each
    stood idle since the previous call (since construction, the first time); None where
    /proc/stat cannot be read or the interval was too short to measure (under a clock tick).
    The process's own stepping thread keeps one of them busy.
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
                lines = stat.read().splitlines()
        except OSError:
            return {}
        ticks = {}
        for line in lines:
            name, *fields = line.split()
            ours = self.cpus is None or name in self.cpus
            if name.startswith("cpu") and name != "cpu" and ours:
                # user nice system idle iowait irq softirq steal (guest time is in user's)
                counts = [int(f) for f in fields[:8]]
                ticks[name] = (counts[3] + counts[4], sum(counts))
        return ticks

    def free(self) -> float | None:
        now, before = self._read(), self.last
        self.last = now
        shares = [(now[c][0] - before[c][0]) / (now[c][1] - before[c][1])
                  for c in now if c in before and now[c][1] > before[c][1]]
        return sum(shares) if shares else None


class CoreShare:
    """Whether the training thread gets its core during the steps, from CPU and wall time.

    On an idle machine the thread that runs a step never sleeps: it computes, or spins while
    BLAS's other threads finish. A CPU time well below its wall time means other processes
    hold the cores.

    Call ``add(wall, thread_cpu, process_cpu)`` per step. ``share()`` gives the thread's
    CPU / wall once ``window`` seconds of steps are in, and starts a new window. It gives None
    before that, with one BLAS thread, or when BLAS's other threads did no work.
    ``busy(below)`` gives the share once ``runs`` windows in a row were below ``below``.
    """

    def __init__(self, window: float = 1.0, runs: int = 2) -> None:
        blas = openblas()
        self.threads = blas.get() if blas else 1
        self.window, self.runs = window, runs
        self.wall = self.cpu = self.others = 0.0
        self.low: list[float] = []  # the current run of low windows

    def busy(self, below: float) -> float | None:
        got = self.share()
        if got is not None:
            self.low = self.low + [got] if got < below else []
        return max(self.low) if len(self.low) >= self.runs else None

    def add(self, wall: float, thread_cpu: float, process_cpu: float) -> None:
        self.wall += wall
        self.cpu += thread_cpu
        self.others += max(process_cpu - thread_cpu, 0.0)

    def share(self) -> float | None:
        if self.threads < 2 or self.wall < self.window:
            return None
        used = self.others / self.wall > 0.1  # BLAS's other threads took part
        out = self.cpu / self.wall if used else None
        self.wall = self.cpu = self.others = 0.0
        return out
