"""The BLAS library's thread count: read and set at run time, and chosen by measurement.

NumPy's matrix products run in its BLAS library (OpenBLAS in NumPy's own wheels), which splits
each product over the machine's cores. A training step is a few thousand small products, and
each one waits until every thread has done its share. On an idle machine that pays (an LSTM
2x256 step ~1.35x faster with two threads than one, on the 2-core development machine); when
other processes keep the cores busy, each product waits for a thread the system has put aside,
and one thread is faster: 2x with one core busy, 45-180x with both (LSTM 2x256 / 1x64).
`ThreadChooser` times the steps, tries the other choice now and then, and keeps the faster.

The thread count is set through OpenBLAS's ``openblas_set_num_threads`` (any symbol prefix and
suffix NumPy's builds use), found with ctypes among the libraries the process has loaded (NumPy's
among them). Without
OpenBLAS (MKL, Apple Accelerate, a platform without /proc) nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import statistics
from collections import deque
from collections.abc import Callable
from pathlib import Path

__all__ = ["OpenBLAS", "ThreadChooser", "openblas"]

# set by the user, these fix the thread count: a chooser then leaves it alone
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


class OpenBLAS:
    """``get()`` / ``set(n)`` of the loaded OpenBLAS's thread count."""

    def __init__(self, get: Callable[[], int], set: Callable[[int], None]):
        self.get, self.set = get, set


def _loaded_libraries() -> list[str]:
    """Paths of the shared libraries in this process whose name says OpenBLAS (Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if Path(p).is_file())


def _find() -> OpenBLAS | None:
    for path in _loaded_libraries():
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same library, no second copy
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
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


class ThreadChooser:
    """Keeps the BLAS thread count that makes steps fastest, as conditions change.

    Call ``record(seconds)`` after every step, with the time the step's arithmetic took. The
    chooser starts with the library's count ``n``. After ``first`` steps, and from then on
    every ``every`` steps, it runs steps on the other choice (``n`` or 1) and compares the
    faster of two against the median of the last five at the current one. The other choice is
    kept when at least 10% faster. Otherwise the chooser goes back and waits twice as many
    steps before trying again (at most ``longest``), and at least 20 times as long as the
    probe took: a probe step over twice as slow ends the probe at once, but on a busy machine
    that one step on two threads can cost a hundred steps on one.
    ``close()`` restores the count the library had.

    ``record`` returns a line worth telling the user when the choice changed, else None.
    """

    def __init__(self, blas: OpenBLAS | None = None, first: int = 3, every: int = 50,
                 longest: int = 800):
        blas = blas if blas is not None else openblas()
        fixed = any(os.environ.get(v) for v in THREAD_VARIABLES)
        self.blas = None if blas is None or fixed else blas
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
        self.steps, self.seconds, self.cooldown = 0, 0.0, 20 * sum(probe)
        if min(probe) >= 0.9 * base:
            self.blas.set(self.current)
            self.wait = min(2 * max(self.wait, self.every // 2), self.longest)
            return None
        self.current, self.other = self.other, self.current
        self.times = deque(probe, maxlen=5)
        self.wait = self.every
        return (f"{self.current} BLAS thread{'s' if self.current > 1 else ''} "
                f"{'now' if self.current != self.start else 'again'}: "
                f"{base / min(probe):.1f}x faster steps"
                + (" (other processes keep the cores busy)" if self.current == 1 else ""))

    def close(self) -> None:
        if self.blas is not None:
            self.blas.set(self.start)
