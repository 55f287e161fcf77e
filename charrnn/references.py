"""Reference models: what simple models of the training text score on the validation text, to
put a network's loss in context ("is my loss good?").

    refs = reference_losses(train_ids, val_ids, vocab_size)  # {"unigram": 3.21, "ngram": 2.05,
                                                              #  "order": 5, ...}
    model = NgramModel.fit(train_ids, vocab_size)            # order ORDER
    model.loss(val_ids), model.distribution(context_ids)     # nats/char, (V,) probabilities

Loss, defined as the network's: nats per character, the mean of -ln p(x_t | what precedes) over
the predictions t = 1 .. n-1 of a text (n,), or of each row of pieces (P, L) (what training
scores: ``evaluation.validation_sample``). The first character of a text or a row is never
predicted, and its first K-2 predictions use the shorter context it holds: the network, which
starts each stream from a zero state, also knows only what precedes in the text.

Unigram (character frequencies), add-one smoothed over the vocabulary of V characters, from the
counts c(w) of the N characters fitted:

    p_0(w) = (c(w) + 1) / (N + V)

n-gram of order K: interpolated Kneser-Ney, with Chen and Goodman's three discounts ("modified"),
for context lengths j = 1 .. K-1 on top of p_0:

    p_j(w | h) = [c_j(h w) - D_j(c_j(h w)) + B_j(h) p_{j-1}(w | h')] / c_j(h)   if c_j(h) > 0
    p_j(w | h) = p_{j-1}(w | h')                                               otherwise
    B_j(h) = sum_w D_j(c_j(h w)),      c_j(h) = sum_w c_j(h w)

h is the last j characters and h' its last j-1. At the top order (j = K-1) c_j(h w) is the
count of h w in the text; below it, the continuation count N1+(. h w): how many distinct
characters come before h w. The discount depends on the count: D_j(0) = 0, and for k = 1, 2, 3+
D_j(k) = k - (k+1) Y n_{k+1} / n_k with Y = n_1 / (n_1 + 2 n_2), where n_k is the number of
(j+1)-grams counted k times, clipped to [MIN_DISCOUNT, k] (MIN_DISCOUNT where n_k = 0). So each
p_j sums to 1 over the vocabulary when p_{j-1} does (the mass B_j(h) / c_j(h) that the discounts
free goes to p_{j-1}), and is > 0 where p_{j-1} is; p_0 is both. With K = 1 the model is p_0.

Keys: the k-gram w_1 .. w_k is the uint64 sum_t w_t V^(k-t), exact (no hashing) while V^K <= 2^64:
the order is lowered to the largest that fits (4 for V up to 65,536). Its context is key // V,
and the (k-1)-gram without its oldest character is key % V^(k-1).

Cost: fitting counts the K-grams of the text in blocks of BLOCK characters (np.unique on 8-byte
keys), merges the blocks' counts, and derives the lower orders from the distinct K-grams;
scoring makes two binary searches per order per prediction. The text fitted is the last
MAX_FIT_CHARS characters of the training text at most (those nearest the validation text).
Measured: the plays (0.9 M characters) fit and score in 0.1 s, 15 MB at the peak; 4 M
characters of English, 0.2 s and 42 MB; the worst case, a text whose K-grams are nearly all
distinct (random characters), 1.6 s and 320 MB for 4 M characters (about 80 bytes a character).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, DataError

__all__ = ["MAX_FIT_CHARS", "ORDER", "NgramModel", "reference_losses", "reference_note"]

ORDER = 5  # K: the n-gram reference reads the 4 characters before the one it predicts
MAX_FIT_CHARS = 4_000_000  # the references fit the last this many training characters at most
BLOCK = 1 << 18  # predictions scored at a time: bounds the temporaries (~25 MB)
MIN_DISCOUNT = 0.1  # the least a count gives up: some mass always goes to the lower order


def _discounts(counts: np.ndarray) -> np.ndarray:
    """(4,) D(0) = 0, D(1), D(2), D(3+), Chen and Goodman's estimates from n_k, the number of
    n-grams counted k times: D(k) = k - (k+1) Y n_{k+1} / n_k, Y = n1 / (n1 + 2 n2), each
    clipped to [MIN_DISCOUNT, k] (so a count never goes negative and some mass backs off); with
    no n-gram counted k times (a text of repeats), D(k) = MIN_DISCOUNT."""
    n = [int((counts == k).sum()) for k in range(5)]
    y = n[1] / (n[1] + 2 * n[2]) if n[1] else 0.5
    found = [k - (k + 1) * y * n[k + 1] / n[k] if n[k] else 0 for k in (1, 2, 3)]
    return np.array([0.0] + [min(max(d, MIN_DISCOUNT), k) for k, d in enumerate(found, 1)])


@dataclass(frozen=True)
class _Level:
    """The counts of one context length j: (j+1)-grams and their contexts, keys sorted."""

    keys: np.ndarray  # (G,) uint64 distinct (j+1)-gram keys
    counts: np.ndarray  # (G,) c_j(h w): raw counts at the top order, continuation counts below
    discounts: np.ndarray  # (4,) D_j(0), D_j(1), D_j(2), D_j(3+)
    contexts: np.ndarray  # (H,) uint64 distinct context keys h (keys // V)
    totals: np.ndarray  # (H,) c_j(h)
    backoff: np.ndarray  # (H,) B_j(h), the mass the discounts free for p_{j-1}

    @classmethod
    def of(cls, keys: np.ndarray, counts: np.ndarray, vocab_size: int) -> _Level:
        discounts = _discounts(counts)
        context = keys // np.uint64(vocab_size)  # sorted, as the keys are
        first = np.flatnonzero(np.diff(context, prepend=~context[:1]))  # each context's first
        return cls(keys, counts, discounts, context[first], np.add.reduceat(counts, first),
                   np.add.reduceat(discounts[np.minimum(counts, 3)], first))

    def discount(self, counts: np.ndarray) -> np.ndarray:
        return self.discounts[np.minimum(counts, 3)]


def _lookup(table: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, found) of each query in a sorted non-empty table."""
    at = np.minimum(np.searchsorted(table, queries), len(table) - 1)
    return at, table[at] == queries


def _count(ids: np.ndarray, k: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct k-gram keys sorted, their counts) of a text (n,): 9 bytes per k-gram while
    counting, then 24 per distinct one (the keys are built and sorted in place)."""
    n = len(ids) - k + 1
    if n <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    keys = ids[:n].astype(np.uint64)
    for t in range(1, k):  # oldest character first, most significant
        keys *= np.uint64(vocab_size)
        keys += ids[t:t + n]
    keys.sort()
    new = np.empty(n, bool)
    new[0] = True
    np.not_equal(keys[1:], keys[:-1], out=new[1:])
    first = np.flatnonzero(new)
    return keys[first], np.diff(first, append=n)


def fitting_order(vocab_size: int, order: int) -> int:
    """The largest order up to ``order`` whose keys fit in 64 bits: V^K <= 2^64."""
    while order > 1 and vocab_size ** order > 1 << 64:
        order -= 1
    return order


@dataclass(frozen=True)
class NgramModel:
    """A character n-gram model: the unigram p_0 and one _Level per context length (module)."""

    vocab_size: int
    order: int  # K, after fitting_order
    unigram: np.ndarray  # (V,) p_0
    levels: tuple[_Level | None, ...]  # context lengths 1 .. K-1 (None: the text is too short)
    fit_chars: int  # the training characters fitted

    @classmethod
    def fit(cls, train_ids: np.ndarray, vocab_size: int, order: int = ORDER) -> NgramModel:
        """Fit to the last MAX_FIT_CHARS of train_ids (n,), ids in 0 .. vocab_size-1; the order
        is lowered where V^order exceeds 2^64 (``fitting_order``)."""
        if not isinstance(order, int) or order < 1:
            raise ConfigError(f"the n-gram order must be an integer >= 1, not {order!r}")
        ids = np.asarray(train_ids)
        if ids.ndim != 1:
            raise DataError("the training ids must be a 1-D text")
        ids = _checked(ids[-MAX_FIT_CHARS:], vocab_size)
        ids = ids.astype(np.min_scalar_type(vocab_size - 1), copy=False)  # unsigned: uint64 sums
        order = fitting_order(vocab_size, order)
        counts = sum(np.bincount(ids[s:s + BLOCK], minlength=vocab_size)
                     for s in range(0, len(ids), BLOCK)) if len(ids) else np.zeros(vocab_size)
        unigram = (counts + 1.0) / (len(ids) + vocab_size)
        keys, key_counts = _count(ids, order, vocab_size)  # top order: raw counts
        levels: list[_Level | None] = [None] * (order - 1)  # None: a text too short for it
        for j in range(order - 1, 0, -1) if len(keys) else ():
            levels[j - 1] = _Level.of(keys, key_counts, vocab_size)
            # continuation counts: how many distinct (j+1)-grams end in each j-gram
            keys, key_counts = np.unique(keys % np.uint64(vocab_size) ** np.uint64(j),
                                         return_counts=True)
        return cls(vocab_size, order, unigram, tuple(levels), len(ids))

    def _probabilities(self, rows: np.ndarray) -> np.ndarray:
        """p(rows[:, t] | rows[:, :t]) for t = 1 .. L-1: rows (P, L) -> (P, L-1) float64."""
        rows = rows.astype(np.uint64)
        probs = self.unigram[rows[:, 1:]]
        key = rows.copy()  # key[:, t]: the j+1 characters ending at t, for t >= j
        for j, level in enumerate(self.levels, start=1):
            if j >= rows.shape[1]:
                break
            key[:, j:] += rows[:, :-j] * np.uint64(self.vocab_size) ** np.uint64(j)
            if level is None:
                continue
            query, lower = key[:, j:], probs[:, j - 1:]  # the predictions with j characters
            at, seen = _lookup(level.keys, query)
            count = np.where(seen, level.counts[at], 0)
            h, has_context = _lookup(level.contexts, query // np.uint64(self.vocab_size))
            interpolated = ((count - level.discount(count) + level.backoff[h] * lower)
                            / level.totals[h])
            probs[:, j - 1:] = np.where(has_context, interpolated, lower)
        return probs

    def losses(self, ids: np.ndarray) -> np.ndarray:
        """-ln p of each prediction of a text (n,) -> (n-1,), or of pieces (P, L) -> (P*(L-1),),
        scored BLOCK predictions at a time."""
        ids = _checked(ids, self.vocab_size)
        if ids.ndim == 2:  # whole rows at a time, about BLOCK predictions
            rows = max(1, BLOCK // max(ids.shape[1], 1))
            return np.concatenate([-np.log(self._probabilities(ids[r:r + rows])).reshape(-1)
                                   for r in range(0, len(ids), rows)] or [np.zeros(0)])
        out = np.empty(max(len(ids) - 1, 0))
        reach = max(self.order - 1, 1)  # characters a block reads before its first target
        for start in range(1, len(ids), BLOCK):
            segment = ids[max(0, start - reach):start + BLOCK]
            probs = self._probabilities(segment[None])[0]
            out[start - 1:start - 1 + BLOCK] = -np.log(probs[start - 1 - max(0, start - reach):])
        return out

    def loss(self, ids: np.ndarray) -> float:
        """Mean nats per character over the predictions of ids (n,) or (P, L); nan if none."""
        losses = self.losses(ids)
        return float(losses.mean()) if len(losses) else math.nan

    def distribution(self, context: np.ndarray | list[int]) -> np.ndarray:
        """(V,) p(w | context) for every w: the last K-1 ids of the context are read."""
        context = np.asarray(context, np.int64)[max(0, len(context) - self.order + 1):]
        if not len(context) or self.order == 1:
            return self.unigram.copy()
        V = self.vocab_size
        rows = np.column_stack([np.tile(context, (V, 1)), np.arange(V)])
        return self._probabilities(rows)[:, -1]


def _checked(ids: np.ndarray, vocab_size: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim not in (1, 2) or (ids.size and ids.dtype.kind not in "iu"):
        raise DataError("character ids must be a 1-D text or 2-D pieces of integers")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise DataError(f"a character id is outside a vocabulary of {vocab_size} characters")
    return ids


def reference_losses(train_ids: np.ndarray, val_ids: np.ndarray, vocab_size: int,
                     order: int = ORDER) -> dict[str, float | int]:
    """The references' validation losses, nats/char (module): {"unigram", "ngram" (of the
    "order" used), "uniform": ln V, "fit_chars": training characters fitted, "predictions"}."""
    model = NgramModel.fit(train_ids, vocab_size, order)
    val_ids = _checked(val_ids, vocab_size)
    unigram = -np.log(model.unigram[val_ids[..., 1:]])
    return {"unigram": float(unigram.mean()) if unigram.size else math.nan,
            "ngram": model.loss(val_ids), "order": model.order,
            "uniform": math.log(vocab_size), "fit_chars": model.fit_chars,
            "predictions": int(unigram.size)}


def reference_note(references: dict[str, float | int], text: str = "this text") -> str:
    """"a 5-gram model of this text: 2.05; character frequencies: 3.21" (nats/char); ``text``
    names what the references were fitted to."""
    return (f"a {references['order']}-gram model of {text}: {references['ngram']:.2f}; "
            f"character frequencies: {references['unigram']:.2f}")
