"""Float64 finite-difference checks of backpropagation through time, cell by cell and whole."""

import numpy as np
import pytest

from charrnn.cells import CELLS
from charrnn.config import ModelConfig
from charrnn.model import CharRNN, softmax_cross_entropy

EPS = 1e-6
TOL = 1e-6


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| relative to the larger of the two arrays' magnitudes."""
    scale = max(np.abs(a).max(), np.abs(b).max(), 1e-8)
    return float(np.abs(a - b).max() / scale)


def numeric_grad(f, x: np.ndarray) -> np.ndarray:
    """Central differences of the scalar f() with respect to every entry of x (in place)."""
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + EPS
        up = f()
        x[idx] = old - EPS
        down = f()
        x[idx] = old
        g[idx] = (up - down) / (2 * EPS)
    return g


def cell_problem(name, T=5, B=3, H=4, seed=0):
    rng = np.random.default_rng(seed)
    cell = CELLS[name]
    params = {"W_h": rng.normal(0, 0.6, (H, cell.gates * H))}
    if name == "gru":
        params["b_hn"] = rng.normal(0, 0.5, H)
    xw = rng.normal(0, 1.0, (T, B, cell.gates * H))
    state = tuple(rng.normal(0, 0.5, (B, H)) for _ in range(cell.state_parts))
    # a random linear read-out of every output and of the final state makes the loss
    dhs = rng.normal(0, 1, (T, B, H))
    dfinal = tuple(rng.normal(0, 1, (B, H)) for _ in range(cell.state_parts))
    return cell, params, xw, state, dhs, dfinal


def cell_loss(cell, params, xw, state, dhs, dfinal):
    hs, final, _ = cell.forward(xw, state, params)
    return float((hs * dhs).sum() + sum((f * d).sum() for f, d in zip(final, dfinal, strict=True)))


def check_cell(name, backward=None):
    """Worst relative error over dxw, the initial state and every weight of one cell."""
    cell, params, xw, state, dhs, dfinal = cell_problem(name)
    _, _, cache = cell.forward(xw, state, params)
    dxw, dstate, dparams = (backward or cell.backward)(dhs, dfinal, cache)

    def f():
        return cell_loss(cell, params, xw, state, dhs, dfinal)

    errors = [rel_error(numeric_grad(f, xw), dxw)]
    errors += [rel_error(numeric_grad(f, s), ds) for s, ds in zip(state, dstate, strict=True)]
    errors += [rel_error(numeric_grad(f, params[k]), dparams[k]) for k in params]
    assert set(dparams) == set(params)
    return max(errors)


@pytest.mark.parametrize("name", ["rnn", "gru", "lstm"])
def test_cell_gradients_match_finite_differences(name):
    assert check_cell(name) < TOL


def test_checker_catches_a_planted_bug():
    """Drop the recurrent term of the RNN's backward pass: the check must fail loudly."""
    rnn = CELLS["rnn"]

    def truncated_backward(dhs, dfinal, cache):
        hs, W_h, _ = cache
        deriv = 1.0 - hs[1:] ** 2
        dpre = dhs * deriv  # bug: no gradient flows back through time
        dW_h = np.einsum("tbi,tbj->ij", hs[:-1], dpre)
        return dpre, (dpre[0] @ W_h.T,), {"W_h": dW_h}

    assert check_cell("rnn") < TOL
    assert check_cell("rnn", truncated_backward) > 1e-2
    assert rnn.backward is not truncated_backward


def model_problem(cell, dropout, seed=1):
    cfg = ModelConfig(cell=cell, vocab_size=5, hidden_size=4, num_layers=2, dropout=dropout)
    model = CharRNN(cfg, dtype=np.float64, seed=seed)
    rng = np.random.default_rng(seed + 10)
    for p in model.params.values():  # move away from the tidy initial values (zero biases)
        p += rng.normal(0, 0.3, p.shape)
    B, T = 3, 6
    ids = rng.integers(0, 5, (B, T))
    targets = rng.integers(0, 5, (B, T))
    state = rng.normal(0, 0.5, model.initial_state(B).shape)
    dfinal = rng.normal(0, 1, state.shape)
    return model, ids, targets, state, dfinal


@pytest.mark.parametrize("dropout", [0.0, 0.4], ids=["no-dropout", "fixed-mask"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_two_layer_model_gradients(cell, dropout):
    """Loss = cross-entropy + a read-out of the final state, so the carried state is checked."""
    model, ids, targets, state, dfinal = model_problem(cell, dropout)

    def run():
        # the same seed each call gives the same dropout masks: a fixed mask
        rng = np.random.default_rng(99) if dropout else None
        logits, final, cache = model.forward(ids, state, rng)
        losses = softmax_cross_entropy(logits, targets.T.reshape(-1))
        return losses.mean() + (final * dfinal).sum(), logits, cache

    _, dlogits, cache = run()
    grads, dstate = model.backward(dlogits, cache, dfinal)
    assert set(grads) == set(model.params)
    for name, p in model.params.items():
        assert rel_error(numeric_grad(lambda: run()[0], p), grads[name]) < TOL, name
    assert rel_error(numeric_grad(lambda: run()[0], state), dstate) < TOL


def test_dropout_masks_differ_between_calls_and_are_off_without_rng():
    model, ids, targets, state, _ = model_problem("lstm", 0.5)
    rng = np.random.default_rng(0)
    a = model.forward(ids, state, rng)[0]
    b = model.forward(ids, state, rng)[0]
    c = model.forward(ids, state)[0]
    d = model.forward(ids, state)[0]
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(c, d)
