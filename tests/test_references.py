"""The reference models: a smoothed unigram and an interpolated Kneser-Ney n-gram, in nats/char."""

import itertools
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from charrnn import ConfigError, DataError, read_corpus, references
from charrnn.data import split_train_val
from charrnn.references import NgramModel, fitting_order, reference_losses, reference_note

CORPORA = Path(__file__).resolve().parents[1] / "corpora"


def ids_of(text: str) -> tuple[np.ndarray, int]:
    chars = sorted(set(text))
    return np.array([chars.index(c) for c in text]), len(chars)


def kneser_ney(train: list[int], V: int, order: int, context: tuple[int, ...], w: int) -> float:
    """p(w | context) straight from the module's equations, with dicts and recursion."""
    fitted = len(train)
    unigram = (Counter(train)[w] + 1) / (fitted + V)
    top = Counter(tuple(train[i:i + order]) for i in range(len(train) - order + 1))
    counts = {order: top}
    for k in range(order - 1, 1, -1):  # continuation counts: distinct characters before
        counts[k] = Counter(gram[1:] for gram in counts[k + 1])

    def discount(table, c):
        n = [sum(1 for v in table.values() if v == k) for k in range(5)]
        y = n[1] / (n[1] + 2 * n[2]) if n[1] else 0.5
        k = min(c, 3)
        d = k - (k + 1) * y * n[k + 1] / n[k] if n[k] else 0
        return 0 if c == 0 else min(max(d, references.MIN_DISCOUNT), k)

    def p(j, h):
        if j == 0:
            return unigram
        table = counts[j + 1]
        total = sum(v for g, v in table.items() if g[:-1] == h)
        if total == 0:
            return p(j - 1, h[1:])
        backoff = sum(discount(table, v) for g, v in table.items() if g[:-1] == h)
        c = table.get((*h, w), 0)
        return (c - discount(table, c) + backoff * p(j - 1, h[1:])) / total

    j = min(len(context), order - 1)
    return p(j, tuple(context[len(context) - j:]))


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_distribution_sums_to_one_and_is_positive(order):
    """Every context up to K-1 characters over a vocabulary of 4, one of them never seen."""
    train = np.random.default_rng(order).integers(0, 3, 300)
    model = NgramModel.fit(train, 4, order)
    for length in range(order):
        for context in itertools.product(range(4), repeat=length):
            p = model.distribution(list(context))
            assert p.shape == (4,) and (p > 0).all()
            assert p.sum() == pytest.approx(1, abs=1e-12)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_matches_the_equations_computed_by_hand(order):
    rng = np.random.default_rng(order)
    train = [int(c) for c in rng.integers(0, 3, 120)] + [1, 1, 1, 1, 1, 1]  # counts of 1 to 4+
    model = NgramModel.fit(np.array(train), 4, order)
    for context in [(), (0,), (1, 1), (2, 0, 1), (3, 3, 3), (0, 1, 2, 0)]:
        expected = [kneser_ney(train, 4, order, context, w) for w in range(4)]
        np.testing.assert_allclose(model.distribution(list(context)), expected, rtol=1e-12)


def test_matches_the_equations_on_real_text():
    ids = read_corpus(CORPORA / "sonnets.txt").ids[:3000]
    V = int(ids.max()) + 2  # one character more, never seen
    train = [int(c) for c in ids]
    model = NgramModel.fit(ids, V, order=4)
    for at in (10, 500, 2999):
        context = tuple(train[at - 3:at])
        expected = [kneser_ney(train, V, 4, context, w) for w in range(V)]
        np.testing.assert_allclose(model.distribution(list(context)), expected, rtol=1e-12)


def test_unseen_characters_cost_a_finite_amount():
    train, val = np.array([0, 1, 0, 1, 1, 0] * 20), np.array([0, 1, 2, 2, 0, 1])
    model = NgramModel.fit(train, 3)
    assert model.unigram[2] == pytest.approx(1 / (len(train) + 3))
    losses = model.losses(val)
    assert np.isfinite(losses).all() and losses.shape == (5,)
    result = reference_losses(train, val, 3)
    assert math.isfinite(result["ngram"]) and math.isfinite(result["unigram"])


def test_order_one_is_the_unigram():
    train, val = split_train_val(read_corpus(CORPORA / "sonnets.txt").ids, 0.1)
    V = int(train.max()) + 1
    model = NgramModel.fit(train, V, order=1)
    counts = np.bincount(train, minlength=V)
    np.testing.assert_allclose(model.unigram, (counts + 1) / (len(train) + V))
    np.testing.assert_allclose(model.losses(val), -np.log(model.unigram[val[1:]]))
    result = reference_losses(train, val, V, order=1)
    assert result["ngram"] == pytest.approx(result["unigram"])


def test_the_training_text_itself_scores_lower_than_a_shuffled_one():
    ids = read_corpus(CORPORA / "sonnets.txt").ids[:20_000]
    V = int(ids.max()) + 1
    shuffled = np.random.default_rng(0).permutation(ids)
    model = NgramModel.fit(ids, V)
    assert model.loss(ids) < 0.5 * model.loss(shuffled)


def test_a_real_text_ranks_the_references_as_expected():
    corpus = read_corpus(CORPORA / "sonnets.txt")
    train, val = split_train_val(corpus.ids, 0.1)
    result = reference_losses(train, val, len(corpus.vocab))
    assert result["order"] == 5 and result["fit_chars"] == len(train)
    assert result["predictions"] == len(val) - 1
    assert result["uniform"] == pytest.approx(math.log(len(corpus.vocab)))
    assert 1.3 < result["ngram"] < 2.0 < 2.8 < result["unigram"] < result["uniform"]
    assert reference_note(result) == (f"a 5-gram model of this text: {result['ngram']:.2f}; "
                                      f"character frequencies: {result['unigram']:.2f}")


def test_one_repeated_line_scores_near_zero():
    ids, V = ids_of("The quick brown fox jumps over the lazy dog.\n" * 60)
    train, val = split_train_val(ids, 0.1)
    assert reference_losses(train, val, V)["ngram"] < 0.05


@pytest.mark.parametrize("V", [10, 20])
def test_uniform_random_characters_score_near_ln_v(V):
    ids = np.random.default_rng(V).integers(0, V, 30_000)
    train, val = split_train_val(ids, 0.1)
    result = reference_losses(train, val, V)
    assert result["unigram"] == pytest.approx(math.log(V), rel=0.01)
    assert math.log(V) - 0.02 < result["ngram"] < 1.05 * math.log(V)


def test_pieces_are_scored_each_on_its_own():
    ids = read_corpus(CORPORA / "sonnets.txt").ids
    V = int(ids.max()) + 1
    model = NgramModel.fit(ids[:50_000], V)
    pieces = ids[60_000:60_000 + 4 * 300].reshape(4, 300)
    expected = np.concatenate([model.losses(row) for row in pieces])
    np.testing.assert_allclose(model.losses(pieces), expected)
    result = reference_losses(ids[:50_000], pieces, V)
    assert result["ngram"] == pytest.approx(expected.mean())
    assert result["predictions"] == 4 * 299


def test_blocks_do_not_change_the_scores(monkeypatch):
    ids = read_corpus(CORPORA / "sonnets.txt").ids
    V = int(ids.max()) + 1
    model = NgramModel.fit(ids[:30_000], V)
    whole = model.losses(ids[30_000:32_000])
    pieces = ids[30_000:32_000].reshape(8, 250)
    by_rows = model.losses(pieces)
    monkeypatch.setattr(references, "BLOCK", 7)
    np.testing.assert_array_equal(model.losses(ids[30_000:32_000]), whole)
    np.testing.assert_array_equal(model.losses(pieces), by_rows)


def test_a_long_training_text_is_fitted_on_its_last_characters(monkeypatch):
    monkeypatch.setattr(references, "MAX_FIT_CHARS", 1000)
    ids = read_corpus(CORPORA / "sonnets.txt").ids
    V = int(ids.max()) + 1
    capped = NgramModel.fit(ids[:5000], V)
    assert capped.fit_chars == 1000
    np.testing.assert_array_equal(capped.unigram, NgramModel.fit(ids[4000:5000], V).unigram)


def test_short_texts_and_large_vocabularies():
    model = NgramModel.fit(np.array([1, 2]), 3)  # no 5-gram at all: the unigram alone
    np.testing.assert_allclose(model.distribution([1, 2, 1, 2]), model.unigram)
    assert math.isnan(reference_losses(np.array([1, 2]), np.array([1]), 3)["ngram"])
    assert fitting_order(65_536, 5) == 4 and fitting_order(70_000, 5) == 3
    assert fitting_order(100, 5) == 5


def test_bad_input_is_refused():
    with pytest.raises(DataError, match="outside a vocabulary of 3"):
        reference_losses(np.array([0, 1, 3]), np.array([0, 1]), 3)
    with pytest.raises(ConfigError, match="order"):
        NgramModel.fit(np.array([0, 1]), 2, order=0)
