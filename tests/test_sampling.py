"""Sampling: distributions equal to model.forward, filters, chi-square draws, seeds, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from charrnn import sampling
from charrnn.cells import CELLS as CELL_CLASSES
from charrnn.config import CELLS, ModelConfig
from charrnn.data import Vocab
from charrnn.errors import ConfigError, VocabularyError
from charrnn.model import CharRNN
from charrnn.sampling import Stepper, Stream, probabilities, sample, stream

VOCAB = Vocab("\n ,.abcdefghijklmnopqrstuvwxyz")
V = len(VOCAB)


def make_model(cell="lstm", dtype=np.float64, hidden=16, layers=2, seed=0, sharpen=4.0,
               vocab=VOCAB):
    """A random model whose head is scaled up so next-character distributions are uneven."""
    config = ModelConfig(cell=cell, vocab_size=len(vocab), hidden_size=hidden, num_layers=layers)
    model = CharRNN(config, vocab=vocab, dtype=dtype, seed=seed)
    model.params["head.W"] *= sharpen
    model.params["head.b"] += np.linspace(-1, 1, len(vocab), dtype=dtype)
    return model


def softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def drawable(logits, drawn, tol=1e-9, **options) -> np.ndarray:
    """Whether each drawn id (M,) is allowed by `options` after its logits (M, V), where those
    logits come from another arithmetic path (model.forward: other shapes, other summation
    order) and so agree with the sampler's only to rounding: the id's logit raised by `tol`
    must put it in the filtered set. Raising a logit only moves its id up the top-k and into
    the nucleus, so a real error (a draw far outside the set) still fails."""
    bumped = np.array(logits, np.float64)
    rows = np.arange(len(drawn))
    bumped[rows, drawn] += tol
    return probabilities(bumped, **options)[rows, drawn] > 0


def next_logits(model, texts):
    """Reference: logits after each text, (N, V), from model.forward on the whole prefix."""
    ids = np.stack([VOCAB.encode(t) for t in texts])
    logits, state, _ = model.forward(ids, model.initial_state(len(texts)))
    return logits[-len(texts):], state


# Chi-square: upper 1e-4 quantile by the Wilson-Hilferty approximation
#   chi2_{k}(1 - a) ~= k (1 - 2/(9k) + z_a sqrt(2/(9k)))^3,  z_{1e-4} = 3.7190165 (normal quantile).
# Checked against exact quantiles (scipy, offline): k=10 35.56 exact vs 35.97, k=30 67.63 vs
# 67.86, k=64 114.83 vs 114.98; it errs on the high side (true tail 0.6e-4 to 1e-4 for k >= 1).
# The seeds are fixed, so each test is deterministic; a correct sampler would fail it for fewer
# than 1 seed in 10,000, while the power checks below show that real errors are caught.
Z_1E4 = 3.7190165


def chi2_critical(k: int) -> float:
    return k * (1 - 2 / (9 * k) + Z_1E4 * math.sqrt(2 / (9 * k))) ** 3


def chi2_statistic(counts, probs):
    """Pearson statistic and degrees of freedom; bins with expected < 5 are pooled into one."""
    counts, expected = np.asarray(counts, np.float64), np.asarray(probs) * np.sum(counts)
    assert counts[expected == 0].sum() == 0, "drew a character of probability 0"
    small = (expected < 5) & (expected > 0)
    obs = np.append(counts[expected >= 5], counts[small].sum())
    exp = np.append(expected[expected >= 5], expected[small].sum())
    obs, exp = obs[exp > 0], exp[exp > 0]
    return float(((obs - exp) ** 2 / exp).sum()), len(obs) - 1


# ---------------------------------------------------------------- the filtered distribution


def test_probabilities_is_softmax_of_logits_over_temperature():
    logits = np.random.default_rng(0).normal(0, 3, (5, V))
    for t in (0.3, 1.0, 2.5):
        np.testing.assert_allclose(probabilities(logits, t), softmax(logits / t), rtol=1e-12)
    np.testing.assert_allclose(probabilities(logits[0], 0.5), softmax(logits[0] / 0.5),
                               rtol=1e-12)  # a single (V,) row too
    assert probabilities(logits, 1e-30)[0].max() == 1.0  # tiny T: one-hot, no NaN
    assert probabilities(logits.astype(np.float32)).dtype == np.float32


def test_top_k_keeps_exactly_the_k_largest_renormalised():
    logits = np.random.default_rng(1).normal(0, 2, (200, V))
    for k in (1, 3, 10, V, V + 5):
        p = probabilities(logits, 0.8, top_k=k)
        ref = softmax(logits / 0.8)
        top = np.argsort(-logits, axis=1)[:, :min(k, V)]
        allowed = np.zeros_like(p, bool)
        np.put_along_axis(allowed, top, True, axis=1)
        assert ((p > 0) == allowed).all()
        kept = np.where(allowed, ref, 0)
        np.testing.assert_allclose(p, kept / kept.sum(axis=1, keepdims=True), rtol=1e-12)
    tied = np.array([[1.0, 3.0, 2.0, 3.0, 0.0]])  # ties with the k-th largest are kept
    assert (probabilities(tied, top_k=1) > 0).tolist() == [[False, True, False, True, False]]


def nucleus_reference(p: np.ndarray, top_p: float) -> np.ndarray:
    """The smallest set of most probable entries whose mass reaches top_p, row by row."""
    allowed = np.zeros_like(p, bool)
    for row, probs in enumerate(p):
        mass = 0.0
        for j in np.argsort(-probs, kind="stable"):
            allowed[row, j] = True
            mass += probs[j]
            if mass >= top_p:
                break
    return allowed


def test_top_p_keeps_the_smallest_nucleus_renormalised():
    logits = np.random.default_rng(2).normal(0, 2, (300, V))
    for top_p in (0.05, 0.5, 0.9, 0.999):
        p = probabilities(logits, top_p=top_p)
        ref = softmax(logits)
        allowed = nucleus_reference(ref, top_p)
        assert ((p > 0) == allowed).all()
        kept = np.where(allowed, ref, 0)
        np.testing.assert_allclose(p, kept / kept.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(probabilities(logits, top_p=1.0), softmax(logits), rtol=1e-12)
    assert ((probabilities(logits, top_p=1e-9) > 0).sum(axis=1) == 1).all()  # the argmax only


def test_top_k_then_top_p():
    logits = np.random.default_rng(3).normal(0, 2, (100, V))
    p = probabilities(logits, 1.5, top_k=8, top_p=0.7)
    after_k = probabilities(logits, 1.5, top_k=8)
    with np.errstate(divide="ignore"):  # log 0 = -inf for the characters top-k removed
        np.testing.assert_allclose(p, probabilities(np.log(after_k), top_p=0.7), rtol=1e-9)
    assert ((p > 0).sum(axis=1) <= 8).all()


# ---------------------------------------------------------------- the network, step by step


# The Stepper's upper layers and head take fused products ([h_{k-1} | h_k | 1] @ [W_x; W_h; b]),
# which sum in another order than the forward's, over other shapes, and BLAS kernels round
# differently per CPU: the two agree to float rounding. Float32 carries ~6e-8 relative per
# operation; over a few layers and steps of O(1) values, 1e-5 relative and 1e-6 absolute hold
# with a wide margin, while a wrong gate or weight is off by 1e-2 or more.
TOLERANCE = {np.float64: {"rtol": 1e-12, "atol": 1e-12}, np.float32: {"rtol": 1e-5, "atol": 1e-6}}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", CELLS)
def test_stepper_equals_forward_on_the_prefix(cell, dtype):
    """Step by step, the logits and state of model.forward on the whole prefix."""
    model = make_model(cell, dtype, hidden=12, layers=3, sharpen=1.0)
    rng = np.random.default_rng(4)
    N = 3
    start = rng.normal(0, 0.5, (3, model.config.state_parts, N, 12)).astype(dtype)
    stepper = Stepper(model, N)
    stepper.state = start  # a different state per stream
    prefix = rng.integers(V, size=(N, 4))
    got = stepper.prime(prefix).copy()
    for _ in range(6):
        logits, state, _ = model.forward(prefix, start)
        np.testing.assert_allclose(got, logits[-N:], **TOLERANCE[dtype])
        np.testing.assert_allclose(stepper.state, state, **TOLERANCE[dtype])
        ids = rng.integers(V, size=N)
        got = stepper.step(ids).copy()
        prefix = np.concatenate([prefix, ids[:, None]], axis=1)
    assert stepper.logits.dtype == dtype


@pytest.mark.parametrize("N", [1, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell", CELLS)
def test_one_layer_step_is_the_forward_s_step_bit_for_bit(cell, dtype, N):
    """Layer 0 of the Stepper is the forward's arithmetic on the same shapes: the gathered row
    and h (s W_h) summed as the forward sums them, then the cell's own `step`. So one step
    from the same state gives the forward's state to the bit (the logits pass through the
    fused head, so they agree to rounding)."""
    model = make_model(cell, dtype, hidden=12, layers=1, sharpen=1.0)
    rng = np.random.default_rng(14)
    state = rng.normal(0, 0.8, (1, model.config.state_parts, N, 12)).astype(dtype)
    stepper = Stepper(model, N)
    for _ in range(3):
        stepper.state = state
        ids = rng.integers(V, size=N)
        logits, state, _ = model.forward(ids[:, None], state, for_backward=False)
        got = stepper.step(ids)
        np.testing.assert_array_equal(stepper.state, state)
        np.testing.assert_allclose(got, logits, **TOLERANCE[dtype])


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("cell", CELLS)
def test_saturated_gates_step_quietly_to_their_limits(cell):
    """Huge weights: exp(-a) overflows to inf for a << 0, which gives s(a) = 0. No warning, and
    the state is the forward's."""
    model = make_model(cell, np.float32, hidden=8, layers=2)
    for p in model.params.values():
        p *= 1e3
    stepper = Stepper(model, 2)
    for ids in ([1, 2], [3, 4], [5, 6]):
        stepper.step(np.array(ids))
    _, state, _ = model.forward(np.array([[1, 3, 5], [2, 4, 6]]), for_backward=False)
    assert np.isfinite(stepper.state).all()
    np.testing.assert_allclose(stepper.state, state, **TOLERANCE[np.float32])


@pytest.mark.parametrize("cell", CELLS)
def test_forward_and_stepper_advance_by_the_cell_s_step(cell, monkeypatch):
    """One definition of a step: the training forward and the Stepper both call the cell's
    `step`, once per time step and layer."""
    model = make_model(cell, layers=2)
    step_class = CELL_CLASSES[cell]
    calls = []
    real_step = step_class.step

    def counted(*args):
        calls.append(1)
        real_step(*args)

    monkeypatch.setattr(step_class, "step", staticmethod(counted))
    model.loss_and_grad(np.zeros((2, 5), int), np.zeros((2, 5), int))
    assert len(calls) == 5 * 2
    Stepper(model, 4).step(np.arange(4))
    assert len(calls) == 5 * 2 + 2


@pytest.mark.parametrize("cell", CELLS)
def test_priming_equals_forward_on_the_prime(cell, monkeypatch):
    model = make_model(cell)
    prime = "hello, world. a longer prime read in chunks"
    ref_logits, ref_state = next_logits(model, [prime])
    for chunk in (2048, 5):  # several forward calls carry the state exactly
        monkeypatch.setattr(sampling, "PRIME_CHUNK", chunk)
        s = Stream(model, 1, prime=prime, num_samples=4)
        np.testing.assert_allclose(s.stepper.logits, np.repeat(ref_logits, 4, 0), atol=1e-12)
        np.testing.assert_allclose(s.stepper.state, np.repeat(ref_state, 4, 2), atol=1e-12)


def test_shared_prime_from_different_states_is_read_per_stream():
    model = make_model("gru")
    stepper = Stepper(model, 2)
    start = np.random.default_rng(5).normal(size=(2, 1, 2, 16))
    stepper.state = start
    got = stepper.prime(VOCAB.encode("abc")).copy()
    logits, _, _ = model.forward(np.tile(VOCAB.encode("abc"), (2, 1)), start)
    np.testing.assert_allclose(got, logits[-2:], atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_stepper_layers_name_their_weights_views_and_buffers(cell):
    """Each layer's fields: the re-laid weights' shapes, and views into the one state buffer
    (h, the LSTM's c) and the layer's own buffers, which the step loops read in field order."""
    H, L, N, G = 12, 3, 2, {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    model = make_model(cell, hidden=H, layers=L)
    sign = CELL_CLASSES[cell].sign
    stepper = Stepper(model, N)
    state = np.random.default_rng(8).normal(size=(L, model.config.state_parts, N, H))
    stepper.state = state
    layers = stepper.layers
    assert [x.first for x in layers] == [True, False, False]
    assert [x.W_in.shape for x in layers] == [(V, G * H)] + (
        [(H, G * H)] * 2 if cell == "gru" else [(2 * H, G * H), (2 * H + 1, G * H)])
    assert all(x.xw.shape == (N, G * H) for x in layers)
    assert [x.W_h is None for x in layers] == [False] + [cell != "gru"] * 2  # else in W_in
    p = model.params
    table = p["layers.0.W_x"] + p["layers.0.b"]  # the forward's gather table, times s
    np.testing.assert_array_equal(layers[0].W_in, table if cell == "gru" else sign * table)
    np.testing.assert_array_equal(layers[0].W_h, sign * p["layers.0.W_h"])
    assert (layers[-1].b is None) == (cell != "gru")  # the top layer's bias rides in W_in
    for k, layer in enumerate(layers):
        np.testing.assert_array_equal(layer.h, state[k, 0])
        assert np.shares_memory(layer.h, stepper.h)
        if cell == "lstm":
            np.testing.assert_array_equal(layer.c, state[k, 1])
            assert layer.buffers.a.shape == (N, 4 * H)
        if cell == "gru":
            xw_rz, xw_n, b_hn = layer.gru
            assert xw_rz.base is layer.xw and xw_n.base is layer.xw and b_hn.shape == (H,)
            assert layer.buffers.hh.shape == (N, 3 * H)
        if cell == "rnn":
            assert layer.buffers.shape == (N, H)
    upper = layers[1].x
    np.testing.assert_array_equal(upper[:, :H], state[0, 0])  # layer 1 reads h_0
    rows = stepper._rows  # exact tuples of the same objects, for the loops' unpacking
    assert all(type(r) is tuple and all(a is b for a, b in zip(r, x, strict=True))
               for r, x in zip(rows, layers, strict=True))


# ---------------------------------------------------------------- drawing


@pytest.mark.parametrize("options", [{}, {"temperature": 0.7, "top_k": 6, "top_p": 0.9}])
def test_parallel_draws_match_the_distribution_chi_square(options):
    """20,000 independent first characters after a prime, against probabilities(forward)."""
    model = make_model("lstm")
    n = 20_000
    first = sample(model, 1, prime="the cat", seed=6, num_samples=n, **options)
    counts = np.bincount(VOCAB.encode("".join(first)), minlength=V)
    logits, _ = next_logits(model, ["the cat"])
    p = probabilities(logits[0], **options)
    stat, dof = chi2_statistic(counts, p)
    assert dof >= 5 and stat < chi2_critical(dof)
    # the test has power: uniform over the allowed set is rejected, and so is T = 1.1 vs 1
    wrongs = [(p > 0) / (p > 0).sum()] + ([probabilities(logits[0], 1.1)] if not options else [])
    for wrong in wrongs:
        stat_wrong, dof_wrong = chi2_statistic(counts, wrong)
        assert stat_wrong > chi2_critical(dof_wrong)


@pytest.mark.parametrize("options", [{}, {"temperature": 0.5, "top_k": 7, "top_p": 0.8}])
def test_batch_of_one_fast_path_draws_what_the_batched_path_draws(options):
    """N = 1 takes a 1-D path (scalar max, searchsorted): same uniforms, same characters."""
    logits = np.random.default_rng(8).normal(0, 2, (1, V)).astype(np.float32)
    fast = sampling._Chooser(1, V, **options)
    batched = sampling._Chooser(1, V, **options)
    batched.single = False
    rng_fast, rng_batched = np.random.default_rng(9), np.random.default_rng(9)
    drawn = [int(fast(logits.copy(), rng_fast)[0]) for _ in range(3000)]
    assert drawn == [int(batched(logits.copy(), rng_batched)[0]) for _ in range(3000)]
    p = probabilities(logits[0], **options)
    stat, dof = chi2_statistic(np.bincount(drawn, minlength=V), p)
    assert stat < chi2_critical(dof)


def test_every_drawn_character_is_in_the_filtered_set():
    """Regenerate the logits of every step with model.forward; each draw lies in its top-k/top-p."""
    model = make_model("gru", sharpen=2.0)
    for options in ({"top_k": 3}, {"top_p": 0.6}, {"top_k": 5, "top_p": 0.5, "temperature": 2.0}):
        texts = sample(model, 25, prime="ab", seed=7, num_samples=64, **options)
        ids = np.stack([VOCAB.encode("ab" + t) for t in texts])
        logits, _, _ = model.forward(ids[:, :-1], model.initial_state(64))
        after = logits.reshape(-1, 64, V)[1:].reshape(-1, V)  # (25 * 64, V) time-major
        drawn = ids[:, 2:].T.reshape(-1)
        assert drawable(after, drawn, **options).all()
        assert len(set(texts)) > 1


def test_seed_determines_the_text():
    model = make_model("lstm")
    a = sample(model, 80, prime="a", seed=11)
    assert a == sample(model, 80, prime="a", seed=11)
    assert a == sample(model, 80, prime="a", seed=np.random.default_rng(11))
    assert a != sample(model, 80, prime="a", seed=12)
    b = sample(model, 80, prime="a", seed=[11, 500])  # SeedSequence entropy, as training passes
    assert b == sample(model, 80, prime="a", seed=(11, 500)) != sample(model, 80, prime="a",
                                                                       seed=[11, 501])
    many = sample(model, 80, prime="a", seed=11, num_samples=5)
    assert many == sample(model, 80, prime="a", seed=11, num_samples=5)
    assert len(a) == 80 and set(a) <= set(VOCAB.chars)


def test_parallel_samples_are_independent_valid_sequences():
    model = make_model("rnn", sharpen=1.0)
    texts = sample(model, 60, prime="x", seed=13, num_samples=6)
    assert isinstance(texts, list) and len(texts) == 6
    assert all(len(t) == 60 and set(t) <= set(VOCAB.chars) for t in texts)
    assert len(set(texts)) == 6  # each stream draws with its own uniform numbers
    # each stream carries its own state: after the run, the logits of stream i are those of
    # model.forward on "x" + text i alone
    s = Stream(model, 60, prime="x", seed=13, num_samples=6)
    assert s.texts() == texts
    s.stepper.step(VOCAB.encode("".join(t[-1] for t in texts)).astype(np.intp))
    ref, _ = next_logits(model, ["x" + t for t in texts])
    np.testing.assert_allclose(s.stepper.logits, ref, atol=1e-12)


def test_greedy_equals_tiny_temperature_top_k_1_and_argmax_decoding():
    model = make_model("lstm")
    greedy = sample(model, 40, prime="the ", greedy=True)
    assert greedy == sample(model, 40, prime="the ", temperature=1e-4, seed=1)
    assert greedy == sample(model, 40, prime="the ", top_k=1, seed=2)
    many = sample(model, 40, prime="the ", greedy=True, num_samples=3)
    assert many == [many[0]] * 3  # three identical streams in one batch
    for text in (greedy, many[0]):  # each character an argmax of model.forward on its prefix
        for t in range(len(text)):
            logits, _ = next_logits(model, ["the " + text[:t]])
            assert drawable(logits, VOCAB.encode(text[t]), top_k=1)[0], (text, t)


def test_stream_yields_characters_or_tuples_as_sample_returns():
    model = make_model("gru")
    one = stream(model, 30, prime="ab", seed=3)
    chars = list(one)
    assert all(isinstance(c, str) and len(c) == 1 for c in chars)
    assert "".join(chars) == sample(model, 30, prime="ab", seed=3)
    steps = list(stream(model, 30, prime="ab", seed=3, num_samples=4))
    assert len(steps) == 30 and all(isinstance(s, tuple) and len(s) == 4 for s in steps)
    assert ["".join(col) for col in zip(*steps, strict=True)] == sample(
        model, 30, prime="ab", seed=3, num_samples=4)
    assert list(stream(model, 0)) == [] and sample(model, 0) == ""
    assert sample(model, 0, num_samples=2) == ["", ""]


def test_empty_prime_starts_after_a_newline():
    model = make_model("lstm")
    assert sample(model, 50, seed=5) == sample(model, 50, prime="\n", seed=5)


def test_empty_prime_without_newline_starts_with_a_uniform_character():
    vocab = Vocab("abcdefgh")
    model = make_model("rnn", vocab=vocab, sharpen=10.0)
    first = "".join(t[0] for t in sample(model, 2, seed=9, num_samples=8000))
    stat, dof = chi2_statistic(np.bincount(vocab.encode(first), minlength=8), np.full(8, 1 / 8))
    assert dof == 7 and stat < chi2_critical(dof)
    assert sample(model, 20, seed=9) == sample(model, 20, seed=9)


# ---------------------------------------------------------------- errors


def test_unknown_prime_characters():
    model = make_model("lstm")
    with pytest.raises(VocabularyError, match="'Q'"):
        Stream(model, 5, prime="aQb€")
    s = Stream(model, 20, prime="aQb€", seed=1, skip_unknown=True)
    assert s.dropped == ["Q", "€"]
    assert "".join(s) == sample(model, 20, prime="ab", seed=1)
    assert Stream(model, 5, prime="ab", skip_unknown=True).dropped == []


@pytest.mark.parametrize("options", [
    {"temperature": 0}, {"temperature": -1.0}, {"temperature": float("nan")},
    {"temperature": float("inf")}, {"top_k": 0}, {"top_k": 2.5}, {"top_p": 0}, {"top_p": 1.01},
    {"top_p": -0.5}, {"num_samples": 0}, {"num_samples": True}, {"seed": -1}, {"seed": "x"},
    {"seed": []}, {"seed": [1, -2]}, {"seed": 1.5}, {"prime": 5},
])
def test_bad_options_raise_config_error(options):
    with pytest.raises(ConfigError):
        Stream(make_model("rnn"), 10, **options)


def test_options_computed_with_numpy_are_taken():
    model = make_model("rnn")
    options = {"temperature": np.float64(0.8), "top_k": np.int64(3), "top_p": np.int64(1),
               "seed": np.uint32(4), "num_samples": np.int8(2)}
    assert sample(model, np.int16(12), **options) == sample(
        model, 12, temperature=0.8, top_k=3, top_p=1, seed=4, num_samples=2)


@pytest.mark.parametrize("options,message", [
    ({"temperature": 10**400}, "temperature must be a positive number, not 1000"),
    ({"temperature": True}, "temperature must be a positive number, not True"),
    ({"top_p": np.float32(np.nan)}, r"top-p must be in \(0, 1\], not np.float32\(nan\)"),
    ({"top_k": np.float64(2.0)}, r"top-k must be a positive integer, not np.float64\(2.0\)"),
])
def test_bad_option_messages(options, message):
    with pytest.raises(ConfigError, match="^" + message):
        Stream(make_model("rnn"), 10, **options)


@pytest.mark.parametrize("length", [-1, 2.0, None])
def test_bad_length_raises_config_error(length):
    with pytest.raises(ConfigError, match="length"):
        sample(make_model("rnn"), length)


def test_a_model_without_vocabulary_cannot_sample_text_but_can_step():
    model = CharRNN(ModelConfig(cell="gru", vocab_size=7, hidden_size=8, num_layers=1))
    with pytest.raises(ConfigError, match="vocabulary"):
        sample(model, 5)
    assert Stepper(model, 2).step(np.array([1, 2])).shape == (2, 7)
    with pytest.raises(ValueError, match="prime ids"):
        Stepper(model, 2).prime(np.zeros((3, 4), int))
