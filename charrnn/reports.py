"""The events of a training run, as ``charrnn.train`` yields them and the live view shows them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Report"]


@dataclass
class Report:
    """One event of a training run, with a snapshot of everything the live view shows."""

    kind: str  # start | step | eval | sample | saved | notice | done
    step: int = 0  # optimizer steps taken in the whole run
    total_steps: int | None = None  # steps the run will stop at, if a step/epoch limit is set
    epoch: float = 0.0  # passes over the training text so far (fractional)
    train_loss: float = math.nan  # smoothed training loss (nats/char)
    val_loss: float | None = None  # latest validation loss
    best_val: float | None = None  # best validation loss so far
    best_step: int | None = None
    lr: float = 0.0  # the rate of the latest step (before any: of the first)
    chars_per_s: float = 0.0  # stepping speed: characters per second of the steps' own time
    overall_chars_per_s: float = 0.0  # characters per wall second in this invocation
    elapsed: float = 0.0  # seconds of training in this invocation
    eta: float | None = None  # seconds left, validations and saves included (None: unknown)
    time_limit: float = 0.0  # max_time in seconds (0: none)
    text: str = ""  # the sample, or the notice
    path: str = ""  # the model file
    info: dict[str, Any] = field(default_factory=dict)  # start/done details
