"""Optimisers and clipping: convergence, exact hand-computed steps, state round trips, dtypes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from charrnn.config import OPTIMIZERS
from charrnn.errors import CheckpointError, ConfigError
from charrnn.optim import (
    SGD,
    Adagrad,
    Adam,
    Optimizer,
    RMSprop,
    clip_grad_norm,
    clipped_gradients,
    global_norm,
    make_optimizer,
    optimizer_class,
)

SHAPES = {"layers.0.W_x": (3, 4), "layers.0.b": (4,), "head.W": (2, 3)}
#: learning rate and steps that bring each optimiser to the minimum of the quadratic below
SETTINGS = {"adam": (0.05, 500), "rmsprop": (0.01, 500), "adagrad": (0.5, 500), "sgd": (0.1, 200)}


class Quadratic:
    """f(p) = 0.5 * sum(A * (p - p*)^2) over a few named arrays; gradient A * (p - p*)."""

    def __init__(self, dtype=np.float64, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.A = {k: rng.uniform(0.5, 2.0, s).astype(dtype) for k, s in SHAPES.items()}
        self.target = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
        self.dtype = dtype

    def start(self) -> dict[str, np.ndarray]:
        return {k: np.zeros(s, self.dtype) for k, s in SHAPES.items()}

    def loss(self, p) -> float:
        return sum(0.5 * float(np.sum(self.A[k] * (p[k] - self.target[k]) ** 2)) for k in p)

    def grad(self, p) -> dict[str, np.ndarray]:
        return {k: self.A[k] * (p[k] - self.target[k]) for k in p}


def run(opt: Optimizer, q: Quadratic, p, steps: int, lr: float) -> None:
    for _ in range(steps):
        opt.step(p, q.grad(p), lr)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_reaches_the_minimum_of_a_quadratic(name):
    q = Quadratic()
    p = q.start()
    before = q.loss(p)
    lr, steps = SETTINGS[name]
    run(make_optimizer(name, p), q, p, steps, lr)
    assert before > 1.0
    assert q.loss(p) < 1e-6 * before
    for k in p:
        np.testing.assert_allclose(p[k], q.target[k], atol=1e-3)


# Two steps from p0 = [1, -2] with g1 = [0.5, -4], then g2 = [-1, 2], lr = 0.1; the expected
# values are the update rules worked out by hand for each coordinate.
P0, G1, G2, LR = [1.0, -2.0], [0.5, -4.0], [-1.0, 2.0], 0.1


def _adam_expected():
    # step 1: m = 0.1 g, v = 0.001 g^2, m_hat = g, v_hat = g^2 -> p -= lr * g / (|g| + eps)
    p1 = [1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 * 4.0 / (4.0 + 1e-8)]
    # step 2: m = 0.9 m + 0.1 g2, v = 0.999 v + 0.001 g2^2, bias terms 1-0.9^2, 1-0.999^2
    m = [0.9 * 0.05 + 0.1 * -1.0, 0.9 * -0.4 + 0.1 * 2.0]  # [-0.055, -0.16]
    v = [0.999 * 0.00025 + 0.001 * 1.0, 0.999 * 0.016 + 0.001 * 4.0]  # [0.00124975, 0.019984]
    bc1, bc2 = 0.19, 0.001999
    p2 = [p1[i] - 0.1 * (m[i] / bc1) / (math.sqrt(v[i] / bc2) + 1e-8) for i in range(2)]
    return p1, p2


def _rmsprop_expected():
    ms1 = [0.05 * 0.25, 0.05 * 16.0]  # 0.95 * 0 + 0.05 g1^2
    p1 = [1.0 - 0.1 * 0.5 / (math.sqrt(ms1[0]) + 1e-8),
          -2.0 + 0.1 * 4.0 / (math.sqrt(ms1[1]) + 1e-8)]
    ms2 = [0.95 * ms1[0] + 0.05 * 1.0, 0.95 * ms1[1] + 0.05 * 4.0]
    p2 = [p1[0] + 0.1 * 1.0 / (math.sqrt(ms2[0]) + 1e-8),
          p1[1] - 0.1 * 2.0 / (math.sqrt(ms2[1]) + 1e-8)]
    return p1, p2


def _adagrad_expected():
    p1 = [1.0 - 0.1 * 0.5 / math.sqrt(0.25 + 1e-8), -2.0 + 0.1 * 4.0 / math.sqrt(16.0 + 1e-8)]
    mem2 = [0.25 + 1.0, 16.0 + 4.0]
    p2 = [p1[0] + 0.1 * 1.0 / math.sqrt(mem2[0] + 1e-8),
          p1[1] - 0.1 * 2.0 / math.sqrt(mem2[1] + 1e-8)]
    return p1, p2


def _sgd_expected():
    # v1 = g1 = [0.5, -4] -> p1 = [0.95, -1.6]; v2 = 0.9 v1 + g2 = [-0.55, -1.6] -> p2
    return [0.95, -1.6], [0.95 + 0.055, -1.6 + 0.16]


@pytest.mark.parametrize(
    "cls, expected",
    [(Adam, _adam_expected), (RMSprop, _rmsprop_expected),
     (Adagrad, _adagrad_expected), (SGD, _sgd_expected)],
)
def test_one_exact_step_matches_the_update_rule(cls, expected):
    p = {"w": np.array(P0)}
    w = p["w"]
    opt = cls(p)
    p1, p2 = expected()
    opt.step(p, {"w": np.array(G1)}, LR)
    np.testing.assert_allclose(p["w"], p1, rtol=1e-13, atol=0)
    opt.step(p, {"w": np.array(G2)}, LR)
    np.testing.assert_allclose(p["w"], p2, rtol=1e-13, atol=0)
    assert p["w"] is w  # updated in place
    assert opt.t == 2


def test_adam_first_step_moves_each_coordinate_by_about_lr():
    p = {"w": np.array([3.0, -7.0, 0.0])}
    Adam(p).step(p, {"w": np.array([1e-3, -50.0, 0.0])}, 0.01)
    np.testing.assert_allclose(p["w"], [2.99, -6.99, 0.0], rtol=1e-7)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_dict_round_trip_continues_bit_identically(name, tmp_path):
    q = Quadratic(np.float32)
    lr = SETTINGS[name][0]
    p = q.start()
    opt = make_optimizer(name, p)
    run(opt, q, p, 10, lr)
    saved_state = opt.state_dict()
    saved_params = {k: v.copy() for k, v in p.items()}
    run(opt, q, p, 10, lr)

    # through an .npz without pickle, as a checkpoint would store it
    np.savez(tmp_path / "opt.npz", **saved_state)
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as f:
        loaded = {k: f[k] for k in f.files}
    fresh = make_optimizer(name, saved_params)
    fresh.load_state_dict(loaded)
    assert fresh.t == 10
    run(fresh, q, saved_params, 10, lr)

    for k in p:
        assert np.array_equal(p[k], saved_params[k])
    final, resumed = opt.state_dict(), fresh.state_dict()
    assert final.keys() == resumed.keys()
    for k in final:
        assert np.array_equal(final[k], resumed[k])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_dict_is_a_copy(name):
    q = Quadratic()
    p = q.start()
    opt = make_optimizer(name, p)
    run(opt, q, p, 3, 0.01)
    d = opt.state_dict()
    before = {k: v.copy() for k, v in d.items()}
    run(opt, q, p, 3, 0.01)
    for k in d:
        assert np.array_equal(d[k], before[k])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_shapes_describe_state_dict(name):
    p = Quadratic().start()
    d = make_optimizer(name, p).state_dict()
    shapes = optimizer_class(name).state_shapes(SHAPES)
    assert list(shapes) == list(d)
    assert {k: v.shape for k, v in d.items()} == shapes
    assert d["t"].dtype == np.int64 and d["t"].shape == () and int(d["t"]) == 0
    assert all(k == "t" or k.split("/", 1)[1] in SHAPES for k in d)


def test_state_names():
    assert set(Adam.state_shapes({"a": (2,)})) == {"m/a", "v/a", "t"}
    assert set(RMSprop.state_shapes({"a": (2,)})) == {"ms/a", "t"}
    assert set(Adagrad.state_shapes({"a": (2,)})) == {"mem/a", "t"}
    assert set(SGD.state_shapes({"a": (2,)})) == {"v/a", "t"}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_float32_stays_float32(name):
    q = Quadratic(np.float32)
    p = q.start()
    opt = make_optimizer(name, p)
    run(opt, q, p, 5, 0.01)
    assert all(v.dtype == np.float32 for v in p.values())
    assert all(v.dtype == np.float32 for k, v in opt.state_dict().items() if k != "t")
    # and it follows the same path as float64, to float32 precision
    q64 = Quadratic(np.float64)
    p64 = q64.start()
    run(make_optimizer(name, p64), q64, p64, 5, 0.01)
    for k in p:
        np.testing.assert_allclose(p[k], p64[k], rtol=1e-4, atol=1e-5)


def test_make_optimizer_names():
    p = {"w": np.zeros(2)}
    kinds = {"adam": Adam, "rmsprop": RMSprop, "adagrad": Adagrad, "sgd": SGD}
    for name in OPTIMIZERS:
        assert type(make_optimizer(name, p)) is kinds[name]
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        make_optimizer("adamw", p)


def test_hyperparameters_can_be_overridden_by_keyword():
    p = {"w": np.array([1.0])}
    opt = SGD(p, momentum=0.5)
    opt.step(p, {"w": np.array([1.0])}, 0.1)
    opt.step(p, {"w": np.array([1.0])}, 0.1)  # v = 0.5 * 1 + 1 = 1.5
    assert p["w"].tolist() == pytest.approx([1.0 - 0.1 - 0.15], rel=1e-15)
    assert Adam.b2 == 0.999 and Adam(p, b2=0.99).b2 == 0.99
    with pytest.raises(TypeError, match="no hyperparameter 'beta'"):
        Adam(p, beta=0.5)


def _trained_adam():
    q = Quadratic()
    p = q.start()
    opt = Adam(p)
    run(opt, q, p, 3, 0.01)
    return opt, opt.state_dict()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("m/head.W"), "missing m/head.W"),
        (lambda d: d.pop("t"), "missing t"),
        (lambda d: d.update({"m/extra": np.zeros(2)}), "unexpected m/extra"),
        (lambda d: d.update({"v/layers.0.b": np.zeros(5)}), r"v/layers.0.b has shape \(5,\)"),
        (lambda d: d.update({"m/head.W": np.zeros((3, 2))}), r"expected \(2, 3\)"),
        (lambda d: d.update({"t": np.array([3, 4])}), "step count"),
        (lambda d: d.update({"t": np.array(-1)}), "step count"),
        (lambda d: d.update({"t": np.array(2.0)}), "step count"),
        (lambda d: d["m/head.W"].__setitem__((0, 0), np.nan), "finite"),
        (lambda d: d.update({"m/head.W": np.zeros((2, 3), np.int64)}), "floating"),
        (lambda d: d["v/head.W"].__setitem__((0, 0), -1.0), "negative"),
    ],
)
def test_load_state_dict_rejects_what_does_not_fit(change, message):
    opt, d = _trained_adam()
    before = opt.state_dict()
    bad = {k: v.copy() for k, v in d.items()}
    change(bad)
    with pytest.raises(CheckpointError, match=message):
        opt.load_state_dict(bad)
    after = opt.state_dict()  # nothing was half-loaded
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_load_state_dict_rejects_another_optimizers_state():
    p = Quadratic().start()
    with pytest.raises(CheckpointError, match="SGD optimizer state does not fit"):
        SGD(p).load_state_dict(Adam(p).state_dict())


def _grads(dtype=np.float64, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return {k: (scale * rng.standard_normal(s)).astype(dtype) for k, s in SHAPES.items()}


def test_global_norm_is_the_norm_of_everything():
    g = _grads()
    flat = np.concatenate([v.ravel() for v in g.values()])
    assert global_norm(g) == pytest.approx(math.sqrt(sum(x * x for x in flat.tolist())), rel=1e-14)
    assert global_norm({"a": np.array([3.0]), "b": np.array([[4.0]])}) == 5.0
    assert global_norm({}) == 0.0


def test_global_norm_of_float32_accumulates_in_float64():
    big = {"a": np.full(100_003, 3e20, np.float32)}  # squares overflow float32
    expected = float(np.float32(3e20)) * math.sqrt(100_003)
    assert global_norm(big) == pytest.approx(expected, rel=1e-12)
    rng = np.random.default_rng(0)
    g = {"a": rng.standard_normal(300_001).astype(np.float32)}
    exact = math.sqrt(float(np.sum(g["a"].astype(np.float64) ** 2)))
    assert global_norm(g) == pytest.approx(exact, rel=1e-13)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 1e-6)])
def test_clipping_rescales_to_max_norm_when_above(dtype, rtol):
    g = _grads(dtype, scale=10.0)
    orig = {k: v.copy() for k, v in g.items()}
    norm = clip_grad_norm(g, 1.5)
    assert norm == pytest.approx(global_norm(orig), rel=1e-15)
    assert norm > 1.5
    assert global_norm(g) == pytest.approx(1.5, rel=rtol)
    for k in g:
        assert g[k].dtype == dtype
        np.testing.assert_allclose(g[k], orig[k] * (1.5 / norm), rtol=rtol)


@pytest.mark.parametrize("max_norm", [1e6, 0.0])
def test_clipping_leaves_grads_under_the_limit_or_when_off_bit_identical(max_norm):
    g = _grads(np.float32, scale=1e3 if max_norm == 0 else 1.0)
    orig = {k: v.tobytes() for k, v in g.items()}
    norm = clip_grad_norm(g, max_norm)
    assert norm == global_norm(g)
    assert {k: v.tobytes() for k, v in g.items()} == orig


def test_clipping_at_exactly_the_limit_does_nothing():
    g = {"a": np.array([3.0, 4.0])}
    assert clip_grad_norm(g, 5.0) == 5.0
    assert g["a"].tolist() == [3.0, 4.0]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_norm_is_returned_and_grads_untouched(bad):
    g = _grads(scale=100.0)
    g["layers.0.b"][2] = bad
    orig = {k: v.tobytes() for k, v in g.items()}
    norm = clip_grad_norm(g, 1.0)
    assert not math.isfinite(norm)
    assert math.isnan(norm) if math.isnan(bad) else norm == math.inf
    assert {k: v.tobytes() for k, v in g.items()} == orig


class _Window:
    """loss_and_grad's contract: (loss, gradients, hidden) for a window; records its inputs."""

    def __init__(self, loss: float, grads: dict[str, np.ndarray]) -> None:
        self.loss, self.grads, self.seen = loss, grads, None

    def loss_and_grad(self, x, y, hidden, rng):
        self.seen = (x, y, hidden, rng)
        return self.loss, self.grads, "next hidden"


def test_clipped_gradients_clips_the_windows_gradients_and_passes_the_state_on():
    g = _grads(scale=10.0)
    before = global_norm(g)
    model, rng = _Window(1.25, g), np.random.default_rng(0)
    loss, grads, norm, hidden = clipped_gradients(model, "x", "y", "hidden", rng, 2.0)
    assert model.seen == ("x", "y", "hidden", rng)
    assert (loss, hidden, norm) == (1.25, "next hidden", before) and before > 2.0
    assert grads is g and global_norm(g) == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_clipped_gradients_of_a_non_finite_loss_are_untouched_with_a_nan_norm(bad):
    g = _grads(scale=10.0)
    orig = {k: v.tobytes() for k, v in g.items()}
    loss, _, norm, _ = clipped_gradients(_Window(bad, g), None, None, None, None, 1.0)
    assert not math.isfinite(loss) and math.isnan(norm)
    assert {k: v.tobytes() for k, v in g.items()} == orig


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_weight_decay_first_shrinks_the_matrices_by_lr_times_it_and_leaves_the_biases(name):
    rng = np.random.default_rng(0)
    p = {n: rng.standard_normal(s) for n, s in SHAPES.items()}
    before = {n: a.copy() for n, a in p.items()}
    zero = {n: np.zeros(s) for n, s in SHAPES.items()}  # no gradient: every update is 0
    make_optimizer(name, p, weight_decay=0.5).step(p, zero, 0.1)
    for n, a in p.items():
        expected = before[n] * (1 - 0.1 * 0.5) if a.ndim == 2 else before[n]
        np.testing.assert_array_equal(a, expected)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_weight_decay_is_decoupled_from_the_gradient_update(name):
    """p' = (1 - lr wd) p - update(g): the update is the one without decay, bit for bit."""
    rng = np.random.default_rng(1)
    p = {n: rng.standard_normal(s) for n, s in SHAPES.items()}
    g = {n: rng.standard_normal(s) for n, s in SHAPES.items()}
    plain, decayed = ({n: a.copy() for n, a in p.items()} for _ in range(2))
    make_optimizer(name, plain).step(plain, g, 0.01)
    make_optimizer(name, decayed, weight_decay=2.0).step(decayed, g, 0.01)
    for n, a in p.items():
        shrink = 1 - 0.01 * 2.0 if a.ndim == 2 else 1.0
        np.testing.assert_allclose(decayed[n], plain[n] - a + a * shrink, rtol=1e-12,
                                   atol=1e-15)
