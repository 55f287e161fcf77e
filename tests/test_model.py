"""Forward values from the equations, initial loss, memorisation, and the package's layout."""

import ast
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from charrnn.cells import CELLS
from charrnn.config import ModelConfig
from charrnn.errors import ConfigError
from charrnn.model import CharRNN, softmax_cross_entropy
from charrnn.optim import clip_grad_norm, make_optimizer


def sig(a):
    return 1 / (1 + math.exp(-a))


def test_rnn_forward_by_hand():
    # H = 1: h_t = tanh(xw_t + h_{t-1} * w)
    xw = np.array([[[0.3]], [[-0.2]]])
    hs, (h,), _ = CELLS["rnn"].forward(xw, (np.array([[0.1]]),), {"W_h": np.array([[0.5]])})
    h1 = math.tanh(0.3 + 0.1 * 0.5)
    h2 = math.tanh(-0.2 + h1 * 0.5)
    np.testing.assert_allclose(hs[:, 0, 0], [h1, h2], rtol=1e-12)
    np.testing.assert_allclose(h[0, 0], h2, rtol=1e-12)


def test_gru_forward_by_hand():
    # H = 1, blocks r z n; xw = (0.2, -0.1, 0.4), W_h = (0.3, 0.5, -0.6), b_hn = 0.05, h = 0.5
    xw = np.array([[[0.2, -0.1, 0.4]]])
    params = {"W_h": np.array([[0.3, 0.5, -0.6]]), "b_hn": np.array([0.05])}
    hs, (h,), _ = CELLS["gru"].forward(xw, (np.array([[0.5]]),), params)
    r = sig(0.2 + 0.5 * 0.3)
    z = sig(-0.1 + 0.5 * 0.5)
    n = math.tanh(0.4 + r * (0.5 * -0.6 + 0.05))
    expected = (1 - z) * n + z * 0.5
    np.testing.assert_allclose(hs[0, 0, 0], expected, rtol=1e-12)
    np.testing.assert_allclose(h[0, 0], expected, rtol=1e-12)


def test_lstm_forward_by_hand():
    # H = 1, blocks i f g o; two steps from h = 0.2, c = -0.3
    xw = np.array([[[0.1, 0.7, -0.4, 0.2]], [[-0.3, 0.2, 0.5, 0.0]]])
    W = [0.4, -0.2, 0.3, 0.6]
    hs, (h, c), _ = CELLS["lstm"].forward(xw, (np.array([[0.2]]), np.array([[-0.3]])),
                                          {"W_h": np.array([W])})
    hp, cp = 0.2, -0.3
    expected = []
    for t in range(2):
        a = [xw[t, 0, k] + hp * W[k] for k in range(4)]
        i, f, g, o = sig(a[0]), sig(a[1]), math.tanh(a[2]), sig(a[3])
        cp = f * cp + i * g
        hp = o * math.tanh(cp)
        expected.append(hp)
    np.testing.assert_allclose(hs[:, 0, 0], expected, rtol=1e-12)
    np.testing.assert_allclose([h[0, 0], c[0, 0]], [hp, cp], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_saturated_gates_reach_their_limits_without_warnings(cell, dtype):
    # pre-activations of +-1000 overflow exp(-a) in both dtypes: the gates must still be
    # exactly 0 or 1 (g exactly -1 or 1), and no gradient passes a saturated gate
    G = CELLS[cell].gates
    xw = np.array([[[1000.0] * G], [[-1000.0] * G]], dtype=dtype)
    params = {"W_h": np.full((1, G), 0.5, dtype)}  # adds at most 0.5: the gates stay saturated
    if cell == "gru":
        params["b_hn"] = np.zeros(1, dtype)
    state = tuple(np.full((1, 1), 0.5, dtype) for _ in range(CELLS[cell].state_parts))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        hs, final, cache = CELLS[cell].forward(xw, state, params)
        dxw, _, _ = CELLS[cell].backward(np.ones_like(hs), None, cache)
    expected = {
        # step 1: r = z = 1, n = tanh(1000) = 1 -> h = z*h + (1-z)*n = 0.5;
        # step 2: r = z = 0, n = tanh(-1000) = -1 -> h = -1
        "gru": [0.5, -1.0],
        # step 1: i = f = o = 1, g = 1 -> c = 0.5 + 1, h = tanh(1.5); step 2: all 0 -> h = 0
        "lstm": [math.tanh(1.5), 0.0],
    }[cell]
    np.testing.assert_allclose(hs[:, 0, 0], expected, rtol=1e-6)
    assert (dxw == 0).all()  # every gate saturated: no gradient reaches a pre-activation


def test_lstm_keeps_float32_precision_for_small_pre_activations():
    # c' = i * g from c = 0: g = tanh(a_g) must keep its relative precision for tiny a_g
    # (2 s(2a) - 1, which cancels near 0, would be off by up to 100% at a_g = 1e-7)
    a_g = np.array([1e-7, -3e-6, 1e-4, 0.02], np.float32)
    B = len(a_g)
    xw = np.zeros((1, B, 4), np.float32)
    xw[0, :, 2] = a_g
    zeros = np.zeros((B, 1), np.float32)
    _, (h, c), _ = CELLS["lstm"].forward(xw, (zeros, zeros), {"W_h": np.zeros((1, 4), np.float32)})
    expected = 0.5 * np.tanh(a_g.astype(np.float64))  # i = s(0) = 1/2
    np.testing.assert_allclose(c[:, 0], expected, rtol=2e-7)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_backward_refuses_a_used_or_forward_only_cache(cell):
    m = CharRNN(ModelConfig(cell=cell, vocab_size=5, hidden_size=4, num_layers=2))
    ids = np.array([[1, 2, 3], [0, 4, 2]])
    logits, _, cache = m.forward(ids)
    grads, _ = m.backward(logits.copy(), cache)
    assert set(grads) == set(m.params)
    with pytest.raises(ValueError, match="has used yet"):
        m.backward(logits.copy(), cache)
    logits, _, cache = m.forward(ids, for_backward=False)
    with pytest.raises(ValueError, match="for_backward=True"):
        m.backward(logits, cache)

    stale_logits, _, stale = m.forward(ids)
    m.forward(ids[:1])  # reuses the buffers stale's cache points into
    with pytest.raises(ValueError, match="latest forward"):
        m.backward(stale_logits, stale)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_scoring_from_two_threads_gives_the_sequential_results(cell):
    """Forward-only calls take no shared scratch, so threads may score with one model (each
    call on one BLAS thread, so that the calls are the same computation: OpenBLAS may run a
    call made while another is running on fewer threads)."""
    import threading

    from charrnn.blas import one_thread

    m = CharRNN(ModelConfig(cell=cell, vocab_size=20, hidden_size=64, num_layers=2))
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 20, (16, 64)), rng.integers(0, 20, (16, 64))) for _ in range(2)]
    got = [[], []]

    def score(k):
        for _ in range(10):
            got[k].append(m.losses(*batches[k])[0])

    threads = [threading.Thread(target=score, args=(k,)) for k in range(2)]
    with one_thread():
        expected = [m.losses(ids, targets)[0] for ids, targets in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for k in range(2):
        for losses in got[k]:
            np.testing.assert_array_equal(losses, expected[k])


def _grads(model, ids, targets, dropout_seed=None):
    rng = None if dropout_seed is None else np.random.default_rng(dropout_seed)
    return model.loss_and_grad(ids, targets, rng=rng)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_reused_buffers_carry_nothing_from_call_to_call(cell):
    """A model's scratch arrays are kept between calls: whatever ran before (other shapes,
    scoring without backward, a hidden-state read), a step gives exactly what a fresh model
    gives, and arrays handed out earlier are not overwritten."""
    cfg = ModelConfig(cell=cell, vocab_size=7, hidden_size=6, num_layers=2, dropout=0.25)
    rng = np.random.default_rng(3)
    ids, targets = rng.integers(0, 7, (4, 9)), rng.integers(0, 7, (4, 9))
    fresh = _grads(CharRNN(cfg, seed=5), ids, targets, dropout_seed=11)

    used = CharRNN(cfg, seed=5)
    _grads(used, rng.integers(0, 7, (6, 12)), rng.integers(0, 7, (6, 12)), dropout_seed=1)
    read = used.hidden_states(ids[:2])
    read_copy = [h.copy() for h in read]
    _grads(used, rng.integers(0, 7, (2, 3)), rng.integers(0, 7, (2, 3)))
    logits, state, cache = used.forward(ids, rng=np.random.default_rng(11))
    used.losses(rng.integers(0, 7, (5, 10)), rng.integers(0, 7, (5, 10)))  # between the two
    losses = softmax_cross_entropy(logits, np.ascontiguousarray(targets.T).reshape(-1))
    grads, _ = used.backward(logits, cache)

    assert float(losses.mean()) == fresh[0]
    for name, g in fresh[1].items():
        np.testing.assert_array_equal(grads[name], g, err_msg=name)
    np.testing.assert_array_equal(state, fresh[2])
    for h, h0 in zip(read, read_copy, strict=True):
        np.testing.assert_array_equal(h, h0)

def test_model_stacks_layers_by_hand():
    """One RNN layer of H=1 on a one-hot input, then the head: logits by hand."""
    cfg = ModelConfig(cell="rnn", vocab_size=2, hidden_size=1, num_layers=1)
    params = {"layers.0.W_x": np.array([[0.5], [-1.0]]), "layers.0.W_h": np.array([[0.8]]),
              "layers.0.b": np.array([0.1]), "head.W": np.array([[2.0, -1.0]]),
              "head.b": np.array([0.0, 0.3])}
    m = CharRNN(cfg, params, dtype=np.float64)
    logits, state, _ = m.forward(np.array([[1, 0]]))
    h1 = math.tanh(-1.0 + 0.1)
    h2 = math.tanh(0.5 + 0.1 + 0.8 * h1)
    np.testing.assert_allclose(logits, [[2 * h1, -h1 + 0.3], [2 * h2, -h2 + 0.3]], rtol=1e-12)
    np.testing.assert_allclose(state[0, 0, 0, 0], h2, rtol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_fresh_model_loss_is_near_log_vocab(cell):
    V = 65
    m = CharRNN(ModelConfig(cell=cell, vocab_size=V, hidden_size=128, num_layers=2), seed=3)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, (16, 50))
    loss, _ = m.losses(ids, rng.integers(0, V, (16, 50)))
    assert abs(loss.mean() - math.log(V)) < 0.05


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_two_layer_model_memorises_a_string(cell):
    """Full-batch BPTT over a fixed 200-character string drives the loss below 0.05."""
    rng = np.random.default_rng(0)
    text = rng.integers(0, 20, 201)
    ids, targets = text[None, :-1], text[None, 1:]
    m = CharRNN(ModelConfig(cell=cell, vocab_size=20, hidden_size=64, num_layers=2), seed=0)
    opt = make_optimizer("adam", m.params)
    for _ in range(400):
        loss, grads, _ = m.loss_and_grad(ids, targets)
        if loss < 0.05:
            break
        clip_grad_norm(grads, 5.0)
        opt.step(m.params, grads, 1e-2)
    assert loss < 0.05


def test_float32_by_default_and_float64_on_request():
    cfg = ModelConfig(cell="gru", vocab_size=7, hidden_size=8, num_layers=2)
    m32 = CharRNN(cfg)
    m64 = CharRNN(cfg, dtype=np.float64)
    assert {p.dtype for p in m32.params.values()} == {np.dtype(np.float32)}
    assert {p.dtype for p in m64.params.values()} == {np.dtype(np.float64)}
    logits, state, _ = m32.forward(np.zeros((2, 3), np.uint8))
    assert logits.dtype == np.float32 and state.dtype == np.float32
    loss, grads, _ = m32.loss_and_grad(np.zeros((2, 3), int), np.ones((2, 3), int))
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}


def test_parameter_count_and_state_shape():
    cfg = ModelConfig(cell="lstm", vocab_size=65, hidden_size=256, num_layers=2)
    m = CharRNN(cfg)
    # layer 0: 65*1024 + 256*1024 + 1024; layer 1: 2 * 256*1024 + 1024; head 256*65 + 65
    expected = 65 * 1024 + 256 * 1024 + 1024 + 2 * 256 * 1024 + 1024 + 256 * 65 + 65
    assert m.num_parameters == expected == cfg.num_parameters()
    assert m.initial_state(7).shape == (2, 2, 7, 256)
    b = m.params["layers.0.b"]
    assert np.all(b[256:512] == 1) and np.all(b[:256] == 0) and np.all(b[512:] == 0)


def test_recurrent_blocks_start_orthogonal():
    m = CharRNN(ModelConfig(cell="gru", vocab_size=5, hidden_size=16, num_layers=1), seed=2)
    W = m.params["layers.0.W_h"].astype(np.float64)
    for k in range(3):
        block = W[:, 16 * k:16 * (k + 1)]
        np.testing.assert_allclose(block.T @ block, np.eye(16), atol=1e-5)


def test_carried_state_equals_one_long_sequence():
    """Two windows with the state carried give the same logits as one window of both."""
    m = CharRNN(ModelConfig(cell="lstm", vocab_size=9, hidden_size=8, num_layers=2),
                dtype=np.float64)
    ids = np.random.default_rng(1).integers(0, 9, (3, 10))
    whole, _, _ = m.forward(ids)
    first, state, _ = m.forward(ids[:, :4])
    second, _, _ = m.forward(ids[:, 4:], state)
    T = lambda x, t: x.reshape(t, 3, 9)  # noqa: E731 - time-major (T*B, V) -> (T, B, V)
    np.testing.assert_allclose(T(whole, 10), np.concatenate([T(first, 4), T(second, 6)]),
                               rtol=1e-12)


def test_bad_parameters_are_refused():
    cfg = ModelConfig(cell="rnn", vocab_size=3, hidden_size=2, num_layers=1)
    good = CharRNN(cfg).params
    with pytest.raises(ConfigError, match="shape"):
        CharRNN(cfg, {**good, "head.b": np.zeros((1, 3))})
    with pytest.raises(ConfigError, match="do not match"):
        CharRNN(cfg, {k: v for k, v in good.items() if k != "head.W"})


def test_ids_must_be_batch_by_time():
    cfg = ModelConfig(cell="rnn", vocab_size=3, hidden_size=2, num_layers=1)
    model = CharRNN(cfg)
    with pytest.raises(ValueError, match=r"\(batch, time\) array, not of shape \(4,\)"):
        model.log_probs(np.array([0, 1, 2, 1]))
    assert model.log_probs(np.array([[0, 1, 2, 1]]))[0].shape == (1, 4, 3)


# ----------------------------------------------------------------------------- layout

PACKAGE = Path(__file__).resolve().parents[1] / "charrnn"
HOW_IT_WORKS = (PACKAGE.parent / "docs" / "how-it-works.md").read_text()


def _documented_imports() -> dict[str, set[str]]:
    """docs/how-it-works.md's table of who may import whom: cli on top, numpy at the bottom."""
    table = HOW_IT_WORKS[HOW_IT_WORKS.index("### The direction of imports"):]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|$", table, re.M)
    return {name: set() if may.strip() == "nothing of charrnn" else
            {m.strip() for m in may.split(",")} for name, may in rows}


ALLOWED = _documented_imports()
THIRD_PARTY = {"click": {"cli"}, "rich": {"display"}}


def _imports(path: Path):
    """Absolute names of what a module imports; relative imports resolved from its folder."""
    here = ["charrnn", *path.parent.relative_to(PACKAGE).parts]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                names = [node.module] if node.module else [a.name for a in node.names]
                yield from (".".join([*base, n]) for n in names)
            elif node.module:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def _module_files(module: str) -> list[Path]:
    """A module's source: its .py file, or every .py file of its package folder."""
    folder = PACKAGE / module
    return sorted(folder.glob("*.py")) if folder.is_dir() else [PACKAGE / f"{module}.py"]


def test_every_module_is_in_the_table_and_the_map_once():
    """The package map and the import table in docs/how-it-works.md name every module, and
    nothing else."""
    found = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir()
                                                       if (p / "__init__.py").exists()}
    assert found - {"__init__", "__main__"} == set(ALLOWED)
    block = HOW_IT_WORKS[HOW_IT_WORKS.index("## The package"):].split("```")[1]
    mapped = re.findall(r"^  (\w+)(?:\.py|/) ", block, re.M)
    assert sorted(mapped) == sorted(found)


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_imports_go_one_way(module):
    files = _module_files(module)
    assert all(f.exists() for f in files) and files, module
    for path in files:
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "charrnn":
                parts = name.split(".")
                inner = parts[1] if len(parts) > 1 else ""
                if inner == module and len(parts) > 2:  # within the package: it must exist
                    target = PACKAGE / module / parts[2]
                    assert target.with_suffix(".py").exists() or target.is_dir(), \
                        f"{path.name} ({module}) imports missing {name}"
                    continue
                if inner in ("", "__version__", module):
                    continue
                assert inner in ALLOWED[module], f"{path.name} ({module}) imports {inner}"
            elif top in THIRD_PARTY:
                assert module in THIRD_PARTY[top], f"{path.name} ({module}) imports {top}"
