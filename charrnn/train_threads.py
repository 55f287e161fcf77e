"""The BLAS threads of a training run: chosen, checked, explained and applied, and every step
timed for the thread chooser.

By default the run's thread count follows the machine's load (``blas.ThreadChooser``) where
this BLAS computes the run's own products bit for bit alike on one thread and on all of them
(``threads_agree``), so that the model never depends on the load. Where it does not, the count
stays NumPy's, and a note says so. ``threads=N`` pins the count; ``"auto"`` chooses even where
the results then differ in their last bits.
"""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import blas, sampling
from .config import MAX_THREADS
from .errors import UsageError
from .evaluation import window_shapes

__all__ = ["StepClock", "ThreadPlan", "check_threads", "plan_threads", "threads_agree",
           "with_threads"]

BUSY_SHARE = 0.85  # the training thread got less of its core than this: say --threads may help


@dataclass
class ThreadPlan:
    """How a run sets BLAS's threads: a pinned count, a chooser, or NumPy's count as it is."""

    fixed: int | None = None  # the count for the whole run (None: not pinned)
    chooser: blas.ThreadChooser | None = None  # follows the load, step by step
    watch_cores: bool = False  # say when other processes keep the training from its core
    notes: list[str] = field(default_factory=list)  # for the start of the run


def threads_agree(work: Callable[[], Sequence[np.ndarray]]) -> bool | None:
    """Whether ``work`` gives bit-identical arrays on one BLAS thread and on BLAS's count; None
    where there is no count to change (not OpenBLAS, or one thread)."""
    lib = blas.openblas()
    count = lib.get() if lib else 1
    if count < 2:
        return None
    with blas.threads(1):
        one = work()
    many = work()
    return len(one) == len(many) and all(a.shape == b.shape and np.array_equal(a, b)
                                         for a, b in zip(one, many, strict=True))


def run_products(model, batch_size: int, seq_len: int, val_chars: int
                 ) -> Callable[[], list[np.ndarray]]:
    """Work whose products have the run's shapes: a training step, the validation's windows
    and a sampling step (OpenBLAS splits a product by its shape alone, not by its values)."""
    def work() -> list[np.ndarray]:
        rng = np.random.default_rng(0)
        ids = rng.integers(model.config.vocab_size, size=(batch_size, seq_len + 1))
        _, grads, state = model.loss_and_grad(ids[:, :-1], ids[:, 1:],
                                              model.initial_state(batch_size), rng)
        out = [*grads.values(), state]
        for streams, width in sorted(window_shapes(val_chars - 1)):
            ids = rng.integers(model.config.vocab_size, size=(streams, width + 1))
            out += model.losses(ids[:, :-1], ids[:, 1:], model.initial_state(streams))
        out.append(np.array(sampling.Stepper(model).step(ids[:1, 0])))
        return out
    return work


def plan_threads(threads: int | str | None, products: Callable[[], Sequence[np.ndarray]]
                 ) -> ThreadPlan:
    """The plan for ``threads`` (None: the default), ``products`` being the run's own work."""
    if threads == "auto":
        chooser = blas.ThreadChooser()
        return ThreadPlan(chooser=chooser, notes=thread_notes(None, chooser))
    if threads is not None:
        return ThreadPlan(fixed=int(threads), notes=thread_notes(int(threads), None))
    agree = threads_agree(products)
    if agree:
        return ThreadPlan(chooser=blas.ThreadChooser())
    notes = [] if agree is None else [
        f"this BLAS's float32 products differ in their last bits between 1 and "
        f"{blas.openblas().get()} threads: the run keeps {blas.openblas().get()}, so that it "
        "can be repeated exactly (--threads 1 or auto to choose)"]
    return ThreadPlan(watch_cores=True, notes=notes)


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
        self.chooser = plan.chooser
        self.share = blas.CoreShare() if plan.watch_cores else None
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


def with_threads(plan: ThreadPlan, reports: Iterator[Any]) -> Iterator[Any]:
    """The reports, run with the plan's BLAS threads; then, at the end, on an error or when the
    caller stops, the count as it was."""
    with blas.threads(plan.fixed):
        try:
            yield from reports
        finally:
            if plan.chooser is not None:
                plan.chooser.close()
