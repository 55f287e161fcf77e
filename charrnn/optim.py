"""Optimisers (Adam, RMSprop, Adagrad, SGD with momentum), global-norm clipping, state as arrays.

Parameters and gradients are flat dicts `name -> array` with the same keys. Updates are in
place, in the parameters' own dtype, through in-place ufuncs and one preallocated scratch buffer
per dtype: a step allocates nothing the size of a parameter. The state is arrays only
(`slot/name` moments plus a 0-d int64 step count `t`), so it goes into an .npz without pickle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .config import OPTIMIZERS
from .errors import CheckpointError, ConfigError

Arrays = Mapping[str, np.ndarray]


class Optimizer:
    """Base: per-parameter state slots (`slot/name`, zeros at first) and the step count `t`.

    With ``weight_decay`` wd > 0, a step first shrinks every weight matrix (each parameter of
    two or more dimensions; not the biases), decoupled from the gradient as in AdamW
    (Loshchilov & Hutter 2019):   p *= 1 - lr * wd,   then the update from the gradient.
    """

    slots: tuple[str, ...] = ()  # names of the per-parameter state arrays
    nonnegative: tuple[str, ...] = ()  # slots that hold running sums of squares
    weight_decay = 0.0  # decoupled decay of the weight matrices, per unit of learning rate

    def __init__(self, params: Arrays, **hyper: float) -> None:
        for k, v in hyper.items():  # override a class-level hyperparameter, e.g. Adam(p, b2=0.99)
            if not isinstance(getattr(type(self), k, None), float):
                raise TypeError(f"{type(self).__name__} has no hyperparameter {k!r}")
            setattr(self, k, float(v))
        self.t = 0  # steps taken so far
        self._decayed = [n for n, p in params.items() if p.ndim >= 2]
        self.state = {f"{s}/{n}": np.zeros_like(p) for s in self.slots for n, p in params.items()}
        # one flat scratch buffer per dtype, as large as the largest parameter of that dtype
        sizes: dict[np.dtype, int] = {}
        for p in params.values():
            sizes[p.dtype] = max(sizes.get(p.dtype, 0), p.size)
        flat = {dt: np.empty(size, dt) for dt, size in sizes.items()}
        self._work = [
            (n, flat[p.dtype][: p.size].reshape(p.shape),
             *(self.state[f"{s}/{n}"] for s in self.slots))
            for n, p in params.items()
        ]

    def step(self, params: Arrays, grads: Arrays, lr: float) -> None:
        """Apply one update with learning rate `lr` to every parameter, in place."""
        self.t += 1
        if self.weight_decay:
            shrink = 1.0 - float(lr) * self.weight_decay
            for n in self._decayed:
                params[n] *= shrink
        k = self._scalars(float(lr))  # Python floats, which never upcast float32 arrays
        for n, tmp, *state in self._work:
            self._update(params[n], grads[n], k, tmp, *state)

    def _scalars(self, lr: float):
        """The step's scalar coefficients, computed once for all parameters."""
        return lr

    def _update(self, p: np.ndarray, g: np.ndarray, k, tmp: np.ndarray, *state) -> None:
        raise NotImplementedError

    @classmethod
    def state_shapes(cls, param_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple]:
        """The names and shapes `state_dict` has for parameters of these shapes (`t` is 0-d)."""
        shapes = {f"{s}/{n}": tuple(shape) for s in cls.slots for n, shape in param_shapes.items()}
        shapes["t"] = ()
        return shapes

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the state: moments in the parameters' dtype, `t` a 0-d int64 array."""
        d = {k: v.copy() for k, v in self.state.items()}
        d["t"] = np.array(self.t, dtype=np.int64)
        return d

    def load_state_dict(self, d: Arrays) -> None:
        """Replace the state with `d`; all of it is checked before anything changes."""
        what = f"{type(self).__name__} optimizer state"
        expected = [*self.state, "t"]
        missing = [k for k in expected if k not in d]
        extra = sorted(set(d) - set(expected))
        if missing or extra:
            parts = ([f"missing {', '.join(missing[:5])}"] if missing else []) + (
                [f"unexpected {', '.join(extra[:5])}"] if extra else [])
            raise CheckpointError(f"{what} does not fit the model: {'; '.join(parts)}")
        t = np.asarray(d["t"])
        if t.shape != () or t.dtype.kind not in "iu" or int(t) < 0:
            raise CheckpointError(f"{what}: step count t must be a non-negative integer scalar")
        arrays = {k: np.asarray(d[k]) for k in self.state}  # read once: d may be an NpzFile
        for k, cur in self.state.items():
            a = arrays[k]
            if a.shape != cur.shape:
                raise CheckpointError(f"{what}: {k} has shape {a.shape}, expected {cur.shape}")
            if a.dtype.kind != "f" or not np.isfinite(a).all():
                raise CheckpointError(f"{what}: {k} must hold finite floating-point numbers")
            if k.split("/", 1)[0] in self.nonnegative and (a < 0).any():
                raise CheckpointError(f"{what}: {k} must not be negative")
        for k, cur in self.state.items():
            np.copyto(cur, arrays[k], casting="same_kind")
        self.t = int(t)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; g the gradient, t the step from 1.

    m = b1*m + (1-b1)*g;   v = b2*v + (1-b2)*g^2
    p -= lr * m_hat / (sqrt(v_hat) + eps),   m_hat = m/(1-b1^t),   v_hat = v/(1-b2^t)
    computed as  p -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps*sqrt(1-b2^t)).
    """

    slots, nonnegative = ("m", "v"), ("v",)
    b1, b2, eps = 0.9, 0.999, 1e-8

    def _scalars(self, lr):
        root_bc2 = math.sqrt(1.0 - self.b2**self.t)
        return lr * root_bc2 / (1.0 - self.b1**self.t), self.eps * root_bc2

    def _update(self, p, g, k, tmp, m, v):
        step_size, eps_hat = k
        m *= self.b1
        np.multiply(g, 1.0 - self.b1, out=tmp)
        m += tmp
        np.square(g, out=tmp)
        tmp *= 1.0 - self.b2
        v *= self.b2
        v += tmp
        np.sqrt(v, out=tmp)
        tmp += eps_hat
        np.divide(m, tmp, out=tmp)
        tmp *= step_size
        p -= tmp


class RMSprop(Optimizer):
    """RMSprop as in char-rnn, decay a = 0.95, eps = 1e-8.

    ms = a*ms + (1-a)*g^2;   p -= lr * g / (sqrt(ms) + eps)
    """

    slots = nonnegative = ("ms",)
    decay, eps = 0.95, 1e-8

    def _update(self, p, g, lr, tmp, ms):
        np.square(g, out=tmp)
        tmp *= 1.0 - self.decay
        ms *= self.decay
        ms += tmp
        np.sqrt(ms, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        tmp *= lr
        p -= tmp


class Adagrad(Optimizer):
    """Adagrad as in min-char-rnn, eps = 1e-8:   mem += g^2;   p -= lr * g / sqrt(mem + eps)."""

    slots = nonnegative = ("mem",)
    eps = 1e-8

    def _update(self, p, g, lr, tmp, mem):
        np.square(g, out=tmp)
        mem += tmp
        np.add(mem, self.eps, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(g, tmp, out=tmp)
        tmp *= lr
        p -= tmp


class SGD(Optimizer):
    """SGD with heavy-ball momentum mu = 0.9:   v = mu*v + g;   p -= lr * v."""

    slots = ("v",)
    momentum = 0.9

    def _update(self, p, g, lr, tmp, v):
        v *= self.momentum
        v += g
        np.multiply(v, lr, out=tmp)
        p -= tmp


OPTIMIZER_CLASSES: dict[str, type[Optimizer]] = {
    "adam": Adam, "rmsprop": RMSprop, "adagrad": Adagrad, "sgd": SGD}
assert set(OPTIMIZER_CLASSES) == set(OPTIMIZERS)


def optimizer_class(name: str) -> type[Optimizer]:
    """The class for a name in `charrnn.config.OPTIMIZERS` (e.g. to call `state_shapes`)."""
    if name not in OPTIMIZER_CLASSES:
        raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {name!r}")
    return OPTIMIZER_CLASSES[name]


def make_optimizer(name: str, params: Arrays, weight_decay: float = 0.0) -> Optimizer:
    """A fresh optimizer of the named kind for these parameters, its own hyperparameters, and
    the given decoupled weight decay."""
    return optimizer_class(name)(params, weight_decay=weight_decay)


_CHUNK = 8192  # elements of float64 scratch for the norm: small enough to stay in cache


def global_norm(grads: Arrays) -> float:
    """sqrt(sum over arrays of sum(g^2)), accumulated in float64, with no concatenated copy."""
    total, buf = 0.0, None
    for g in grads.values():
        f = g.reshape(-1)
        if f.dtype == np.float64:
            total += float(np.dot(f, f))
            continue
        if buf is None:
            buf = np.empty(_CHUNK, np.float64)
        for i in range(0, f.size, _CHUNK):  # widen a chunk at a time: exact squares, no overflow
            c = buf[: min(_CHUNK, f.size - i)]
            np.copyto(c, f[i : i + _CHUNK], casting="unsafe")
            total += float(np.dot(c, c))
    return math.sqrt(total)


def clipped_gradients(model, x: np.ndarray, y: np.ndarray, hidden, rng: np.random.Generator,
                      max_norm: float) -> tuple[float, dict[str, np.ndarray], float, Any]:
    """A training step's gradients, for ``model.loss_and_grad`` (a CharRNN): the window's mean
    loss, the gradients clipped to ``max_norm`` (``clip_grad_norm``), their global norm before
    clipping, and the hidden state to carry. A non-finite loss leaves the gradients unclipped,
    with a NaN norm: its run has diverged and takes no update."""
    loss, grads, hidden = model.loss_and_grad(x, y, hidden, rng)
    norm = clip_grad_norm(grads, max_norm) if math.isfinite(loss) else math.nan
    return loss, grads, norm, hidden


def clip_grad_norm(grads: Arrays, max_norm: float) -> float:
    """Scale all grads in place by max_norm/norm if norm > max_norm > 0; return the norm before.

    A non-finite norm is returned as is and the grads are left untouched.
    """
    norm = global_norm(grads)
    if math.isfinite(norm) and max_norm > 0 and norm > max_norm:
        scale = float(max_norm) / norm
        for g in grads.values():
            g *= scale
    return norm
