"""Recurrent cells over a whole sequence: forward with a cache, exact backward (BPTT).

Shapes: T time, B batch, H hidden, G gate blocks (RNN 1, GRU 3, LSTM 4). Sequences are
time-major so that every step is one contiguous slab.

A cell never sees the layer input itself: the model computes the input projection
``xw = x W_x + b`` for all T*B positions in one matmul (or a row gather for one-hot input)
and hands the cell ``xw`` of shape (T, B, G*H). The cell runs the recurrence, which needs
only ``h W_h`` per step, and its backward returns ``dxw``, from which the model gets
``dW_x``, ``db`` and the gradient to the layer below, again in one matmul each.

Every ``forward(xw, state, params, for_backward=True, work=None) -> (hs, final_state, cache)``
where state is a tuple of (B, H) arrays (``(h,)``, or ``(h, c)`` for the LSTM), hs is (T, B, H)
and cache is None unless ``for_backward``. Every ``backward(dhs, dfinal, cache)
-> (dxw, dstate0, dparams)`` where dfinal matches the state tuple (or None), dparams holds
``W_h`` (and ``b_hn`` for the GRU). One backward per forward: the GRU and LSTM write their
gradients over the cache's buffers (``dxw`` may be one of them). ``work`` is a `Workspace`
that the cell takes its scratch and cache buffers from (default: a fresh one, i.e. new
arrays); with a kept workspace, the next forward reuses the buffers of the last one's cache,
hs included when it is part of the cache (``for_backward``).

Speed notes (why the code looks the way it does):
- Sigmoid gates are ``s(a) = 1 / (1 + exp(-a))``, as fast as ``0.5 tanh(a/2) + 0.5`` (see
  docs/performance.md). The recurrent product is taken with ``-W_h`` so that ``-a`` comes out of
  the matmul, which saves the negation. ``exp`` overflows to inf for a << 0, which gives the right
  limit, s = 0. (The tanh gates stay ``np.tanh``: ``2 s(2a) - 1`` would lose their relative
  precision near 0.)
- The factors of the backward pass that depend only on forward values (e.g.
  ``o * (1 - tanh(c)^2)``) are computed by the forward, step by step, while that step's
  values are still in cache: computed afterwards over all steps they cost several passes
  through memory that no longer fits in cache. The backward loop is then a few in-place
  ufuncs and one ``dG @ W_h^T`` per step, writing the gradients over those factors.
- Per-step scratch arrays are (B, .) and reused, so a step works in cache; only what the
  backward needs is stored per step, and nothing when the forward is not for training.
  (The RNN's one factor, ``1 - h^2``, is two cheap passes over (T, B, H) in its backward.)
- ``dW_h = H_prev^T dG`` is one matmul over all steps after the loop: the forward keeps the
  states in one (T+1, B, H) buffer whose first T slabs are exactly H_prev.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["CELLS", "RNNCell", "GRUCell", "LSTMCell", "Workspace"]


class Workspace:
    """Scratch arrays kept from call to call, by name.

    A training step's large temporaries (the backward factors, the LSTM's cell states, the
    input projection) have the same size every step. Allocated fresh each time they are
    paged in again by the kernel: measured on an LSTM 2x256 B=32 step, ~3,600 page faults and
    ~10% of the step. An array taken under a name is valid until that name is taken again.
    """

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
    """A (T+1, B, H) buffer whose slab 0 is h0; slab t+1 will hold the state after step t.

    Taken from ``work`` when the states go into a cache (they live as long as it does), new
    otherwise (the caller keeps them).
    """
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
    gates = 1
    state_parts = 1

    @staticmethod
    def forward(xw, state, params, for_backward=True, work=None):
        (h0,) = state
        W_h = params["W_h"]
        work = work or Workspace()
        T = xw.shape[0]
        hs = _states_buffer(T, h0, work if for_backward else None)
        for t in range(T):
            h = hs[t + 1]
            np.matmul(hs[t], W_h, out=h)
            h += xw[t]
            np.tanh(h, out=h)
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
    A = (1-z)(1-n^2), so that the backward's d = dh * P = [da_r, da_z, dhn, da_n] is one
    multiply.
    """

    name = "gru"
    gates = 3
    state_parts = 1

    @staticmethod
    def forward(xw, state, params, for_backward=True, work=None):
        (h0,) = state
        W_h, b_hn = params["W_h"], params["b_hn"]
        work = work or Workspace()
        T, B, G3 = xw.shape
        H = G3 // 3
        dt = xw.dtype
        W_neg = np.negative(W_h, out=work.take("W_neg", W_h.shape, dt))  # hh = -h W_h
        hs = _states_buffer(T, h0, work if for_backward else None)
        hh = np.empty((B, G3), dtype=dt)
        rz = np.empty((B, 2 * H), dtype=dt)
        hn = np.empty((B, H), dtype=dt)
        n = np.empty((B, H), dtype=dt)
        r, z = rz[:, :H], rz[:, H:]
        if for_backward:
            P = work.take("P", (T, B, 4 * H), dt)
            Z = work.take("Z", (T, B, H), dt)
        with np.errstate(over="ignore"):  # exp(-a) = inf for a << 0 gives the limit s = 0
            for t in range(T):
                np.matmul(hs[t], W_neg, out=hh)
                np.subtract(hh[:, :2 * H], xw[t, :, :2 * H], out=rz)  # -a
                np.exp(rz, out=rz)
                rz += 1.0
                np.divide(1.0, rz, out=rz)  # s(a) = 1 / (1 + exp(-a))
                if for_backward:
                    d = P[t]
                    np.subtract(1.0, rz, out=d[:, :2 * H])  # 1 - s, times s below
                np.subtract(b_hn, hh[:, 2 * H:], out=hn)
                np.multiply(r, hn, out=n)
                n += xw[t, :, 2 * H:]
                np.tanh(n, out=n)
                h = hs[t + 1]
                np.subtract(hs[t], n, out=h)
                if for_backward:
                    A = d[:, 3 * H:]
                    np.square(n, out=A)
                    np.subtract(1.0, A, out=A)
                    A *= d[:, H:2 * H]  # 1 - z
                    d[:, :2 * H] *= rz  # s(1 - s)
                    d[:, H:2 * H] *= h  # h - n
                    d[:, :H] *= hn
                    d[:, :H] *= A
                    np.multiply(A, r, out=d[:, 2 * H:3 * H])
                    Z[t] = z
                h *= z
                h += n
        cache = (hs, P, Z, W_h, work) if for_backward else None
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
        dhh = P[:, :, :3 * H]
        dxw = np.concatenate((P[:, :, :2 * H], P[:, :, 3 * H:]), axis=2,
                             out=work.take("dxw", (T, B, 3 * H), P.dtype))
        grads = {"W_h": _weight_grad(hs[:-1], dhh), "b_hn": P4[:, :, 2].sum(axis=(0, 1))}
        return dxw, (dh,), grads


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
    gates = 4
    state_parts = 2

    @staticmethod
    def forward(xw, state, params, for_backward=True, work=None):
        h0, c0 = state
        W_h = params["W_h"]
        work = work or Workspace()
        T, B, G4 = xw.shape
        H = G4 // 4
        dt = xw.dtype
        W_neg = np.negative(W_h, out=work.take("W_neg", W_h.shape, dt))  # a = -(h W_h + xw)
        hs = _states_buffer(T, h0, work if for_backward else None)
        cs = work.take("cs", (T + 1,) + c0.shape, dt)  # only the final c leaves the cell
        cs[0] = c0
        a = np.empty((B, G4), dtype=dt)
        g = np.empty((B, H), dtype=dt)
        ig = np.empty((B, H), dtype=dt)
        tc = np.empty((B, H), dtype=dt)  # tanh(c')
        i, f, o = a[:, :H], a[:, H:2 * H], a[:, 3 * H:]
        if for_backward:
            P = work.take("P", (T, B, G4), dt)
            Q = work.take("Q", (T, B, H), dt)
            F = work.take("F", (T, B, H), dt)
        with np.errstate(over="ignore"):  # exp(-a) = inf for a << 0 gives the limit s = 0
            for t in range(T):
                np.matmul(hs[t], W_neg, out=a)
                a -= xw[t]  # -a
                np.negative(a[:, 2 * H:3 * H], out=g)
                np.tanh(g, out=g)
                np.exp(a, out=a)
                a += 1.0
                np.divide(1.0, a, out=a)  # s(a) for i, f, o (the g block of a is not used)
                if for_backward:
                    d = P[t]
                    np.subtract(1.0, a, out=d)
                    d *= a  # s(1 - s) (the g block is overwritten below)
                c = cs[t + 1]
                np.multiply(f, cs[t], out=c)
                np.multiply(i, g, out=ig)
                c += ig
                np.tanh(c, out=tc)
                np.multiply(o, tc, out=hs[t + 1])
                if for_backward:
                    d[:, :H] *= g
                    d[:, H:2 * H] *= cs[t]
                    dg = d[:, 2 * H:3 * H]
                    np.multiply(ig, g, out=dg)
                    np.subtract(i, dg, out=dg)  # i (1 - g^2) = i - (i g) g
                    d[:, 3 * H:] *= tc
                    q = Q[t]
                    np.multiply(hs[t + 1], tc, out=q)
                    np.subtract(o, q, out=q)  # o (1 - tanh(c')^2) = o - h' tanh(c')
                    F[t] = f
        cache = (hs, P, Q, F, W_h, work) if for_backward else None
        return hs[1:], (hs[T].copy(), cs[T].copy()), cache

    @staticmethod
    def backward(dhs, dfinal, cache):
        """Consumes the cache: its P becomes the pre-activation gradients."""
        hs, P, Q, F, W_h, work = cache
        T, B, H = dhs.shape
        P4 = P.reshape(T, B, 4, H)
        if dfinal is None:
            dh, dc = np.zeros_like(hs[0]), np.zeros_like(hs[0])
        else:
            dh, dc = dfinal[0].copy(), dfinal[1].copy()
        tmp = np.empty_like(dh)
        W_hT = _transposed(W_h, work)
        for t in range(T - 1, -1, -1):
            dh += dhs[t]
            np.multiply(dh, Q[t], out=tmp)
            dc += tmp
            P4[t, :, :3] *= dc[:, None, :]
            P4[t, :, 3] *= dh  # now da[t]
            dc *= F[t]
            np.matmul(P[t], W_hT, out=dh)
        return P, (dh, dc), {"W_h": _weight_grad(hs[:-1], P)}


CELLS = {cell.name: cell for cell in (RNNCell, GRUCell, LSTMCell)}
