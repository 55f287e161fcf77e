"""Scoring a text: the mean loss of predicting each character from those before it.

Evaluation scores every character of a text exactly once:

    loss = -(1/N) sum_i log p(x_{i+1} | x_0..x_i)    over the N = n - 1 predictions

computed as S parallel streams (so it is fast) that each start from the zero state; S and the
window depend only on the text's length, so ``charrnn eval`` on the validation text reports
what training reported (to float32 rounding, where the BLAS thread count differs). Pieces of a
text, an array (P, L), are scored each as a stream of its own: ``validation_sample`` bounds what
training scores on a long validation text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from .model import CharRNN

__all__ = ["evaluate", "evaluation_losses", "predictions", "validation_sample"]

EVAL_WINDOW = 64  # characters per stream per forward call (bounds the memory)
EVAL_STREAM_CHARS = 2048  # one stream per this many characters (at most 64 streams)
SAMPLE_PIECES, PIECE_CHARS = 64, 2049  # a long validation text is scored on 64 x 2,048 predictions


def _eval_layout(n_predictions: int) -> tuple[int, int]:
    """(streams, stream length) for scoring n predictions; depends on n alone."""
    streams = max(1, min(64, n_predictions // EVAL_STREAM_CHARS))
    return streams, -(-n_predictions // streams)


def validation_sample(ids: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """What training scores of a validation text: all of it, or where it is longer than the
    pieces hold, SAMPLE_PIECES evenly spaced pieces of PIECE_CHARS characters, (P, L); and a
    record of which, for the model file."""
    n = len(ids)
    if n <= SAMPLE_PIECES * PIECE_CHARS:
        return ids, {"chars": n, "of": n}
    starts = (np.arange(SAMPLE_PIECES) * (n - PIECE_CHARS)) // (SAMPLE_PIECES - 1)
    pieces = ids[starts[:, None] + np.arange(PIECE_CHARS)]
    return pieces, {"chars": pieces.size, "of": n, "pieces": SAMPLE_PIECES,
                    "piece_chars": PIECE_CHARS}


def predictions(ids: np.ndarray) -> int:
    """How many predictions scoring a text (n,) or its pieces (P, L) makes."""
    return len(ids) - 1 if ids.ndim == 1 else ids.shape[0] * (ids.shape[1] - 1)


def _streams(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(inputs (S, per), targets (S, per), n): the text as S streams of ``per`` predictions,
    the last one padded (its padding is never scored); pieces (P, L) as P streams of L - 1."""
    if ids.ndim == 2:
        return ids[:, :-1], ids[:, 1:], predictions(ids)
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
    """Mean loss in nats per character of predicting ids[1:] from what precedes (see module);
    ids (n,) a text, or (P, L) pieces of one.

    Sums window by window, so memory does not grow with the text.
    """
    n = predictions(ids)
    if n < 1:
        return math.nan
    total = 0.0
    for losses, real in _scored_windows(model, ids, on_progress):
        total += float(losses[real].sum())
    return total / n
