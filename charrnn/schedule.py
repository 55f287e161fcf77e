"""The learning-rate schedule: the rate of each step, from the run's options and progress."""

from __future__ import annotations

import math

from .config import TrainConfig

__all__ = ["COSINE_FLOOR", "lr_at"]

COSINE_FLOOR = 0.05  # the cosine schedule ends at this fraction of ``lr``


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """The learning rate for a step.

    constant: ``lr * lr_decay ** (step // lr_decay_every)`` (step decay, if set).
    cosine: ``lr * (m + (1 - m) * (1 + cos(pi * progress)) / 2)`` with m = COSINE_FLOOR, where
    progress in [0, 1] is how far the run is towards its step/epoch limit or its ``max_time``,
    whichever is further (no limit: progress stays 0, a constant rate).
    """
    if cfg.lr_schedule == "cosine":
        p = min(1.0, max(0.0, progress))
        return cfg.lr * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * p)))
    if cfg.lr_decay_every <= 0 or cfg.lr_decay == 1.0:
        return cfg.lr
    return cfg.lr * cfg.lr_decay ** (step // cfg.lr_decay_every)
