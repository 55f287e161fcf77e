"""A run's health: the checks that stop a diverging run with one message, and what to try.

A diverging run overflows on its way to inf/NaN. The finite checks of the loss, the gradient
norm, the validation loss and the weights stop it at the first sign, so NumPy's own overflow
warnings are left out (``quiet``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import DivergenceError, option

__all__ = ["MAX_LOSS", "broken_loss", "broken_weights", "diverged", "quiet"]

MAX_LOSS = 1e4  # nats/char: no model that learns comes near (a uniform guess costs ln V ~ 4-9)


def quiet() -> np.errstate:
    """NumPy's overflow, invalid and divide warnings off: the checks here name the problem."""
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


def broken_loss(what: str, loss: float) -> str | None:
    """Why a loss means the run diverged (not a number, or absurd), or None when it is fine."""
    if math.isfinite(loss) and loss <= MAX_LOSS:
        return None
    beyond = f" (beyond {MAX_LOSS:,.0f} nats per character)" if math.isfinite(loss) else ""
    return f"the {what} is {loss:.6g}{beyond}"


def broken_weights(params: dict[str, np.ndarray]) -> str | None:
    """Why the weights are unusable (an update made one infinite or NaN), or None."""
    if all(np.isfinite(p).all() for p in params.values()):
        return None
    return "an update made weights infinite or NaN"


def diverged(what: str, step: int, path: Path, saved: int | None,
             grad_clip: float) -> DivergenceError:
    """The error that ends a diverged run: what broke at which step, what the file at ``path``
    holds (``saved``: the step it was saved at, None for nothing), and what to try."""
    lr, clip = option("lr"), option("grad_clip")
    advice = (f"Try a lower {lr} or {clip}" if grad_clip else
              f"Try a lower {lr}, or clipping the gradient ({clip}, e.g. 5)")
    if saved is None:
        return DivergenceError(f"training diverged at step {step}: {what}; nothing was saved to "
                               f"{path}. {advice}")
    return DivergenceError(f"training diverged at step {step}: {what}; {path} (step {saved}) "
                           f"is intact. {advice}, then {option('resume', True)}")
