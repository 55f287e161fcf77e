"""A trained model carried onto a larger vocabulary, its predictions over its own characters
kept.

A character is a row of layer 0's input weights and a column (and a bias) of the output head;
the rest of the network does not depend on the vocabulary. ``grown`` puts the base's rows and
columns at their characters' places in the new vocabulary (vocabularies are sorted, so the
base's characters may move) and gives each new character:

- an input row drawn as a fresh model draws it (``model.init_params``), so that the network
  reads the new character as clearly as a new model would from its first step;
- a zero head column and the bias of ``new_char_bias``. Its logit is then one constant in
  every context, the base's logits are untouched, and so the ratios among the probabilities
  of the base's characters are exactly the base's, everywhere: the new characters only take
  a small share of the probability, which training then moves where the text wants it.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError
from .model import CharRNN, init_params
from .vocab import Vocab

__all__ = ["NEW_CHAR_PROB", "NEW_CHARS_MASS", "grown", "new_char_bias"]

# The probability a new character starts with where the head sees no signal: small, so that
# the base's characters keep 99.7% of theirs with three new ones (on real text, where the base
# is surer, a new one starts lower still: a median 3e-5 for '*' on corpora/poems.txt). Its
# exact value matters little: the head learns a new character's contexts while it trains
# (docs/training.md, "The vocabulary grows").
NEW_CHAR_PROB = 1e-3
NEW_CHARS_MASS = 0.1  # many new characters (a new script) share at most this much in all


def new_char_bias(head_b: np.ndarray, added: int) -> float:
    """The bias c of each of ``added`` new characters (zero head columns) that gives each the
    probability p = min(NEW_CHAR_PROB, NEW_CHARS_MASS / added) where the head sees no signal
    (a zero input, so the logits are the biases b of the base's characters):

        p = e^c / (Z + added * e^c),  Z = sum_j e^(b_j)
        => e^c (1 - added * p) = p Z
        => c = log(p / (1 - added * p)) + logsumexp(b)
    """
    if added < 1:
        raise ConfigError("new_char_bias needs at least one new character")
    p = min(NEW_CHAR_PROB, NEW_CHARS_MASS / added)
    b = np.asarray(head_b, np.float64)
    logsumexp = b.max() + np.log(np.exp(b - b.max()).sum())
    return float(np.log(p / (1 - added * p)) + logsumexp)


def grown(base: CharRNN, vocab: Vocab, rng: np.random.Generator) -> CharRNN:
    """``base`` (with its vocabulary) on ``vocab``, which holds every character of the base's
    vocabulary and maybe more: the base's weights at their characters' new ids, the new
    characters as the module says. ``rng`` draws the new input rows (it is left alone when
    nothing is new)."""
    old = vocab.ids_of(base.vocab.chars)  # where each of the base's characters goes
    if len(vocab) == len(base.vocab):
        return CharRNN(base.config, {k: v.copy() for k, v in base.params.items()}, vocab=vocab,
                       dtype=base.dtype)
    config = base.config.replace(vocab_size=len(vocab))
    added = np.setdiff1d(np.arange(len(vocab)), old)
    params = {k: v.copy() for k, v in base.params.items()}
    params["layers.0.W_x"] = init_params(config, rng, base.dtype)["layers.0.W_x"]
    params["layers.0.W_x"][old] = base.params["layers.0.W_x"]
    params["head.W"] = np.zeros((config.hidden_size, len(vocab)), base.dtype)
    params["head.W"][:, old] = base.params["head.W"]
    params["head.b"] = np.empty(len(vocab), base.dtype)
    params["head.b"][old] = base.params["head.b"]
    params["head.b"][added] = new_char_bias(base.params["head.b"], len(added))
    return CharRNN(config, params, vocab=vocab, dtype=base.dtype)
