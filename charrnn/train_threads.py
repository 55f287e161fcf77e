"""The BLAS threads of a training run: the ``threads`` option checked, explained and applied,
and every step timed for the thread chooser and the busy-machine note."""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Iterator
from typing import Any

from . import blas
from .config import MAX_THREADS
from .errors import UsageError

__all__ = ["StepClock", "check_threads", "thread_notes", "with_threads"]

BUSY_SHARE = 0.85  # the training thread got less of its core than this: say --threads may help


class StepClock:
    """Times each step for the BLAS thread chooser and for the busy-machine note."""

    def __init__(self, chooser: blas.ThreadChooser | None, watch_cores: bool) -> None:
        self.chooser = chooser
        self.share = blas.CoreShare() if watch_cores else None
        self.note: str | None = None  # what the chooser said after the latest step

    def start(self) -> None:
        self.wall = time.perf_counter()
        if self.share:
            self.cpu = time.thread_time(), time.process_time()

    def stop(self) -> None:
        seconds = time.perf_counter() - self.wall
        self.note = self.chooser.record(seconds) if self.chooser else None
        if self.share:
            self.share.add(seconds, time.thread_time() - self.cpu[0],
                           time.process_time() - self.cpu[1])

    def busy_note(self) -> str | None:
        """Once: a note when the training thread got much less than its core, window after
        window."""
        got = self.share.busy(BUSY_SHARE) if self.share else None
        if got is None:
            return None
        self.share = None
        return (f"other processes keep the cores busy (training got {got:.0%} of its core): "
                "--threads 1 (or auto) may train much faster")


def thread_notes(fixed: int | None, chooser: blas.ThreadChooser | None) -> list[str]:
    """What a user should know about the --threads they gave."""
    if (chooser is not None and not chooser.active) or (fixed and blas.openblas() is None):
        return ["--threads has no effect here (NumPy's BLAS is not OpenBLAS, or it runs one "
                "thread); OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or MKL_NUM_THREADS, set "
                "before the start, choose the count"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    if fixed and fixed > cores:
        return [f"--threads {fixed} is more than this machine's {cores} core(s): threads "
                "beyond the cores wait for each other, which makes training slower, not faster"]
    return []


def check_threads(threads) -> None:
    """Raise a UsageError unless ``threads`` is None, "auto" or a count from 1 to MAX_THREADS."""
    ok = threads in (None, "auto") or (isinstance(threads, numbers.Integral)
                                       and not isinstance(threads, bool)
                                       and 1 <= threads <= MAX_THREADS)
    if not ok:
        raise UsageError(f"threads must be a number from 1 to {MAX_THREADS} or 'auto', "
                         f"not {threads!r}")


def with_threads(fixed: int | None, chooser: blas.ThreadChooser | None,
                 reports: Iterator[Any]) -> Iterator[Any]:
    """The reports, run with ``fixed`` BLAS threads (or as the chooser sets them); then, at the
    end, on an error or when the caller stops, the count as it was."""
    with blas.threads(fixed):
        try:
            yield from reports
        finally:
            if chooser is not None:
                chooser.close()
