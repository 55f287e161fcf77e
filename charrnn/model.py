"""CharRNN: one-hot input -> L stacked recurrent layers -> dropout -> linear head -> softmax.

Shapes: B batch, T time, V vocab, H hidden, G gate blocks, L layers, S state parts (LSTM 2:
h and c; RNN/GRU 1). Public ids are batch-first (B, T); inside, sequences are time-major.

    xw_0 = W_x^0[ids] + b^0                     (one-hot input: a row gather)
    hs_l = cell(xw_l, state_l)                  (T, B, H)
    xw_{l+1} = drop(hs_l) W_x^{l+1} + b^{l+1}   (one matmul over all T*B positions)
    logits = drop(hs_{L-1}) W + b               (T*B, V)
    loss = mean over positions of -log softmax(logits)[target]   (nats per character)

The recurrent state of the whole stack is one array of shape (L, S, B, H), so it can be
carried from window to window (truncated BPTT) and stored in a model file as it is.
"""

from __future__ import annotations

import numpy as np

from . import sampling
from .cells import CELLS, GATE_NAMES, SIGMOID_GATES, Workspace, gate_slice
from .config import ModelConfig
from .errors import ConfigError

# the parameters' gate layout (charrnn.cells'), for the modules that read it through the model
__all__ = ["GATE_NAMES", "SIGMOID_GATES", "CharRNN", "gate_slice", "init_params",
           "softmax_cross_entropy"]

EMBEDDING_STD = 0.4  # initial std of layer 0's input weights (see init_params)


def init_params(config: ModelConfig, rng: np.random.Generator, dtype=np.float32):
    """Fresh parameters.

    - W_h: each H x H gate block orthogonal, so the recurrence neither shrinks nor blows up
      the state at the start (singular values 1).
    - W_x above layer 0: uniform(+-1/sqrt(H)), as PyTorch does.
    - W_x of layer 0 (one row per character, the embedding): normal with std 0.4, whatever H.
      A one-hot input reaches a gate through a single weight, so PyTorch's +-1/sqrt(H) makes
      the input a whisper next to the recurrent term and the loss sits on the unigram plateau
      (~3.1) for a long time. Measured on the Sonnets, LSTM 2x128, Adam 2e-3, B=32, T=32:
      validation loss after 300 steps 2.35 with +-1/sqrt(H), 2.14 with std 0.4.
    - biases 0, except the LSTM forget gate (1), so the cell remembers by default.
    - head.W: uniform(+-1/sqrt(H)): the initial logits are small and the loss starts near ln V.
    """
    H, G = config.hidden_size, config.gates
    bound = 1.0 / np.sqrt(H)
    params = {}
    for name, shape in config.parameter_shapes().items():
        kind = name.rsplit(".", 1)[1]
        if kind == "W_h":
            blocks = [_orthogonal(H, rng) for _ in range(G)]
            value = np.concatenate(blocks, axis=1)
        elif name == "layers.0.W_x":
            value = rng.normal(0.0, EMBEDDING_STD, size=shape)
        elif kind in ("W_x", "W"):
            value = rng.uniform(-bound, bound, size=shape)
        else:
            value = np.zeros(shape)
            if config.cell == "lstm" and kind == "b":
                value[gate_slice("lstm", "f", width=H)] = 1.0
        params[name] = np.ascontiguousarray(value, dtype=dtype)
    return params


def _orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))  # sign fix makes the distribution uniform (Haar)


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray, need_grad: bool = True):
    """Mean cross-entropy of softmax(logits) against targets; turns logits into d(loss)/d(logits).

    logits (N, V) is overwritten: afterwards it holds ``(softmax - onehot) / N`` when need_grad
    (the gradient of the mean loss), otherwise the shifted exponentials. Returns the per-position
    losses -log p(target) as float64, shape (N,).
    """
    N = logits.shape[0]
    rows = np.arange(N)
    logits -= logits.max(axis=1, keepdims=True)
    target_logit = logits[rows, targets].astype(np.float64)
    np.exp(logits, out=logits)
    total = logits.sum(axis=1, keepdims=True)
    losses = np.log(total[:, 0], dtype=np.float64) - target_logit
    if need_grad:
        logits /= total
        logits[rows, targets] -= 1.0
        logits *= 1.0 / N
    return losses


class CharRNN:
    """A stacked character-level recurrent network; parameters are a flat dict of arrays.

    ``vocab`` (a ``charrnn.data.Vocab``) is optional: it is only needed to turn text into ids
    and back (sampling, evaluation on text).

    For training, the model keeps its large scratch arrays from step to step (see
    ``cells.Workspace``): one model must not train in two threads at once. Forward-only calls
    (``losses``, ``log_probs``, ``hidden_states``, sampling) only read it.
    """

    def __init__(self, config: ModelConfig, params=None, *, vocab=None, dtype=np.float32,
                 seed: int | np.random.Generator = 0):
        self.config = config
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ConfigError(f"dtype must be float32 or float64, not {self.dtype}")
        if vocab is not None and len(vocab) != config.vocab_size:
            raise ConfigError(f"vocabulary has {len(vocab)} characters but the model expects "
                              f"{config.vocab_size}")
        self.vocab = vocab
        if params is None:
            rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
            params = init_params(config, rng, self.dtype)
        else:
            shapes = config.parameter_shapes()
            if set(params) != set(shapes):
                raise ConfigError("parameters do not match the configuration: expected "
                                  f"{sorted(shapes)}, got {sorted(params)}")
            for name, shape in shapes.items():
                if params[name].shape != shape:
                    raise ConfigError(f"parameter {name} has shape {params[name].shape}, "
                                      f"expected {shape}")
            params = {k: np.ascontiguousarray(params[k], dtype=self.dtype) for k in shapes}
        self.params = params
        self.cell = CELLS[config.cell]
        # one workspace per layer, as the layers' caches live together until backward; one for
        # the input projection and the backward's dx, each dead once the next layer has it
        self._work = [Workspace() for _ in range(config.num_layers)]
        self._scratch = Workspace()
        self._generation = 0  # counts forwards for backward; a cache remembers its own

    @property
    def num_parameters(self) -> int:
        return sum(p.size for p in self.params.values())

    def initial_state(self, batch_size: int) -> np.ndarray:
        """Zero state for a batch: (L, S, B, H)."""
        c = self.config
        return np.zeros((c.num_layers, c.state_parts, batch_size, c.hidden_size), self.dtype)

    def _layer(self, layer: int) -> dict[str, np.ndarray]:
        p = self.params
        out = {"W_h": p[f"layers.{layer}.W_h"]}
        if self.config.cell == "gru":
            out["b_hn"] = p[f"layers.{layer}.b_hn"]
        return out

    def forward(self, ids: np.ndarray, state: np.ndarray | None = None,
                rng: np.random.Generator | None = None, *, for_backward: bool = True):
        """Logits for every position: ids (B, T) -> logits (T*B, V) time-major, new state, cache.

        Dropout is applied when ``rng`` is given (training) and the config's rate is above 0.
        With ``for_backward=False`` the cells keep nothing for a backward pass (faster); the
        cache then only holds the layers' inputs. ``backward`` consumes the cache, and only
        the latest forward's (a forward for backward reuses the buffers of the one before).
        """
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"ids must be a (batch, time) array, not of shape {ids.shape}")
        B, T = ids.shape
        c = self.config
        H, L = c.hidden_size, c.num_layers
        if state is None:
            state = self.initial_state(B)
        ids_tm = np.ascontiguousarray(ids.T)
        new_state = np.empty_like(state)
        if for_backward:
            self._generation += 1
        layers = []
        x = None  # input of the current layer, (T, B, H) for layers above 0
        # training reuses its large arrays (see cells.Workspace); a forward-only call takes new
        # ones, so that scoring and sampling only read the model (safe from several threads)
        scratch, works = ((self._scratch, self._work) if for_backward
                          else (Workspace(), [None] * L))
        xw = scratch.take("xw", (T, B, c.gates * H), self.dtype)  # read by one cell only
        for layer in range(L):
            W_x, b = self.params[f"layers.{layer}.W_x"], self.params[f"layers.{layer}.b"]
            if layer == 0:  # one-hot x W_x + b: rows of the (V, G*H) table W_x + b
                np.take(W_x + b, ids_tm, axis=0, out=xw)
            else:
                np.matmul(x.reshape(T * B, H), W_x, out=xw.reshape(T * B, -1))
                xw += b
            hs, final, cache = self.cell.forward(xw, tuple(state[layer]), self._layer(layer),
                                                 for_backward, works[layer])
            new_state[layer] = final
            mask = None
            if rng is not None and c.dropout > 0:
                keep_prob = 1.0 - c.dropout
                mask = ((rng.random(hs.shape, dtype=self.dtype) < keep_prob)
                        * self.dtype.type(1 / keep_prob))
                hs = hs * mask
            layers.append((x, cache, mask))
            x = hs
        logits = x.reshape(T * B, H) @ self.params["head.W"]
        logits += self.params["head.b"]
        return logits, new_state, (ids_tm, layers, x, self._generation)

    def backward(self, dlogits: np.ndarray, cache, dstate: np.ndarray | None = None):
        """Gradients of every parameter (and of the initial state) from d(loss)/d(logits).

        dlogits (T*B, V); dstate (L, S, B, H) is the gradient arriving at the final state, or
        None. Returns (grads, dstate0) with grads keyed like ``params``. The cache is used up:
        the cells write their gradients over its buffers.
        """
        ids_tm, layers, top, generation = cache
        if any(cell_cache is None for _, cell_cache, _ in layers):
            raise ValueError("backward needs the cache of a forward(..., for_backward=True) "
                             "that no backward has used yet")
        if generation != self._generation:
            raise ValueError("backward needs the cache of the latest forward(..., "
                             "for_backward=True): a later one has reused its buffers")
        T, B = ids_tm.shape
        c = self.config
        H = c.hidden_size
        p = self.params
        grads = {"head.W": top.reshape(T * B, H).T @ dlogits, "head.b": dlogits.sum(axis=0)}
        dx = self._scratch.take("dx", (T, B, H), self.dtype)  # read by one cell only
        np.matmul(dlogits, p["head.W"].T, out=dx.reshape(T * B, H))
        dstate0 = np.empty((c.num_layers, c.state_parts, B, H), self.dtype)
        for layer in range(c.num_layers - 1, -1, -1):
            x, cell_cache, mask = layers[layer]
            if mask is not None:
                dx *= mask
            dfinal = None if dstate is None else tuple(dstate[layer])
            dxw, ds0, dcell = self.cell.backward(dx, dfinal, cell_cache)
            layers[layer] = (x, None, mask)  # used up
            dstate0[layer] = ds0
            for k, v in dcell.items():
                grads[f"layers.{layer}.{k}"] = v
            dxw = dxw.reshape(T * B, -1)
            W_x = p[f"layers.{layer}.W_x"]
            if layer == 0:
                # one-hot input: dW_x = onehot^T dxw, i.e. row v sums dxw over the positions
                # holding id v; as a matmul this is ~10x faster than np.add.at. Every position
                # holds one id, so db (the sum over positions) is the sum of those V rows.
                onehot = np.zeros((c.vocab_size, T * B), self.dtype)
                onehot[ids_tm.reshape(-1), np.arange(T * B)] = 1.0
                grads["layers.0.W_x"] = onehot @ dxw
                grads["layers.0.b"] = grads["layers.0.W_x"].sum(axis=0)
            else:
                grads[f"layers.{layer}.b"] = dxw.sum(axis=0)
                grads[f"layers.{layer}.W_x"] = x.reshape(T * B, H).T @ dxw
                np.matmul(dxw, W_x.T, out=dx.reshape(T * B, H))
        return grads, dstate0

    def loss_and_grad(self, ids: np.ndarray, targets: np.ndarray, state: np.ndarray | None = None,
                      rng: np.random.Generator | None = None):
        """One truncated-BPTT window: (mean loss in nats/char, grads, final state)."""
        logits, new_state, cache = self.forward(ids, state, rng)
        losses = softmax_cross_entropy(logits, np.ascontiguousarray(targets.T).reshape(-1))
        grads, _ = self.backward(logits, cache)
        return float(losses.mean()), grads, new_state

    def losses(self, ids: np.ndarray, targets: np.ndarray, state: np.ndarray | None = None):
        """Per-position losses -log p(target) (B, T) as float64, and the final state; no dropout."""
        logits, new_state, _ = self.forward(ids, state, for_backward=False)
        B, T = ids.shape
        out = softmax_cross_entropy(logits, np.ascontiguousarray(targets.T).reshape(-1),
                                    need_grad=False)
        return out.reshape(T, B).T, new_state

    def read(self, ids: np.ndarray, state: np.ndarray | None = None):
        """One pass without dropout, giving what ``log_probs`` and ``hidden_states`` give:
        (log probs (B, T, V) float64, a list of L layer outputs (B, T, H), new state)."""
        logits, new_state, (_, layers, top, _) = self.forward(ids, state, for_backward=False)
        B, T = ids.shape
        logits = logits.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
        outs = [x for x, _, _ in layers[1:]] + [top]
        return (logits.reshape(T, B, -1).transpose(1, 0, 2),
                [h.transpose(1, 0, 2) for h in outs], new_state)

    def log_probs(self, ids: np.ndarray, state: np.ndarray | None = None):
        """log softmax of the next-character distribution at every position: (B, T, V), state."""
        log_probs, _, new_state = self.read(ids, state)
        return log_probs, new_state

    def hidden_states(self, ids: np.ndarray, state: np.ndarray | None = None):
        """Every layer's output at every position (no dropout): a list of L arrays (B, T, H)."""
        return self.read(ids, state)[1]

    def sample(self, length: int = 500, *, prime: str = "", temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
               seed=None, num_samples: int = 1, skip_unknown: bool = False):
        """``length`` characters continuing ``prime`` (not included): a str, or N strs.

        temperature > 0 sharpens (< 1) or flattens (> 1) the distribution; top_k keeps the k
        likeliest characters, top_p the smallest set holding that much probability; greedy
        takes the likeliest. The same seed gives the same text.
        """
        return sampling.sample(self, length, prime=prime, temperature=temperature, top_k=top_k,
                               top_p=top_p, greedy=greedy, seed=seed, num_samples=num_samples,
                               skip_unknown=skip_unknown)

    def stream(self, length: int = 500, **options) -> sampling.Stream:
        """Like ``sample`` but yields characters as they are produced (a tuple of N per step
        when num_samples > 1)."""
        return sampling.stream(self, length, **options)
