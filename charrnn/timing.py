"""Where a training run's time goes: training steps, validation, saving and progress samples;
the stepping speed, the overall speed, and the time left.

    overall speed = characters trained / wall time
    stepping speed = characters trained / time in steps (never below the overall speed)
    time left = steps left x mean step time + validations left x (one validation + one save)

Until a validation has been timed, it is guessed at EVAL_COST times the time of training on as
many characters as it scores.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["EVAL_COST", "PHASES", "RunTime"]

PHASES = ("steps", "validation", "saving", "samples")
EVAL_COST = 0.4  # seconds to score a character / seconds to train on one (0.23-0.37 measured)


class RunTime:
    """The clock of one invocation of a run: time per phase, speeds, and the time left.

    ``before``: the seconds per phase of the run's earlier invocations (a resumed run);
    ``head_start``: seconds this invocation spent before the clock started (timing the
    machine), counted in its wall time as "other".
    """

    def __init__(self, chars_per_step: int, before: dict[str, float] | None = None,
                 head_start: float = 0.0) -> None:
        self.chars_per_step, self.head_start = chars_per_step, head_start
        self.before = {k: float((before or {}).get(k, 0.0)) for k in (*PHASES, "other")}
        self.start()

    def start(self) -> None:
        """Start the clock (the run's first event)."""
        self.started = time.perf_counter() - self.head_start
        self.spent = dict.fromkeys(PHASES, 0.0)
        self.latest: dict[str, float] = {}  # the latest duration of each phase
        self.steps = 0  # steps in this invocation
        self.stepping = 0.0  # characters per second of the steps' own time

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count the block's time as ``name``'s (one of PHASES)."""
        began = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - began
            self.spent[name] += took
            self.latest[name] = took
            if name == "steps":
                self._stepped(took)

    def _stepped(self, seconds: float) -> None:
        self.steps += 1
        self.stepping = self.steps * self.chars_per_step / max(self.spent["steps"], 1e-9)

    def elapsed(self) -> float:
        """Wall seconds of this invocation."""
        return time.perf_counter() - self.started

    def overall(self) -> float:
        """Characters trained per wall second in this invocation."""
        elapsed = self.elapsed()
        return self.steps * self.chars_per_step / elapsed if elapsed > 0 else 0.0

    def split(self, whole_run: bool = False) -> dict[str, float]:
        """Seconds per phase, and "other" for the rest of the wall time (the view, the
        bookkeeping); ``whole_run`` adds the earlier invocations'."""
        out = dict(self.spent, other=max(0.0, self.elapsed() - sum(self.spent.values())))
        return {k: v + self.before[k] for k, v in out.items()} if whole_run else out

    def mean_step(self) -> float:
        """Mean seconds of a step's own work in this invocation (0 before the first)."""
        return self.spent["steps"] / self.steps if self.steps else 0.0

    def time_left(self, steps_left: int | None, every: int, time_left: float | None,
                  scored_chars: int) -> float | None:
        """Seconds until the run ends: by its steps (with the validations and saves they
        bring) or by its time limit (with the last validation and save), whichever is sooner.

        ``scored_chars``: the predictions a validation makes, for its guess until one is timed.
        """
        guess = EVAL_COST * scored_chars * self.mean_step() / self.chars_per_step
        closing = self.latest.get("validation", guess) + self.latest.get("saving", 0)
        left = []
        if steps_left is not None and self.steps:
            # the mean step is steadier than the stepping speed
            left.append(steps_left * self.mean_step() + (steps_left // max(every, 1) + 1) * closing)
        if time_left is not None:
            left.append(max(0.0, time_left) + closing)
        return min(left) if left else None
