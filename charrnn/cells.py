"""Recurrent cells over a whole sequence: forward with a cache, exact backward (BPTT).

Shapes: T time, B batch, H hidden, G gate blocks (RNN 1, GRU 3, LSTM 4). Sequences are
time-major so that every step is one contiguous slab.

A cell never sees the layer input itself: the model computes the input projection
``xw = x W_x + b`` for all T*B positions in one matmul (or a row gather for one-hot input)
and hands the cell ``xw`` of shape (T, B, G*H). The cell runs the recurrence, which needs
only ``h W_h`` per step, and its backward returns ``dxw``, from which the model gets
``dW_x``, ``db`` and the gradient to the layer below, again in one matmul each.

Every ``forward(xw, state, params) -> (hs, final_state, cache)`` where state is a tuple of
(B, H) arrays (``(h,)``, or ``(h, c)`` for the LSTM) and hs is (T, B, H).
Every ``backward(dhs, dfinal, cache) -> (dxw, dstate0, dparams)`` where dfinal matches the
state tuple (or None), dparams holds ``W_h`` (and ``b_hn`` for the GRU).

Speed notes (why the code looks the way it does):
- Sigmoid gates use ``s(a) = 0.5 * tanh(a / 2) + 0.5``. The halving is folded into a
  column-scaled copy of W_h and of xw made once per call, so one ``tanh`` covers every gate
  of a step, followed by one multiply-add with per-column constants.
- Backward factors that depend only on forward values (e.g. ``o * (1 - tanh(c)^2)``) are
  computed for all steps at once before the loop; the loop keeps only what depends on the
  step after it: a few in-place ufuncs and one ``dG @ W_h^T``.
- ``dW_h = H_prev^T dG`` is one matmul over all steps after the loop: the forward keeps the
  states in one (T+1, B, H) buffer whose first T slabs are exactly H_prev.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CELLS", "RNNCell", "GRUCell", "LSTMCell"]


def _gate_affine(gates: int, hidden: int, sigmoid_blocks: tuple[int, ...], dtype):
    """Per-column (scale, shift) so that ``tanh(scale * a) * scale + shift`` is the activation.

    For a sigmoid block scale is 1/2 and shift 1/2: ``0.5 tanh(a/2) + 0.5 = s(a)``.
    For a tanh block scale is 1 and shift 0.
    """
    scale = np.ones(gates * hidden, dtype=dtype)
    for k in sigmoid_blocks:
        scale[k * hidden:(k + 1) * hidden] = 0.5
    shift = np.where(scale == 0.5, 0.5, 0.0).astype(dtype)
    return scale, shift


def _states_buffer(T: int, h0: np.ndarray) -> np.ndarray:
    """A (T+1, B, H) buffer whose slab 0 is h0; slab t+1 will hold the state after step t."""
    hs = np.empty((T + 1,) + h0.shape, dtype=h0.dtype)
    hs[0] = h0
    return hs


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
    def forward(xw, state, params):
        (h0,) = state
        W_h = params["W_h"]
        T = xw.shape[0]
        hs = _states_buffer(T, h0)
        for t in range(T):
            h = hs[t + 1]
            np.matmul(hs[t], W_h, out=h)
            h += xw[t]
            np.tanh(h, out=h)
        return hs[1:], (hs[T].copy(),), (hs, W_h)

    @staticmethod
    def backward(dhs, dfinal, cache):
        hs, W_h = cache
        T = dhs.shape[0]
        deriv = 1.0 - np.square(hs[1:])  # tanh' for every step at once
        dpre = np.empty_like(deriv)
        dh = np.zeros_like(hs[0]) if dfinal is None else dfinal[0].copy()
        W_hT = np.ascontiguousarray(W_h.T)
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
    """

    name = "gru"
    gates = 3
    state_parts = 1

    @staticmethod
    def forward(xw, state, params):
        (h0,) = state
        W_h, b_hn = params["W_h"], params["b_hn"]
        T, B, G3 = xw.shape
        H = G3 // 3
        dt = xw.dtype
        # r and z are sigmoids: halve their columns once so one tanh serves both
        scale, shift = _gate_affine(2, H, (0, 1), dt)
        W_hs = W_h.copy()
        W_hs[:, :2 * H] *= 0.5
        xw_rz = xw[:, :, :2 * H] * scale
        hs = _states_buffer(T, h0)
        rz = np.empty((T, B, 2 * H), dtype=dt)
        n = np.empty((T, B, H), dtype=dt)
        hn = np.empty((T, B, H), dtype=dt)
        hh = np.empty((B, G3), dtype=dt)
        for t in range(T):
            np.matmul(hs[t], W_hs, out=hh)
            g = rz[t]
            np.add(hh[:, :2 * H], xw_rz[t], out=g)
            np.tanh(g, out=g)
            g *= scale
            g += shift
            np.add(hh[:, 2 * H:], b_hn, out=hn[t])
            nt = n[t]
            np.multiply(g[:, :H], hn[t], out=nt)
            nt += xw[t, :, 2 * H:]
            np.tanh(nt, out=nt)
            h = hs[t + 1]
            np.subtract(hs[t], nt, out=h)
            h *= g[:, H:]
            h += nt
        return hs[1:], (hs[T].copy(),), (hs, rz, n, hn, W_h)

    @staticmethod
    def backward(dhs, dfinal, cache):
        hs, rz, n, hn, W_h = cache
        T, B, H = dhs.shape
        r, z = rz[:, :, :H], rz[:, :, H:]
        # Forward-only factors for all steps, so that one multiply per step gives
        # d[t] = dh * P[t] = [da_r, da_z, dhn, da_n]; its first three blocks are d[hh].
        A = (1.0 - z) * (1.0 - np.square(n))
        P = np.empty((T, B, 4, H), dtype=dhs.dtype)
        np.multiply(A * hn, r * (1.0 - r), out=P[:, :, 0])
        np.multiply(hs[:-1] - n, z * (1.0 - z), out=P[:, :, 1])
        np.multiply(A, r, out=P[:, :, 2])
        P[:, :, 3] = A
        d = np.empty_like(P)
        dh = np.zeros_like(hs[0]) if dfinal is None else dfinal[0].copy()
        tmp = np.empty_like(dh)
        z_all = np.ascontiguousarray(z)
        W_hT = np.ascontiguousarray(W_h.T)
        for t in range(T - 1, -1, -1):
            dh += dhs[t]
            np.multiply(dh[:, None, :], P[t], out=d[t])
            np.matmul(d[t, :, :3].reshape(B, 3 * H), W_hT, out=tmp)
            dh *= z_all[t]
            dh += tmp
        dhh = d[:, :, :3].reshape(T, B, 3 * H)
        dxw = np.concatenate((d[:, :, :2].reshape(T, B, 2 * H), d[:, :, 3]), axis=2)
        grads = {"W_h": _weight_grad(hs[:-1], dhh), "b_hn": d[:, :, 2].sum(axis=(0, 1))}
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
    """

    name = "lstm"
    gates = 4
    state_parts = 2

    @staticmethod
    def forward(xw, state, params):
        h0, c0 = state
        W_h = params["W_h"]
        T, B, G4 = xw.shape
        H = G4 // 4
        dt = xw.dtype
        scale, shift = _gate_affine(4, H, (0, 1, 3), dt)
        W_hs = W_h * scale
        xws = xw * scale
        hs = _states_buffer(T, h0)
        cs = _states_buffer(T, c0)
        acts = np.empty((T, B, G4), dtype=dt)
        tc = np.empty((T, B, H), dtype=dt)  # tanh(c_t)
        ig = np.empty((B, H), dtype=dt)
        for t in range(T):
            a = acts[t]
            np.matmul(hs[t], W_hs, out=a)
            a += xws[t]
            np.tanh(a, out=a)
            a *= scale
            a += shift
            c = cs[t + 1]
            np.multiply(a[:, H:2 * H], cs[t], out=c)
            np.multiply(a[:, :H], a[:, 2 * H:3 * H], out=ig)
            c += ig
            np.tanh(c, out=tc[t])
            np.multiply(a[:, 3 * H:], tc[t], out=hs[t + 1])
        return hs[1:], (hs[T].copy(), cs[T].copy()), (hs, cs, acts, tc, W_h)

    @staticmethod
    def backward(dhs, dfinal, cache):
        hs, cs, acts, tc, W_h = cache
        T, B, H = dhs.shape
        dt = dhs.dtype
        i, f, g, o = (acts[:, :, k * H:(k + 1) * H] for k in range(4))
        Q = o * (1.0 - np.square(tc))  # dc += dh * Q
        P = np.empty((T, B, 4, H), dtype=dt)  # da = [dc, dc, dc, dh] * P
        np.multiply(g, i * (1.0 - i), out=P[:, :, 0])
        np.multiply(cs[:-1], f * (1.0 - f), out=P[:, :, 1])
        np.multiply(i, 1.0 - np.square(g), out=P[:, :, 2])
        np.multiply(tc, o * (1.0 - o), out=P[:, :, 3])
        da = np.empty((T, B, 4, H), dtype=dt)
        if dfinal is None:
            dh, dc = np.zeros_like(hs[0]), np.zeros_like(cs[0])
        else:
            dh, dc = dfinal[0].copy(), dfinal[1].copy()
        tmp = np.empty_like(dh)
        f_all = np.ascontiguousarray(f)
        W_hT = np.ascontiguousarray(W_h.T)
        for t in range(T - 1, -1, -1):
            dh += dhs[t]
            np.multiply(dh, Q[t], out=tmp)
            dc += tmp
            np.multiply(dc[:, None, :], P[t, :, :3], out=da[t, :, :3])
            np.multiply(dh, P[t, :, 3], out=da[t, :, 3])
            dc *= f_all[t]
            np.matmul(da[t].reshape(B, 4 * H), W_hT, out=dh)
        da = da.reshape(T, B, 4 * H)
        return da, (dh, dc), {"W_h": _weight_grad(hs[:-1], da)}


CELLS = {cell.name: cell for cell in (RNNCell, GRUCell, LSTMCell)}
