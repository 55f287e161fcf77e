"""How fast this machine trains a model of a given shape: measured at the start of a timed run.

A timed run's budget is its time x its model's speed, and machines differ by more than 2x, so
the rule (``charrnn.choice``) plans a ``max_time`` run with speeds measured here. ``SpeedProbe``
times a few training steps (forward, BPTT, clip, Adam update) of a throwaway model of the
candidate's shape, on random characters of the run's vocabulary, batch and window, at each
thread count the run may step with (the first shape; the others at its fastest count), and
keeps the fastest:

    speed = batch x seq_len / median seconds of the timed steps      (characters per second)

after one untimed step (the first pays for allocations), up to TIMED_STEPS while a count takes
at most half of the allowance left. All of it costs at most SHARE of the run's time, but for
the first shape, which gets one timed step at every count whatever the cost; a later shape
whose timed step would overrun the allowance is not timed, and is estimated from the shapes
that were (``estimate``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .blas import threads
from .config import ModelConfig, TrainConfig, shape_name
from .model import CharRNN
from .optim import clipped_gradients, make_optimizer

__all__ = ["COST_POWER", "SHARE", "SpeedProbe", "estimate"]

Shape = tuple[str, int, int]  # cell, width, layers

SHARE = 0.02  # of a timed run's time, at most, spent measuring
# timed steps per shape and thread count at most, after one untimed: with two, the GRU
# 2x256's speed at two threads came out anywhere from 17k to 23k characters a second (AMD EPYC
# Zen 3)
TIMED_STEPS = 4


# A step costs about H^2 (2L - 1) multiply-adds per character (one H x 3H product in the first
# layer, two in each other, for a GRU), and large products run faster per multiply-add: the
# measured step times go as that cost to this power (2x384 1.8x, 2x512 2.9x the 2x256's at one
# thread, AMD EPYC Zen 3).
COST_POWER = 0.8


def estimate(shape: Shape, measured: dict[Shape, float]) -> float:
    """The speed of ``shape`` from the measured shape nearest in cost (of the same cell where
    one was measured): speed x (its cost / the shape's cost) ^ COST_POWER."""
    def cost(s: Shape) -> float:
        return s[1] * s[1] * (2 * s[2] - 1)

    same_cell = [s for s in measured if s[0] == shape[0]] or list(measured)
    near = min(same_cell, key=lambda s: abs(cost(s) - cost(shape)))
    return measured[near] * (cost(near) / cost(shape)) ** COST_POWER


class SpeedProbe:
    """Measures, on first asking, the training speed of each shape (cell, width, layers).

    ``counts()``: the BLAS thread counts the run may step with, each asked for after the one
    before was timed (``ThreadPlan.counts_to_time``; None: the count as it is). ``seconds``:
    the allowance for all measuring. ``speed(...)`` estimates a shape it had no time left to
    measure; ``record()`` is what was measured, for the model file's ``chosen``.
    """

    def __init__(self, vocab_size: int, batch_size: int, seq_len: int,
                 counts: Callable[[], Iterable[int | None]], seconds: float) -> None:
        self.vocab_size, self.batch_size, self.seq_len = vocab_size, batch_size, seq_len
        self.counts, self.allowance = counts, seconds
        self.spent = 0.0
        self.measured: dict[Shape, float] = {}  # characters per second
        self.estimated: dict[Shape, float] = {}
        self.count: int | None = None  # the thread count the first shape was fastest at
        self.rng = np.random.default_rng(0)  # the run's own generator is left alone

    def speed(self, cell: str, width: int, layers: int) -> tuple[float, bool]:
        """Characters per second of a training step of this shape, the fastest thread count's,
        and whether it was measured: a shape asked for once the allowance ran out is estimated
        from the nearest measured one (``estimate``)."""
        shape = (cell, width, layers)
        if shape not in self.measured and shape not in self.estimated:
            # the first shape is timed at every count; the others at the fastest of those
            must = not self.measured
            found: dict[int | None, float] = {}
            for count in self.counts() if must else [self.count]:
                if (speed := self._measure(cell, width, layers, count, must)) is not None:
                    found[count] = speed
            if found:
                if must:
                    self.count = max(found, key=found.get)
                self.measured[shape] = max(found.values())
            else:
                self.estimated[shape] = estimate(shape, self.measured)
        if shape in self.measured:
            return self.measured[shape], True
        return self.estimated[shape], False

    def record(self) -> dict[str, Any]:
        """{"chars_per_s": {shape: speed}, "seconds": the time spent measuring}: what was
        measured."""
        return {"chars_per_s": {shape_name(*k): round(v) for k, v in self.measured.items()},
                "seconds": round(self.spent, 2)}

    def _measure(self, cell: str, width: int, layers: int, count: int | None, must: bool
                 ) -> float | None:
        if self.spent >= self.allowance and not must:
            return None
        began = time.perf_counter()
        try:
            return self._steps(cell, width, layers, count, began, must)
        finally:
            self.spent += time.perf_counter() - began

    def _steps(self, cell: str, width: int, layers: int, count: int | None, began: float,
               must: bool) -> float | None:
        # with dropout, as the chosen models train: its masks cost a little time too
        config = ModelConfig(cell=cell, hidden_size=width, num_layers=layers, dropout=0.1,
                             vocab_size=self.vocab_size)
        shape = (self.batch_size, self.seq_len)
        x, y = (self.rng.integers(0, self.vocab_size, shape) for _ in range(2))
        times: list[float] = []
        # half of what is left, so that the next thread count or shape has its turn
        share = max(0.0, self.allowance - self.spent) / 2
        with threads(count):  # the initialisation's small products too: two threads wait
            model = CharRNN(config, seed=self.rng)  # on a busy core far longer than one
            optimizer = make_optimizer("adam", model.params, TrainConfig().weight_decay)
            for _ in range(1 + TIMED_STEPS):
                so_far = time.perf_counter() - began
                if len(times) >= 2 and so_far + times[-1] > share:
                    break  # one timed step at least
                # the untimed step's time says whether a timed one fits in the allowance
                if len(times) == 1 and not must and \
                        self.spent + so_far + times[0] > self.allowance:
                    return None
                start = time.perf_counter()
                _, grads, _, _ = clipped_gradients(model, x, y, None, self.rng,
                                                   TrainConfig().grad_clip)
                optimizer.step(model.params, grads, 1e-3)
                times.append(time.perf_counter() - start)
        return self.batch_size * self.seq_len / statistics.median(times[1:])
