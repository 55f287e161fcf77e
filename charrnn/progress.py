"""What a training run shows of itself: the smoothed training loss and the report snapshots."""

from __future__ import annotations

from dataclasses import replace

from .reports import Report

__all__ = ["SMOOTHING", "Progress", "SmoothedLoss"]

SMOOTHING = 0.02  # the shown training loss: an exponential average, each step weighs this


class SmoothedLoss:
    """The training loss as shown: an exponential average of the steps' losses, divided by the
    sum of its weights so that the first steps are not pulled towards 0.

        m_t = (1 - a) m_{t-1} + a loss_t,   w_t = (1 - a) w_{t-1} + a,   shown = m_t / w_t
    """

    def __init__(self, weight: float = SMOOTHING) -> None:
        self.weight, self.mean, self.total = weight, 0.0, 0.0

    def add(self, loss: float) -> None:
        self.mean = (1 - self.weight) * self.mean + self.weight * loss
        self.total = (1 - self.weight) * self.total + self.weight

    @property
    def value(self) -> float:
        return self.mean / self.total if self.total else float("nan")


class Progress:
    """The latest ``Report``: each new one is the latest updated with what changed, so that
    every report carries all the live view shows."""

    def __init__(self, **fields) -> None:
        self.shown = Report("start", **fields)

    def report(self, kind: str, **fields) -> Report:
        """The latest snapshot with ``kind`` and ``fields``; text and info reset unless given."""
        self.shown = replace(self.shown, kind=kind, **{"text": "", "info": {}, **fields})
        return self.shown

    def keep(self, **fields) -> None:
        """Update the snapshot without a report (a resumed run's standing, say)."""
        self.shown = replace(self.shown, **fields)
