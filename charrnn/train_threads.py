"""The BLAS threads of a training run (and of a command's loop of work): chosen, checked,
explained and applied, and every unit of work timed for the thread chooser.

By default the run's thread count follows the machine's load (``blas.ThreadChooser``), and
the model does not depend on it: the first time the run does each kind of work (a training
step, a validation), ``ThreadPlan.run`` does it on one thread too and compares the two bit for
bit. Where they differ (a BLAS whose float32 products change with the count), that work keeps
NumPy's count for the rest of the run, and a note says so. ``threads=N`` pins the count;
``"auto"`` follows the load without the check. Work done one character at a time
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

    ``check``: before the chooser's count is trusted with a kind of work, ``run`` compares that
    work on the current count and on the other one (NumPy's or one thread).
    """

    def __init__(self, fixed: int | None = None, chooser: blas.ThreadChooser | None = None, *,
                 check: bool = False, watch_cores: bool = False, notes=()) -> None:
        self.fixed, self.chooser = fixed, chooser
        self.check = check and chooser is not None and chooser.active
        self.library = chooser.blas if self.check else None  # the controls the chooser sets
        self.watch_cores = watch_cores  # say when other processes keep training from its core
        self.notes = list(notes)  # for the start of the run
        self.news: list[str] = []  # found while running, for the next report
        self.agrees: dict[str, bool] = {}  # kind of work -> same bits on both counts

    def run(self, kind: str, work: Callable[[], Any], probe: Callable[[], Any] | None = None):
        """``work()`` on the run's count; the first time for ``kind``, ``probe()`` (default:
        the work itself, which must then give the same result when run again) is compared on
        both counts first."""
        if not self.check or kind in self.agrees:
            with self._count_for(kind):
                return work()
        start, here = self.chooser.start, self.chooser.current
        began = time.perf_counter()
        with blas.threads(1 if here != 1 else start, self.library):
            there = (probe or work)()
        middle = time.perf_counter()
        if probe is None:
            result = work()
            agrees = same_bits(result, there)
        else:
            agrees = same_bits(probe(), there)
        self.agrees[kind] = agrees
        # the same work timed on both counts: the chooser may switch at once
        if agrees and probe is None and (
                note := self.chooser.offer(time.perf_counter() - middle, middle - began)):
            self.news.append(note)
        if not agrees:
            self.news.append(f"the {kind} gives different float32 results on 1 and {start} "
                             f"BLAS threads here: it keeps {start} threads, so that the run "
                             "can be repeated exactly")
            if kind == "training step":  # the count cannot follow the load: watch the cores instead
                self.chooser.close()
                self.check, self.watch_cores = False, True
        if probe is not None or (not agrees and here != start):
            with self._count_for(kind):
                result = work()
        return result

    def will_compare(self, kind: str) -> bool:
        """Whether ``run`` will do ``kind``'s work twice (its first time under the check)."""
        return self.check and kind not in self.agrees

    def _count_for(self, kind: str):
        """Where ``kind`` differs between counts and the chooser goes on: NumPy's count."""
        if self.agrees.get(kind, True) or not self.chooser.active:
            return nullcontext()
        return blas.threads(self.chooser.start, self.library)


def plan_threads(threads: int | str | None) -> ThreadPlan:
    """The plan for the ``threads`` option (None: the default)."""
    if threads == "auto":
        chooser = blas.ThreadChooser()
        return ThreadPlan(chooser=chooser, notes=thread_notes(None, chooser))
    if threads is not None:
        return ThreadPlan(fixed=int(threads), notes=thread_notes(int(threads), None))
    chooser = blas.ThreadChooser()
    if not chooser.active:
        return ThreadPlan(watch_cores=True)
    return ThreadPlan(chooser=chooser, check=True)


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
        if self.share is None and self.plan.watch_cores:  # the chooser has stopped
            self.share = blas.CoreShare()
        self.wall = time.perf_counter()
        if self.share:
            self.cpu = time.thread_time(), time.process_time()

    def stop(self) -> None:
        seconds = time.perf_counter() - self.wall
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
                "--threads 1 (or auto) may train much faster")


def with_threads(plan: ThreadPlan, reports: Iterator[Any]) -> Iterator[Any]:
    """The reports, run with the plan's BLAS threads; then, at the end, on an error or when the
    caller stops, the count as it was."""
    with blas.threads(plan.fixed):
        try:
            yield from reports
        finally:
            if plan.chooser is not None:
                plan.chooser.close()


@contextmanager
def following_load(probe: Callable[[], Any]) -> Iterator[Callable[[float], None]]:
    """For a loop of like units of work (``eval``'s windows): yields ``record(seconds)``, to
    call after each unit, so that BLAS's thread count follows the machine's load; only where
    ``probe()`` (one unit) gives the same bits on one thread and on NumPy's count, so that the
    result never depends on the load. The count is restored at the end."""
    chooser = blas.ThreadChooser()
    plan = ThreadPlan(chooser=chooser, check=True)
    if plan.check:
        plan.run("work", probe)
    try:
        if plan.agrees.get("work"):
            yield chooser.record
        else:
            yield lambda seconds: None
    finally:
        chooser.close()


def one_thread() -> AbstractContextManager[None]:
    """A block on one BLAS thread, for the small products of ``sample`` and ``inspect`` (one
    character at a time, a model's weight matrices): a second thread gains them at most ~1.35x
    on an idle machine and can cost them 2x on a busy one (docs/performance.md), and a fixed
    count keeps the result independent of the load."""
    return blas.threads(1)
