"""The BLAS threads of a training run (and of a command's loop of work): chosen, checked,
explained and applied, and every unit of work timed for the thread chooser.

By default the run's thread count follows the machine's load (``blas.ThreadChooser``: one
thread, or NumPy's count while a core is free and it is faster), and the model does not depend
on it: the first time the run does each kind of work (a training step, a validation) on more
than one thread, ``ThreadPlan.run`` does it on one thread too and compares the two bit for bit.
Where they differ (a BLAS whose float32 products change with the count), that work keeps one
thread for the rest of the run, and a note says so. ``threads=N`` pins the count; ``"auto"``
follows the load without the check. Work done one character at a time
(``sample``, ``inspect --text``) runs on one thread (``one_thread``).
"""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import numpy as np

from . import blas
from .config import MAX_THREADS
from .errors import UsageError

__all__ = ["StepClock", "ThreadPlan", "check_threads", "following_load", "one_thread",
           "plan_threads", "same_bits", "with_threads"]

BUSY_SHARE = 0.85  # the training thread got less of its core than this: say --threads may help


def same_bits(a: Any, b: Any) -> bool:
    """Whether two results (arrays, numbers, and tuples, lists or dicts of them) are identical
    bit for bit."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_bits(a[k], b[k])
                                                                     for k in a)
    if isinstance(a, tuple | list):
        return isinstance(b, tuple | list) and len(a) == len(b) and all(map(same_bits, a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


class ThreadPlan:
    """How a run sets BLAS's threads: a pinned count, a chooser, or NumPy's count as it is.

    One thread is the reference. ``check``: the first time a kind of work runs on more threads,
    ``run`` does it on one thread too and compares the two bit for bit; where they differ, that
    kind keeps one thread for the rest of the run (the chooser's ``timed`` kind: the whole run).
    """

    def __init__(self, fixed: int | None = None, chooser: blas.ThreadChooser | None = None, *,
                 check: bool = False, timed: str = "training step", watch_cores: bool = False,
                 notes=()) -> None:
        self.fixed, self.chooser, self.timed = fixed, chooser, timed
        self.check = check and chooser is not None and chooser.active
        self.library = chooser.library if self.check else None  # the controls the chooser sets
        self.watch_cores = watch_cores  # say when other processes keep training from its core
        self.notes = list(notes)  # for the start of the run
        self.news: list[str] = []  # found while running, for the next report
        self.agrees: dict[str, bool] = {}  # kind of work -> same bits on both counts
        self.extra = 0.0  # seconds of the latest timed work's second run, for the StepClock

    def run(self, kind: str, work: Callable[[], Any], probe: Callable[[], Any] | None = None):
        """``work()`` on the run's count; the first time for ``kind`` on more than one thread,
        ``probe()`` (default: the work itself, which must then give the same result when run
        again) is compared with one thread's first."""
        if self.will_compare(kind):
            if probe is None:  # the work's second run is not the step's time
                result, self.extra = self.verify(kind, work)
                return result
            self.verify(kind, probe)
        with self._count_for(kind):
            return work()

    def verify(self, kind: str, probe: Callable[[], Any]) -> tuple[Any, float]:
        """``probe()`` on the current count and on one thread, compared; one thread's result,
        and the seconds it took."""
        on_count = probe()
        began = time.perf_counter()
        with blas.threads(1, self.library):
            alone = probe()
        seconds = time.perf_counter() - began
        agrees = self.agrees[kind] = same_bits(on_count, alone)
        if not agrees:
            threads = self.library.get()
            self.news.append(f"the {kind} gives different float32 results on 1 and {threads} "
                             "BLAS threads here: it runs on 1 thread, so that the run can be "
                             f"repeated exactly (--threads {threads} pins the faster count)")
            if kind == self.timed:
                self.chooser.hold(1)
        return alone, seconds

    def will_compare(self, kind: str) -> bool:
        """Whether ``run`` will do ``kind``'s work twice (its first time on more threads)."""
        return (self.check and kind not in self.agrees and self.chooser.active
                and self.library.get() != 1)

    def _count_for(self, kind: str):
        """Where ``kind`` differs between counts: one thread."""
        return nullcontext() if self.agrees.get(kind, True) else blas.threads(1, self.library)


def plan_threads(threads: int | str | None) -> ThreadPlan:
    """The plan for the ``threads`` option (None: the default)."""
    if threads == "auto":
        chooser = blas.ThreadChooser()
        return ThreadPlan(chooser=chooser, notes=thread_notes(None, chooser))
    if threads is not None:  # a pinned count of 2 or more may suffer from the load: watch it
        return ThreadPlan(fixed=int(threads), watch_cores=int(threads) > 1,
                          notes=thread_notes(int(threads), None))
    chooser = blas.ThreadChooser()
    return ThreadPlan(chooser=chooser, check=True) if chooser.active else ThreadPlan()


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


class StepClock:
    """Times each step for the BLAS thread chooser and for the busy-machine note."""

    def __init__(self, plan: ThreadPlan) -> None:
        self.plan = plan
        self.share: blas.CoreShare | None = None  # made at the first step that watches
        self.note: str | None = None  # what the chooser said after the latest step

    def start(self) -> None:
        if self.share is None and self.plan.watch_cores:
            self.share = blas.CoreShare()
        self.wall = time.perf_counter()
        if self.share:
            self.cpu = time.thread_time(), time.process_time()

    def stop(self) -> None:
        seconds = time.perf_counter() - self.wall - self.plan.extra  # less a comparison's run
        self.plan.extra = 0.0
        chooser = self.plan.chooser
        self.note = chooser.record(seconds) if chooser and chooser.active else None
        if self.share:
            self.share.add(seconds, time.thread_time() - self.cpu[0],
                           time.process_time() - self.cpu[1])

    def busy_note(self) -> str | None:
        """Once: a note when the training thread got much less than its core, window after
        window."""
        got = self.share.busy(BUSY_SHARE) if self.share else None
        if got is None:
            return None
        self.share, self.plan.watch_cores = None, False  # said once
        return (f"other processes keep the cores busy (training got {got:.0%} of its core): "
                "without --threads, training follows the load and may be much faster")


def with_threads(plan: ThreadPlan, reports: Iterator[Any]) -> Iterator[Any]:
    """The reports, run with the plan's BLAS threads; then, at the end, on an error or when the
    caller stops, the count as it was."""
    with blas.threads(plan.fixed):
        try:
            if plan.chooser is not None:
                plan.chooser.begin()
            yield from reports
        finally:
            if plan.chooser is not None:
                plan.chooser.close()


@contextmanager
def following_load(probe: Callable[[], Any]) -> Iterator[Callable[[float], None]]:
    """For a loop of like units of work (``eval``'s windows): yields ``record(seconds)``, to
    call after each unit, so that BLAS's thread count follows the machine's load. Before the
    first unit on more than one thread, ``probe()`` (one unit) is compared on that count and
    on one; where they differ, the loop keeps one thread, so that the result never depends on
    the load. The count is restored at the end."""
    chooser = blas.ThreadChooser()
    plan = ThreadPlan(chooser=chooser, check=True, timed="evaluation")

    def record(seconds: float) -> None:
        chooser.record(seconds)
        if plan.will_compare("evaluation"):
            plan.verify("evaluation", probe)

    chooser.begin()
    try:
        yield record
    finally:
        chooser.close()


def one_thread() -> AbstractContextManager[None]:
    """A block on one BLAS thread, for the small products of ``sample`` and ``inspect`` (one
    character at a time, a model's weight matrices): a second thread gains them at most ~1.35x
    on an idle machine and can cost them 2x on a busy one (docs/performance.md), and a fixed
    count keeps the result independent of the load."""
    return blas.threads(1)
