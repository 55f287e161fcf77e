"""The BLAS library's thread count: read and set at run time, and chosen by measurement.

`threads(n)` fixes the count for a block of work. `ThreadChooser` (``--threads auto``) times
the steps and keeps the faster of the library's count and one. `CoreShare` tells, from the
steps' CPU and wall time, when other processes keep the training thread from its core.
Float32 products differ in their last bits between thread counts, so a run is repeatable bit
for bit only with a fixed count: the chooser is opt-in. The reasons and the measurements are
in docs/training.md, "Threads and a busy machine".

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

__all__ = ["CoreShare", "OpenBLAS", "ThreadChooser", "openblas", "threads"]


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
    """Keeps the BLAS thread count that makes steps fastest: the library's count or one.

    Call ``record(seconds)`` after every step with the time its arithmetic took. After
    ``first`` steps, then every ``every`` steps, it runs a step or two on the other count and
    keeps that count when at least 10% faster; after a failed try it waits longer, up to
    ``longest`` steps.

    ``record`` returns a line worth telling the user when the count changed, else None.
    ``active`` is False where there is nothing to choose (no OpenBLAS, or one thread).
    ``close()`` restores the library's count and ends the choosing.
    """

    def __init__(self, blas: OpenBLAS | None = None, first: int = 3, every: int = 50,
                 longest: int = 800):
        self.blas = blas if blas is not None else openblas()
        self.start = self.blas.get() if self.blas else 1
        if self.start < 2:
            self.blas = None  # one thread (or unknown): nothing to choose
        self.current, self.other = self.start, 1
        self.every, self.longest = every, longest
        self.wait, self.cooldown = first, 0.0  # steps, and seconds of steps, before a probe
        self.steps, self.seconds = 0, 0.0  # since the last probe
        self.times: deque[float] = deque(maxlen=5)
        self.probe: list[float] | None = None

    @property
    def active(self) -> bool:
        return self.blas is not None

    def record(self, seconds: float) -> str | None:
        if self.blas is None:
            return None
        seconds = max(seconds, 1e-9)  # a clock that did not move is still a time
        if self.probe is None:
            self.times.append(seconds)
            self.steps, self.seconds = self.steps + 1, self.seconds + seconds
            if self.steps >= self.wait and self.seconds >= self.cooldown:
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

    def offer(self, here: float, there: float) -> str | None:
        """The same step timed on the current count (``here``) and on the other (``there``):
        switch at once when the other is at least twice as fast (a first step carries costs of
        its own, so a smaller gain waits for the probes)."""
        if self.blas is None or self.probe is not None or there >= 0.5 * here:
            return None
        self.blas.set(self.other)
        return self._switched(here, [max(there, 1e-9)])

    def _switched(self, base: float, probe: list[float]) -> str:
        """Keep the other count, whose steps took ``probe`` against ``base``; the note."""
        self.current, self.other = self.other, self.current
        self.times = deque(probe, maxlen=5)
        self.steps, self.seconds, self.wait = 0, 0.0, self.every
        return (f"{self.current} BLAS thread{'s' if self.current > 1 else ''} "
                f"{'now' if self.current != self.start else 'again'}: "
                f"{base / min(probe):.1f}x faster steps"
                + (" (other processes keep the cores busy)" if self.current == 1 else ""))

    def close(self) -> None:
        if self.blas is not None:
            self.blas.set(self.start)
            self.blas = None


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
