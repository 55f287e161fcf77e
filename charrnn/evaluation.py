"""Scoring a text: the mean loss of predicting each character from those before it.

Evaluation scores every character of a text exactly once:

    loss = -(1/N) sum_i log p(x_{i+1} | x_0..x_i)    over the N = n - 1 predictions

computed as S parallel streams (so it is fast) that each start from the zero state; S and the
window depend only on the text's length, so ``charrnn eval`` on the validation text reports
exactly what training reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from .model import CharRNN

__all__ = ["edge_windows", "evaluate", "evaluation_losses"]

EVAL_WINDOW = 64  # characters per stream per forward call (bounds the memory)
EVAL_STREAM_CHARS = 2048  # one stream per this many characters (at most 64 streams)


def _eval_layout(n_predictions: int) -> tuple[int, int]:
    """(streams, stream length) for scoring n predictions; depends on n alone."""
    streams = max(1, min(64, n_predictions // EVAL_STREAM_CHARS))
    return streams, -(-n_predictions // streams)


def _streams(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(inputs (S, per), targets (S, per), n): the text as S streams of ``per`` predictions;
    the last one is padded (its padding is never scored)."""
    n = len(ids) - 1
    S, per = _eval_layout(n)
    # inputs and targets are views of one padded copy in the ids' own (small) dtype
    padded = np.zeros(S * per + 1, ids.dtype)
    padded[:n + 1] = ids
    return padded[:-1].reshape(S, per), padded[1:].reshape(S, per), n


def _scored_windows(model: CharRNN, ids: np.ndarray,
                    on_progress: Callable[[int, int], None] | None = None
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (window losses (S, w) float64, mask of the real predictions (S, w)) in order."""
    inputs, targets, n = _streams(ids)
    S, per = inputs.shape
    first = np.arange(S)[:, None] * per  # position of each stream's first prediction
    state = model.initial_state(S)
    for start in range(0, per, EVAL_WINDOW):
        stop = min(per, start + EVAL_WINDOW)
        losses, state = model.losses(inputs[:, start:stop], targets[:, start:stop], state)
        yield losses, first + np.arange(start, stop)[None, :] < n
        if on_progress is not None:
            on_progress(min(n, stop * S), n)


def edge_windows(model: CharRNN, ids: np.ndarray) -> list[np.ndarray]:
    """The losses and final states of the first and the last window of scoring ``ids``, each
    from the zero state: one forward call of every shape that scoring the text makes."""
    if len(ids) < 2:
        return []
    inputs, targets, _ = _streams(ids)
    S, per = inputs.shape
    out: list[np.ndarray] = []
    for start in sorted({0, (per - 1) // EVAL_WINDOW * EVAL_WINDOW}):
        stop = min(per, start + EVAL_WINDOW)
        out += model.losses(inputs[:, start:stop], targets[:, start:stop], model.initial_state(S))
    return out


def evaluation_losses(model: CharRNN, ids: np.ndarray,
                      on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """-log p of each next character: ids (n,) -> (n - 1,) float64, every prediction once."""
    n = len(ids) - 1
    if n < 1:
        return np.zeros(0)
    S, per = _eval_layout(n)
    out = np.empty((S, per))
    col = 0
    for losses, _ in _scored_windows(model, ids, on_progress):
        out[:, col:col + losses.shape[1]] = losses
        col += losses.shape[1]
    return out.reshape(-1)[:n]


def evaluate(model: CharRNN, ids: np.ndarray,
             on_progress: Callable[[int, int], None] | None = None) -> float:
    """Mean loss in nats per character of predicting ids[1:] from what precedes (see module).

    Sums window by window, so memory does not grow with the text.
    """
    n = len(ids) - 1
    if n < 1:
        return math.nan
    total = 0.0
    for losses, real in _scored_windows(model, ids, on_progress):
        total += float(losses[real].sum())
    return total / n
