"""Sampling text from a model: priming, temperature / top-k / top-p / greedy, N streams at once.

Shapes: N parallel samples, V vocab, H hidden, L layers, G gate blocks, S state parts.

    logits_t = net(prefix)                  (N, V), from `Stepper` one character at a time
    w = exp((logits_t - max) / T)           temperature T > 0
    w[j] = 0 unless j is among the top_k    (ties with the k-th largest are kept)
    w[j] = 0 unless j is in the nucleus     smallest most-probable set with mass >= top_p
                                            (ties with its least probable member are kept)
    x_t ~ w / sum(w)                        one uniform u per sample: first j with cdf_j > u*sum
    greedy: x_t = argmax logits_t           (no randomness; N greedy samples are identical)

The model is taken duck-typed (`.config`, `.params`, `.dtype`, `.vocab`, `.forward`,
`.initial_state`), so this module sits below `charrnn.model` and never imports it. The cells'
maths is `charrnn.cells`': `Stepper` advances each layer by its cell's ``step``, the training
forward's own, and lays out only the matrix products that feed it.

A prime is read by `model.forward` (one matmul per layer over the whole prime, in chunks).
An empty prime starts from the zero state as if the text began after a line break: the model
reads an implicit '\\n' (not emitted) when '\\n' is in the vocabulary, otherwise the first
character is drawn uniformly from the vocabulary (and emitted). The returned text never includes
the prime. Same seed, same text (on the same numpy and BLAS; float rounding can differ between
CPUs, which may rarely flip a draw).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from .cells import CELLS, GRUCell, LSTMCell, RNNCell
from .config import check as _check
from .config import is_int, is_number
from .errors import CharRNNError

__all__ = ["Stepper", "Stream", "probabilities", "sample", "stream"]

PRIME_CHUNK = 2048  # prime characters per forward call: bounds the forward cache's memory


def _is_int(x) -> bool:
    """Sampling options take NumPy's integers too (a seed or a count computed with NumPy)."""
    return is_int(x, numpy=True)


def _check_filters(temperature, top_k, top_p) -> None:
    _check(is_number(temperature, numpy=True) and temperature > 0,
           f"temperature must be a positive number, not {temperature!r}")
    _check(top_k is None or (_is_int(top_k) and top_k >= 1),
           f"top-k must be a positive integer, not {top_k!r}")
    _check(top_p is None or (is_number(top_p, numpy=True) and 0 < top_p <= 1),
           f"top-p must be in (0, 1], not {top_p!r}")


class _Chooser:
    """Turns (N, V) logits into N character ids in place, with preallocated buffers.

    The per-step path is ufunc methods with `out=` on views made here once (``np.sum`` and
    friends cost a microsecond more per call than ``np.add.reduce``; at batch 1 that matters,
    so N = 1 also takes a 1-D path with a scalar max and `searchsorted`).
    """

    def __init__(self, n: int, v: int, temperature=1.0, top_k=None, top_p=None, greedy=False,
                 dtype=np.float32):
        self.greedy, self.single = greedy, n == 1
        # temperature is applied after subtracting the max (logits <= 0), so a huge 1/T cannot
        # overflow into inf - inf; clamped to the dtype's range it makes T -> 0 tend to greedy
        self.inv_t = min(1.0 / temperature, float(np.finfo(dtype).max))
        self.top_k = top_k if top_k is not None and top_k < v else None
        self.top_p = top_p if top_p is not None and top_p < 1 else None
        self.cdf = np.empty((n, v), np.float64)  # float64: u has 53 bits, tiny p stay exact-ish
        self.total = self.cdf[:, -1]
        self.u = np.empty(n, np.float64)
        self.u_col = self.u[:, None]
        self.below = np.empty((n, v), bool)
        self.ids = np.empty(n, np.intp)

    def weights(self, x: np.ndarray) -> np.ndarray:
        """Logits (..., V) -> unnormalised filtered weights, in place (a row's max weight is 1)."""
        if x.ndim == 1:
            x -= np.maximum.reduce(x)
        else:
            x -= np.maximum.reduce(x, axis=-1, keepdims=True)
        if self.inv_t != 1.0:
            np.multiply(x, self.inv_t, out=x)
        v = x.shape[-1]
        if self.top_k is not None:  # on logits, so ties are decided before exp rounds them
            kth = np.partition(x, v - self.top_k, axis=-1)[..., v - self.top_k, None]
            np.copyto(x, -np.inf, where=x < kth)
        np.exp(x, out=x)
        if self.top_p is not None:
            desc = np.sort(x, axis=-1)[..., ::-1]
            mass = np.cumsum(desc, axis=-1)
            # keep the m most probable, m = 1 + #{j: mass of the top j+1 < top_p * total}
            m = (mass < self.top_p * mass[..., -1:]).sum(axis=-1, keepdims=True)
            thr = np.take_along_axis(desc, np.minimum(m, v - 1), axis=-1)
            np.copyto(x, 0, where=x < thr)
        return x

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Ids (N,) drawn from logits x (N, V) (overwritten); a view of an internal buffer.

        Logits that are not finite numbers (a model whose weights overflowed) are an error: one
        sum tells (inf or nan if any is; a row's total weight is otherwise at least 1)."""
        if self.greedy:
            if not math.isfinite(np.add.reduce(x, axis=None)):
                raise _broken()
            return np.argmax(x, axis=1, out=self.ids)
        if self.single:  # the same draw as below (one double from rng), with fewer calls
            cdf = np.add.accumulate(self.weights(x[0]), dtype=np.float64, out=self.cdf[0])
            if not math.isfinite(cdf[-1]):
                raise _broken()
            self.ids[0] = cdf.searchsorted(rng.random() * cdf[-1], "right")
            return self.ids
        np.add.accumulate(self.weights(x), axis=1, dtype=np.float64, out=self.cdf)
        if not math.isfinite(np.add.reduce(self.total)):
            raise _broken()
        rng.random(out=self.u)
        np.multiply(self.u, self.total, out=self.u)  # u sum < sum (u <= 1 - 2^-53, rounding)
        # first j with cdf_j > u*sum: a zero weight repeats its left neighbour and is never hit
        np.less_equal(self.cdf, self.u_col, out=self.below)
        return np.add.reduce(self.below, axis=1, out=self.ids)


def _broken() -> CharRNNError:
    return CharRNNError("the model's outputs are not finite numbers (its weights overflowed, "
                        "as in a diverged training run): it cannot be sampled")


def probabilities(logits, temperature=1.0, top_k=None, top_p=None) -> np.ndarray:
    """The distribution sampling draws from: softmax(logits / T), top-k and top-p applied.

    logits (..., V) -> probabilities of the same shape (a new array; rows sum to 1).
    Top-k comes first, then top-p on what remains (as in Hugging Face `generate`).
    """
    _check_filters(temperature, top_k, top_p)
    x = np.asarray(logits)
    x = x.astype(np.result_type(x.dtype, np.float32), copy=True)
    _Chooser(1, x.shape[-1], temperature, top_k, top_p, dtype=x.dtype).weights(x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


class _Layer(NamedTuple):
    """One layer of the `Stepper`: the weights of the products feeding its cell's step, its
    views of the state buffer and its buffers. The step loops unpack the fields in this order."""

    first: bool  # layer 0: its one-hot input is a row gather from W_in
    W_in: np.ndarray  # layer 0: (V, G*H) table s (W_x + b); above: see `Stepper`
    W_h: np.ndarray | None  # (H, G*H) sign W_h, for h's own product (layer 0, the GRU's)
    b: np.ndarray | None  # added after a product above layer 0 that does not fold it in
    x: np.ndarray | None  # above layer 0: the product's input, a view of the state buffer
    h: np.ndarray  # (N, H) this layer's state, a view of the state buffer
    xw: np.ndarray  # (N, G*H) layer 0's gathered rows; the GRU's x W_x + b
    buffers: Any  # the cell's step buffers (``cell.buffers``): RNN a (N, H), GRU-, LSTMBuffers
    c: np.ndarray | None  # LSTM: (N, H) the cell state, a view of `Stepper.c`
    gru: tuple | None  # GRU: (xw_rz, xw_n, b_hn): views of xw's r z and n columns; (H,)


class Stepper:
    """The network unrolled one character at a time for N parallel streams; no gradients.

    Each layer advances by its cell's ``step`` (`charrnn.cells`), the code the training forward
    runs at every time step, on buffers allocated once. What is laid out for one step, on
    construction, is only the products that feed it (s = the cell's ``sign``, -1 for the gated
    cells, whose steps read their products negated; the GRU's ``xw`` is not negated):
    - layer 0's one-hot input is a row gather from the table ``s (W_x + b)`` (V, G*H), added
      to ``h (s W_h)`` as in the forward;
    - the state lives in one buffer ``[h_0 | h_1 | ... | h_{L-1} | 1]`` (N, L*H + 1), so an RNN
      or LSTM layer above 0 gets its whole ``s (x W_x + h W_h + b)`` from one matmul of the view
      ``[h_{l-1} | h_l]`` with ``s [W_x; W_h]`` (the top layer's view also takes the 1, folding
      in its bias), and the head is ``[h_{L-1} | 1] @ [W; b]``. The GRU's step takes
      ``x W_x + b`` and ``-(h W_h)`` apart (r multiplies ``h W_hn``), so its upper layers take
      two matmuls, as the forward's do.
    The fused products sum in another order than the forward's, so the logits agree with
    `model.forward` on the same text to float rounding, not bit for bit.
    `layers` holds each layer's `_Layer`. `logits` (N, V) is a buffer overwritten by every step.
    """

    def __init__(self, model, batch_size: int = 1):
        cfg, p, dt = model.config, model.params, np.dtype(model.dtype)
        H, L, N = cfg.hidden_size, cfg.num_layers, batch_size
        self.model, self.batch_size = model, N
        # [h_0 | h_1 | ... | h_{L-1} | 1] per row: the trailing 1 folds biases into matmuls
        self.h = np.zeros((N, L * H + 1), dt)
        self.h[:, -1] = 1
        self._hs = self.h[:, :-1].reshape(N, L, H)  # a view: splitting a contiguous axis
        self.c = np.zeros((L, N, H), dt)  # LSTM cell state (unused otherwise)
        self.logits = np.empty((N, cfg.vocab_size), dt)
        self._head = (self.h[:, (L - 1) * H:], np.concatenate([p["head.W"], p["head.b"][None]]))
        self.layers = [self._layer(k) for k in range(L)]
        # the step loops unpack these exact tuples: CPython unpacks a NamedTuple slower
        self._rows = [tuple(layer) for layer in self.layers]
        self._advance = {"lstm": self._lstm, "gru": self._gru, "rnn": self._rnn}[cfg.cell]

    def _layer(self, k: int) -> _Layer:
        """Layer k's step structure: its re-laid weights, its views of the state, its buffers."""
        cfg, p, dt = self.model.config, self.model.params, self.h.dtype
        H, L, N, cell = cfg.hidden_size, cfg.num_layers, self.batch_size, CELLS[cfg.cell]
        W_x, W_h, b = (p[f"layers.{k}.{name}"] for name in ("W_x", "W_h", "b"))
        s = 1.0 if cell is GRUCell else cell.sign  # W_in's sign: the GRU's xw is not negated
        x = b_in = gru = None
        W_own = cell.sign * W_h  # h's own product (layer 0, the GRU); else W_in holds s W_h
        if k == 0:  # (V, G*H): row id is s (W_x + b)[id], the forward's gather
            W_in = s * (W_x + b)
        elif cell is GRUCell:  # x W_x + b as the forward computes it, from x = h_{k-1}
            W_in, x, b_in = W_x, self.h[:, (k - 1) * H:k * H], b
        elif k == L - 1:  # (2H+1, G*H) against the (N, 2H+1) view [h_{k-1} | h_k | 1]
            W_in, x = s * np.concatenate([W_x, W_h, b[None]]), self.h[:, (k - 1) * H:]
            W_own = None
        else:  # (2H, G*H) against the (N, 2H) view [h_{k-1} | h_k], then + s b
            W_in, x = s * np.concatenate([W_x, W_h]), self.h[:, (k - 1) * H:(k + 1) * H]
            W_own, b_in = None, s * b
        xw, buffers = np.empty((N, cell.gates * H), dt), cell.buffers(N, H, dt)
        if cell is GRUCell:  # its step's xw_rz and xw_n: views of xw
            _, _, n_cols, rz_cols = buffers.cols
            gru = (xw[:, rz_cols], xw[:, n_cols], p[f"layers.{k}.b_hn"])
        return _Layer(first=k == 0, W_in=np.ascontiguousarray(W_in), W_h=W_own, b=b_in, x=x,
                      h=self.h[:, k * H:(k + 1) * H], xw=xw, buffers=buffers,
                      c=self.c[k] if cell is LSTMCell else None, gru=gru)

    @property
    def state(self) -> np.ndarray:
        """The recurrent state in the model's layout, (L, S, N, H) (a copy)."""
        L, N, H = self._hs.shape[1], self.batch_size, self._hs.shape[2]
        out = np.empty((L, self.model.config.state_parts, N, H), self.h.dtype)
        out[:, 0] = self._hs.transpose(1, 0, 2)
        if out.shape[1] == 2:
            out[:, 1] = self.c
        return out

    @state.setter
    def state(self, state: np.ndarray) -> None:
        """Load a (L, S, N, H) state; a batch of 1 is copied to all N streams."""
        self._hs[:] = state[:, 0].transpose(1, 0, 2)
        if state.shape[1] == 2:
            self.c[:] = state[:, 1]

    def prime(self, ids) -> np.ndarray:
        """Read ids (T,) (shared by all streams) or (N, T) through `model.forward`; returns logits.

        Starts from the current state; afterwards state and `logits` are those after the last id.
        A shared prime from a shared state (e.g. the zero state) is read once, as a batch of 1.
        """
        state, ids = self.state, np.asarray(ids)
        if ids.ndim not in (1, 2) or (ids.ndim == 2 and len(ids) != self.batch_size):
            raise ValueError(f"prime ids must be (T,) or ({self.batch_size}, T), not {ids.shape}")
        if ids.ndim == 1:
            shared = (state == state[:, :, :1]).all()
            ids = ids[None] if shared else np.broadcast_to(ids, (self.batch_size, len(ids)))
        state = state[:, :, :len(ids)]
        for t in range(0, ids.shape[1], PRIME_CHUNK):
            chunk = ids[:, t:t + PRIME_CHUNK]
            logits, state, _ = self.model.forward(chunk, state, for_backward=False)
        if ids.shape[1]:
            self.state = state
            self.logits[:] = logits[-len(ids):]  # time-major: the last step's B rows
        return self.logits

    def step(self, ids: np.ndarray) -> np.ndarray:
        """Feed one id per stream, (N,) ints; returns the next logits (N, V) (the buffer)."""
        self._advance(ids)
        x1, W = self._head  # [h_{L-1} | 1] @ [head.W; head.b]
        return np.matmul(x1, W, out=self.logits)

    def _rnn(self, ids):
        for first, W_in, W_h, b, x, h, xw, a, _, _ in self._rows:
            _joint_product(ids, first, W_in, W_h, b, x, h, xw, a)
            RNNCell.step(a, h)

    def _lstm(self, ids):
        with np.errstate(over="ignore"):  # exp(-a) = inf for a << 0 gives the limit s = 0
            for first, W_in, W_h, b, x, h, xw, buf, c, _ in self._rows:
                _joint_product(ids, first, W_in, W_h, b, x, h, xw, buf.a)
                LSTMCell.step(buf, c, c, h)

    def _gru(self, ids):
        with np.errstate(over="ignore"):  # exp(-a) = inf for a << 0 gives the limit s = 0
            for first, W_in, W_h, b, x, h, xw, buf, _, (xw_rz, xw_n, b_hn) in self._rows:
                if first:
                    np.take(W_in, ids, axis=0, out=xw)  # x W_x + b
                else:
                    np.matmul(x, W_in, out=xw)
                    xw += b
                np.matmul(h, W_h, out=buf.hh)  # -(h W_h)
                GRUCell.step(buf, xw_rz, xw_n, b_hn, h, h)


def _joint_product(ids, first, W_in, W_h, b, x, h, rows, out) -> None:
    """out = s (x W_x + h W_h + b) for one step, the weights already times s: layer 0 adds the
    gathered rows s (W_x + b)[ids] to h (s W_h) (the forward's sum: ``a -= xw`` is ``a += -xw``
    to the bit); layers above take the view [x | h (| 1)] times s [W_x; W_h (; b)]."""
    if first:
        np.matmul(h, W_h, out=out)
        out += np.take(W_in, ids, axis=0, out=rows)
    else:
        np.matmul(x, W_in, out=out)
        if b is not None:
            out += b


class Stream:
    """Sampled text as an iterator: one str per character (N = 1) or a tuple of N per step.

    Built eagerly: options are checked and the prime encoded and read on construction, so a
    bad option (ConfigError) or an unknown prime character (VocabularyError) surfaces before
    any output. `dropped` lists the distinct prime characters skipped with `skip_unknown`.
    `stepper` holds the network state; `rng` is the only source of randomness. `texts()` gives
    the rest of each sample as one str (faster than iterating: one decode per sample).

    length: characters to generate (after the prime); temperature > 0; top_k >= 1 or None;
    top_p in (0, 1] or None; greedy: argmax, ignoring the three; seed: int, list of ints (as
    `np.random.default_rng` takes them), Generator or None (fresh entropy); num_samples: N
    independent streams advanced together, one batch.
    """

    def __init__(self, model, length: int, *, prime: str = "", temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
                 seed: int | list[int] | np.random.Generator | None = None, num_samples: int = 1,
                 skip_unknown: bool = False):
        _check(_is_int(length) and length >= 0,
               f"length must be a non-negative integer, not {length!r}")
        _check(_is_int(num_samples) and num_samples >= 1,
               f"number of samples must be a positive integer, not {num_samples!r}")
        _check_filters(temperature, top_k, top_p)
        entropy = seed if isinstance(seed, list | tuple) and seed else [seed]
        _check(seed is None or isinstance(seed, np.random.Generator)
               or all(_is_int(s) and s >= 0 for s in entropy),
               f"seed must be a non-negative integer (or a list of them), not {seed!r}")
        _check(isinstance(prime, str), f"prime must be text, not {type(prime).__name__}")
        vocab = model.vocab
        _check(vocab is not None, "the model has no vocabulary, so it cannot turn ids into text")
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        ids = vocab.encode(prime, skip_unknown)
        self.dropped: list[str] = vocab.unknown(prime) if len(ids) < len(prime) else []
        self.num_samples, self.remaining, self.vocab = num_samples, length, vocab
        self.stepper = Stepper(model, num_samples)
        self._choose = _Chooser(num_samples, len(vocab), temperature, top_k, top_p, greedy,
                                model.dtype)
        self._chars = vocab.chars
        self._fed = None  # ids drawn last, fed to the network only when the next are needed
        self._first = None
        if len(ids) == 0:
            ids = vocab.encode("\n", skip_unknown=True)  # empty prime: text begins after a '\n'
            if len(ids) == 0:  # ... or, without '\n', with a uniformly drawn character
                self._first = self.rng.integers(len(vocab), size=num_samples).astype(np.intp)
        if len(ids):
            self.stepper.prime(ids)

    def next_ids(self) -> np.ndarray | None:
        """The next step's ids (N,) (a buffer reused by the next call), or None at the end."""
        if self.remaining <= 0:
            return None
        self.remaining -= 1
        if self._first is not None:
            ids, self._first = self._first, None
        else:
            if self._fed is not None:
                self.stepper.step(self._fed)
            ids = self._choose(self.stepper.logits, self.rng)
        self._fed = ids
        return ids

    def __iter__(self) -> Iterator[str | tuple[str, ...]]:
        return self

    def __next__(self) -> str | tuple[str, ...]:
        ids = self.next_ids()
        if ids is None:
            raise StopIteration
        if self.num_samples == 1:
            return self._chars[ids[0]]
        return tuple(self._chars[i] for i in ids.tolist())

    def texts(self) -> list[str]:
        """The rest of every sample as one str each (N strs)."""
        out = np.empty((self.remaining, self.num_samples), np.intp)
        for t in range(len(out)):
            out[t] = self.next_ids()
        return [self.vocab.decode(out[:, i]) for i in range(self.num_samples)]


def stream(model, length: int, **options) -> Stream:
    """Sample `length` characters after a prime, as they are produced; options as in `Stream`."""
    return Stream(model, length, **options)


def sample(model, length: int, **options) -> str | list[str]:
    """`length` sampled characters after the prime: a str, or N strs if num_samples > 1.

    Options as in `Stream`. The prime is not included.
    """
    texts = Stream(model, length, **options).texts()
    return texts if options.get("num_samples", 1) > 1 else texts[0]
