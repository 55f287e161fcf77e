"""Recurrent cells: one step's maths, the sequence forward built on it, exact backward (BPTT).

Shapes: T time, B batch (or N sampled streams), H hidden, G gate blocks (RNN 1, GRU 3, LSTM 4).
Sequences are time-major so that every step is one contiguous slab.

`GATE_NAMES` is the gate layout: the order of the H-wide column blocks of W_x, W_h, b and of all
computed from them (``xw``, a step's preactivations, ``dxw``); `gate_slice` finds a block.

The model hands a cell the input projection ``xw = x W_x + b`` (T, B, G*H), one matmul (or row
gather) over all positions. A cell's ``step`` advances the state by one time step from that
step's products, in buffers from ``buffers(B, H, dtype)``; ``forward`` is the loop ``for t:
product with W_h; step; store the backward's factors (GRU, LSTM)``, and
`charrnn.sampling.Stepper` calls the same ``step`` once per character. A step reads:

    RNN   a = xw_t + h W_h           (B, H)     h' = tanh(a)
    GRU   hh = -(h W_h), xw_t        (B, 3H)    apart: r multiplies h W_hn, not x W_xn
    LSTM  -a = -(xw_t + h W_h)       (B, 4H)

``forward(xw, state, params, for_backward=True, work=None) -> (hs, final_state, cache)``: state
is a tuple of (B, H) arrays (``(h,)``, or ``(h, c)`` for the LSTM), hs is (T, B, H), cache None
unless ``for_backward``. ``backward(dhs, dfinal, cache) -> (dxw, dstate0, dparams)``: dfinal
matches the state tuple (or None), dparams holds ``W_h`` (and the GRU's ``b_hn``). One backward
per forward: the GRU and LSTM write their gradients over the cache's buffers (``dxw`` may be one
of them). ``work`` is a `Workspace` for the scratch and cache buffers (default: a fresh one);
with a kept one, the next forward reuses the buffers of the last one's cache (hs included
when ``for_backward``).

Speed notes (why the code looks the way it does):
- Sigmoids are ``s(a) = 1 / (1 + exp(-a))``, as fast as ``0.5 tanh(a/2) + 0.5`` (see
  docs/performance.md). The gated cells take the recurrent product with ``-W_h`` (their
  ``sign``), so ``-a`` comes out of the matmul. ``exp`` overflows to inf for a << 0, giving the
  right limit s = 0, so their steps run under ``np.errstate(over="ignore")``. (Tanh gates stay
  ``np.tanh``: ``2 s(2a) - 1`` would lose their relative precision near 0.)
- A step works in its reused (B, .) buffers, in cache. The backward's factors that depend only
  on forward values (e.g. ``o (1 - tanh(c')^2)``) are stored right after each step, while its
  values are still in cache (afterwards they would cost passes through memory that no longer
  fits in cache); nothing is stored when the forward is not for training. The backward loop
  is then a few in-place ufuncs and one ``dG @ W_h^T`` per step, over those factors. (The
  RNN's one factor, ``1 - h^2``, is two cheap passes over (T, B, H) in its backward.)
- ``dW_h = H_prev^T dG`` is one matmul over all steps after the loop: the forward keeps the
  states in one (T+1, B, H) buffer whose first T slabs are exactly H_prev.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

__all__ = ["CELLS", "GATE_NAMES", "SIGMOID_GATES", "GRUCell", "LSTMCell", "RNNCell", "Workspace",
           "gate_slice"]

#: the gate blocks of W_x, W_h and b, in column order (block k is columns k*H .. (k+1)*H)
GATE_NAMES = {"rnn": ("h",), "gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}
#: the gates squashed by a sigmoid (the others by tanh)
SIGMOID_GATES = {"rnn": (), "gru": ("r", "z"), "lstm": ("i", "f", "o")}


def gate_slice(cell: str, first: str, last: str | None = None, width: int = 1) -> slice:
    """Where the gate blocks first..last (adjacent in `GATE_NAMES`) sit along a gate axis of
    blocks ``width`` wide: width H for columns of W_x, W_h, b; 1 for the block axis of a
    (..., G, H) view. E.g. ``gate_slice("lstm", "f", width=H)`` is ``slice(H, 2H)``."""
    names = GATE_NAMES[cell]
    return slice(names.index(first) * width, (names.index(last or first) + 1) * width)


class Workspace:
    """Scratch arrays kept from call to call, by name; one is valid until its name is taken again.

    A training step's large temporaries (backward factors, LSTM cell states, input projection)
    have the same size every step; allocated fresh, each is paged in again by the kernel (an
    LSTM 2x256 B=32 step: ~3,600 page faults, ~10% of the step)."""

    def __init__(self) -> None:
        self._flat: dict[str, np.ndarray] = {}

    def take(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised C-contiguous array, in the memory last taken under ``name``."""
        dtype, size = np.dtype(dtype), math.prod(shape)
        flat = self._flat.get(name)
        if flat is None or flat.dtype != dtype or flat.size < size:
            flat = self._flat[name] = np.empty(size, dtype)
        return flat[:size].reshape(shape)


def _states_buffer(T: int, h0: np.ndarray, work: Workspace | None) -> np.ndarray:
    """A (T+1, B, H) buffer whose slab 0 is h0; slab t+1 will hold the state after step t. Taken
    from ``work`` when the states go into a cache (they live as long as it), else new (kept)."""
    shape = (T + 1,) + h0.shape
    hs = np.empty(shape, h0.dtype) if work is None else work.take("hs", shape, h0.dtype)
    hs[0] = h0
    return hs


def _transposed(W: np.ndarray, work: Workspace) -> np.ndarray:
    """W^T as a C-contiguous array in ``work``, for the backward's per-step ``dG @ W_h^T``."""
    out = work.take("W_hT", W.T.shape, W.dtype)
    np.copyto(out, W.T)
    return out


def _weight_grad(prev: np.ndarray, dpre: np.ndarray) -> np.ndarray:
    """``sum_t prev_t^T dpre_t`` as one matmul: (T, B, H), (T, B, K) -> (H, K)."""
    H, K = prev.shape[-1], dpre.shape[-1]
    return prev.reshape(-1, H).T @ dpre.reshape(-1, K)


class RNNCell:
    """Vanilla RNN: ``h_t = tanh(xw_t + h_{t-1} W_h)`` with ``xw_t = x_t W_x + b``.

    Backward: ``da_t = (dh_t + da_{t+1} W_h^T) * (1 - h_t^2)``; ``dW_h = sum_t h_{t-1}^T da_t``.
    """

    name = "rnn"
    gates, state_parts = len(GATE_NAMES[name]), 1
    sign = 1.0  # the step reads a = +(xw + h W_h): tanh needs no negation

    @staticmethod
    def buffers(B, H, dtype):
        """The step's one buffer: a (B, H), the preactivation."""
        return np.empty((B, H), dtype)

    @staticmethod
    def step(a, h_new):
        """``h' = tanh(a)``, a = xw_t + h W_h (B, H); h_new may be a."""
        np.tanh(a, out=h_new)

    @staticmethod
    def forward(xw, state, params, for_backward=True, work=None):
        (h0,) = state
        W_h = params["W_h"]
        work = work or Workspace()
        T = xw.shape[0]
        hs = _states_buffer(T, h0, work if for_backward else None)
        for t in range(T):
            a = hs[t + 1]  # the preactivation, then (in place) the state
            np.matmul(hs[t], W_h, out=a)
            a += xw[t]
            RNNCell.step(a, a)
        cache = (hs, W_h, work) if for_backward else None
        return hs[1:], (hs[T].copy(),), cache

    @staticmethod
    def backward(dhs, dfinal, cache):
        hs, W_h, work = cache
        T = dhs.shape[0]
        deriv = np.square(hs[1:], out=work.take("deriv", dhs.shape, dhs.dtype))
        np.subtract(1.0, deriv, out=deriv)  # tanh' for every step at once
        dpre = work.take("dpre", dhs.shape, dhs.dtype)
        dh = np.zeros_like(hs[0]) if dfinal is None else dfinal[0].copy()
        W_hT = _transposed(W_h, work)
        for t in range(T - 1, -1, -1):
            dh += dhs[t]
            np.multiply(dh, deriv[t], out=dpre[t])
            np.matmul(dpre[t], W_hT, out=dh)
        return dpre, (dh,), {"W_h": _weight_grad(hs[:-1], dpre)}


def _sigmoid_of_negated(x: np.ndarray, one: np.ndarray) -> None:
    """``s(a) = 1 / (1 + exp(-a))`` in place over x = -a. ``one`` is 1 as a 0-d array of x's
    dtype: the Python float costs ~0.4 us more per call, which shows at batch 1 (sampling)."""
    np.exp(x, out=x)
    x += one
    np.divide(one, x, out=x)


#: A GRU step's buffers, (B, .), views made once: hh (B, 3H) -(h W_h), written by the caller, and
#: its views hh_rz, hh_n; rz (B, 2H) s(a), views r, z; hn = h W_hn + b_hn, n, h_n = h - n (B, H);
#: one; cols, the columns of r, z, n and of r z together (in hh, xw and W_h).
GRUBuffers = namedtuple("GRUBuffers", "hh hh_rz hh_n rz r z hn n h_n one cols")


class GRUCell:
    """GRU in the cuDNN/PyTorch form, gate blocks ``r z n`` (xw already holds ``b``)::

        r = s(xw_r + h W_hr)          z = s(xw_z + h W_hz)
        n = tanh(xw_n + r * (h W_hn + b_hn))
        h' = (1 - z) * n + z * h  =  n + z * (h - n)

    Backward (with hn = h W_hn + b_hn), every factor but dh known from the forward pass::

        da_n = dh (1 - z)(1 - n^2)                  dhn  = da_n * r
        da_z = dh (h - n) z (1 - z)                 da_r = da_n * hn * r (1 - r)
        dh_prev = dh * z + [da_r, da_z, dhn] W_h^T

    The forward stores, per step, P = [hn r(1-r) A, (h-n) z(1-z), r A, A] with
    A = (1-z)(1-n^2) (blocks r z n in W_h's layout, then A), so that the backward's
    d = dh * P = [da_r, da_z, dhn, da_n] is one multiply.
    """

    name = "gru"
    gates, state_parts = len(GATE_NAMES[name]), 1
    sign = -1.0  # the step reads hh = -(h W_h), taken with -W_h

    @staticmethod
    def buffers(B, H, dtype) -> GRUBuffers:
        cols = (*(gate_slice("gru", gate, width=H) for gate in "rzn"),
                gate_slice("gru", "r", "z", width=H))
        _, _, n_cols, rz_cols = cols
        hh, rz = np.empty((B, 3 * H), dtype), np.empty((B, 2 * H), dtype)
        at = rz_cols.start  # rz holds hh's columns rz_cols
        r, z = (rz[:, c.start - at:c.stop - at] for c in cols[:2])
        return GRUBuffers(hh, hh[:, rz_cols], hh[:, n_cols], rz, r, z,
                          *(np.empty((B, H), dtype) for _ in range(3)), np.ones((), dtype), cols)

    @staticmethod
    def step(buf: GRUBuffers, xw_rz, xw_n, b_hn, h, h_new):
        """One step: buf.hh = -(h W_h) (B, 3H); xw_rz (B, 2H), xw_n (B, H) the r z and the n
        columns of x W_x + b; b_hn (H,); h (B, H) -> h_new (B, H) (may be h).
        Run under ``np.errstate(over="ignore")``."""
        _, hh_rz, hh_n, rz, r, z, hn, n, h_n, one, _ = buf
        np.subtract(hh_rz, xw_rz, out=rz)  # -a
        _sigmoid_of_negated(rz, one)
        np.subtract(b_hn, hh_n, out=hn)
        np.multiply(r, hn, out=n)
        n += xw_n
        np.tanh(n, out=n)
        np.subtract(h, n, out=h_n)
        np.multiply(h_n, z, out=h_new)
        h_new += n

    @staticmethod
    def _store_factors(buf: GRUBuffers, d):
        """P of the step just taken into d (B, 4H) (see the class docstring)."""
        _, _, _, rz, r, _, hn, n, h_n, _, (r_cols, z_cols, n_cols, rz_cols) = buf
        d_r, d_z, d_rz = d[:, r_cols], d[:, z_cols], d[:, rz_cols]
        A = d[:, 3 * n.shape[1]:]  # P's fourth block, after the three of W_h's layout
        np.subtract(1.0, rz, out=d_rz)  # 1 - s, times s below
        np.square(n, out=A)
        np.subtract(1.0, A, out=A)
        A *= d_z  # 1 - z
        d_rz *= rz  # s(1 - s)
        d_z *= h_n
        d_r *= hn
        d_r *= A
        np.multiply(A, r, out=d[:, n_cols])

    @staticmethod
    def forward(xw, state, params, for_backward=True, work=None):
        (h0,) = state
        b_hn = params["b_hn"]
        work = work or Workspace()
        T, B, G3 = xw.shape
        H = G3 // 3
        W_neg = np.negative(params["W_h"], out=work.take("W_neg", (H, G3), xw.dtype))  # sign -1
        hs = _states_buffer(T, h0, work if for_backward else None)
        buf = GRUCell.buffers(B, H, xw.dtype)
        _, _, n_cols, rz_cols = buf.cols
        xw_rz, xw_n = xw[:, :, rz_cols], xw[:, :, n_cols]
        if for_backward:
            P = work.take("P", (T, B, 4 * H), xw.dtype)
            Z = work.take("Z", (T, B, H), xw.dtype)
        with np.errstate(over="ignore"):  # exp(-a) = inf for a << 0 gives the limit s = 0
            for t in range(T):
                np.matmul(hs[t], W_neg, out=buf.hh)
                GRUCell.step(buf, xw_rz[t], xw_n[t], b_hn, hs[t], hs[t + 1])
                if for_backward:
                    GRUCell._store_factors(buf, P[t])
                    Z[t] = buf.z
        cache = (hs, P, Z, params["W_h"], work) if for_backward else None
        return hs[1:], (hs[T].copy(),), cache

    @staticmethod
    def backward(dhs, dfinal, cache):
        """Consumes the cache: its P becomes the pre-activation gradients."""
        hs, P, Z, W_h, work = cache
        T, B, H = dhs.shape
        P4 = P.reshape(T, B, 4, H)
        dh = np.zeros_like(hs[0]) if dfinal is None else dfinal[0].copy()
        tmp = np.empty_like(dh)
        W_hT = _transposed(W_h, work)
        for t in range(T - 1, -1, -1):
            dh += dhs[t]
            P4[t] *= dh[:, None, :]  # [da_r, da_z, dhn, da_n]
            np.matmul(P[t, :, :3 * H], W_hT, out=tmp)
            dh *= Z[t]
            dh += tmp
        dxw = np.concatenate((P[:, :, gate_slice("gru", "r", "z", width=H)], P[:, :, 3 * H:]),
                             axis=2, out=work.take("dxw", (T, B, 3 * H), P.dtype))  # da_n
        dhn = P[:, :, gate_slice("gru", "n", width=H)]
        grads = {"W_h": _weight_grad(hs[:-1], P[:, :, :3 * H]), "b_hn": dhn.sum(axis=(0, 1))}
        return dxw, (dh,), grads


#: An LSTM step's buffers, (B, .) each, views made once by `LSTMCell.buffers`: a (B, 4H) -a,
#: written by the caller, then s(a) in the i f o blocks; its views i, f, a_g, o; g = tanh(a_g),
#: ig = i * g, tc = tanh(c') (B, H); one; cols, the columns of i, f, g, o.
LSTMBuffers = namedtuple("LSTMBuffers", "a i f a_g o g ig tc one cols")


class LSTMCell:
    """LSTM, gate blocks ``i f g o`` (xw already holds ``b``; the forget bias starts at 1)::

        i = s(a_i)  f = s(a_f)  g = tanh(a_g)  o = s(a_o)      a = xw + h W_h
        c' = f * c + i * g        h' = o * tanh(c')

    Backward, with every factor but dh and dc known from the forward pass::

        dc += dh * o (1 - tanh(c')^2)
        [da_i, da_f, da_g] = dc * [g i(1-i), c f(1-f), i (1-g^2)]
        da_o = dh * tanh(c') o (1 - o)
        dc_prev = dc * f          dh_prev = da W_h^T

    The forward stores those factors per step, P = [g i(1-i), c f(1-f), i(1-g^2),
    tanh(c') o(1-o)] and Q = o (1 - tanh(c')^2), while the step's values are still in cache.
    """

    name = "lstm"
    gates, state_parts = len(GATE_NAMES[name]), 2
    sign = -1.0  # the step reads -a = -(xw + h W_h), taken with -W_h

    @staticmethod
    def buffers(B, H, dtype) -> LSTMBuffers:
        a, cols = np.empty((B, 4 * H), dtype), tuple(gate_slice("lstm", g, width=H) for g in "ifgo")
        scratch = (np.empty((B, H), dtype) for _ in range(3))  # g, ig, tc
        return LSTMBuffers(a, *(a[:, c] for c in cols), *scratch, np.ones((), dtype), cols)

    @staticmethod
    def step(buf: LSTMBuffers, c, c_new, h_new):
        """One step: buf.a = -a (B, 4H), c (B, H) -> c_new, h_new (B, H) (c_new may be c).
        Run under ``np.errstate(over="ignore")``."""
        a, i, f, a_g, o, g, ig, tc, one, _ = buf
        np.negative(a_g, out=g)
        np.tanh(g, out=g)
        _sigmoid_of_negated(a, one)  # for i, f, o (the g block of a is not used)
        np.multiply(f, c, out=c_new)
        np.multiply(i, g, out=ig)
        c_new += ig
        np.tanh(c_new, out=tc)
        np.multiply(o, tc, out=h_new)

    @staticmethod
    def _store_factors(buf: LSTMBuffers, c, h_new, d, q):
        """P and Q of the step just taken (from c, its input state) into d (B, 4H), q (B, H)."""
        a, i, _, _, o, g, ig, tc, _, (i_cols, f_cols, g_cols, o_cols) = buf
        d_i, d_f, d_g, d_o = d[:, i_cols], d[:, f_cols], d[:, g_cols], d[:, o_cols]
        np.subtract(1.0, a, out=d)
        d *= a  # s(1 - s) (the g block is overwritten below)
        d_i *= g
        d_f *= c
        np.multiply(ig, g, out=d_g)
        np.subtract(i, d_g, out=d_g)  # i (1 - g^2) = i - (i g) g
        d_o *= tc
        np.multiply(h_new, tc, out=q)
        np.subtract(o, q, out=q)  # o (1 - tanh(c')^2) = o - h' tanh(c')

    @staticmethod
    def forward(xw, state, params, for_backward=True, work=None):
        h0, c0 = state
        work = work or Workspace()
        T, B, G4 = xw.shape
        H = G4 // 4
        dt = xw.dtype
        W_neg = np.negative(params["W_h"], out=work.take("W_neg", (H, G4), dt))  # sign -1
        hs = _states_buffer(T, h0, work if for_backward else None)
        cs = work.take("cs", (T + 1,) + c0.shape, dt)  # only the final c leaves the cell
        cs[0] = c0
        buf = LSTMCell.buffers(B, H, dt)
        a = buf.a
        if for_backward:
            P = work.take("P", (T, B, G4), dt)
            Q = work.take("Q", (T, B, H), dt)
            F = work.take("F", (T, B, H), dt)
        with np.errstate(over="ignore"):  # exp(-a) = inf for a << 0 gives the limit s = 0
            for t in range(T):
                np.matmul(hs[t], W_neg, out=a)
                a -= xw[t]  # -a = -(h W_h) - xw
                LSTMCell.step(buf, cs[t], cs[t + 1], hs[t + 1])
                if for_backward:
                    LSTMCell._store_factors(buf, cs[t], hs[t + 1], P[t], Q[t])
                    F[t] = buf.f
        cache = (hs, P, Q, F, params["W_h"], work) if for_backward else None
        return hs[1:], (hs[T].copy(), cs[T].copy()), cache

    @staticmethod
    def backward(dhs, dfinal, cache):
        """Consumes the cache: its P becomes the pre-activation gradients."""
        hs, P, Q, F, W_h, work = cache
        T, B, H = dhs.shape
        P4 = P.reshape(T, B, 4, H)
        by_dc, o = gate_slice("lstm", "i", "g"), gate_slice("lstm", "o", width=H)
        dh, dc = ((np.zeros_like(hs[0]) for _ in range(2)) if dfinal is None
                  else (d.copy() for d in dfinal))
        tmp = np.empty_like(dh)
        W_hT = _transposed(W_h, work)
        for t in range(T - 1, -1, -1):
            dh += dhs[t]
            np.multiply(dh, Q[t], out=tmp)
            dc += tmp
            P4[t, :, by_dc] *= dc[:, None, :]
            P[t, :, o] *= dh  # now da[t]
            dc *= F[t]
            np.matmul(P[t], W_hT, out=dh)
        return P, (dh, dc), {"W_h": _weight_grad(hs[:-1], P)}


CELLS = {cell.name: cell for cell in (RNNCell, GRUCell, LSTMCell)}
