#!/usr/bin/env python3
"""Training throughput of charrnn's own model, against the machine's GEMM-bound limit.

For each config ``cell:hidden:batch`` (2 layers, T=64, V=65, Adam, clip 5, float32) this
trains through the library (``clipped_gradients``, as the trainer steps, then ``Adam.step``) on
a synthetic token stream with the hidden state carried, and prints one JSON line:

    chars_per_s_median   B*T characters per step / step time, median of timed windows
    step_ms_median       milliseconds per step
    gemm_limit_chars_per_s  the rate if a step cost only its matrix products, each timed here
                         with NumPy's matmul at the exact shapes the model needs, right after
                         every window (median)
    gemm_fraction        median over windows of the window's rate / the limit timed after it
                         (pairing them keeps the machine's changing load out of the ratio)
    peak_rss_mb          peak resident memory of this process so far

Configs are built and warmed up first, then timed round-robin (one window of each per round)
so that noise on the machine spreads over all of them. Run it as it is and with
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`` where those are set.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import time

import numpy as np

from charrnn import CharRNN, ModelConfig, TrainConfig
from charrnn.config import GATES
from charrnn.optim import clipped_gradients, make_optimizer

DEFAULT = ",".join(f"{c}:{h}:32" for c in ("lstm", "gru", "rnn") for h in (128, 256)) + \
    "," + ",".join(f"{c}:512:64" for c in ("lstm", "gru", "rnn"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gemm_shapes(cell: str, H: int, B: int, T: int, V: int, L: int):
    """(m, k, n, count) of every matrix product one training step needs.

    The one-hot input of layer 0 needs none (a row gather forward, a scatter-add backward).
    """
    G = GATES[cell]
    TB = T * B
    shapes = [(TB, H, V, 1), (H, TB, V, 1), (TB, V, H, 1)]  # head forward, dW, dx
    for layer in range(L):
        shapes += [(B, H, G * H, T),  # forward recurrence h W_h
                   (B, G * H, H, T),  # backward recurrence dG W_h^T
                   (H, TB, G * H, 1)]  # dW_h
        if layer:
            shapes += [(TB, H, G * H, 1),  # input projection
                       (H, TB, G * H, 1),  # dW_x
                       (TB, G * H, H, 1)]  # gradient to the layer below
    return shapes


def time_gemms(shapes, repeats: int = 5) -> float:
    """Seconds for one step's worth of the products, each timed as the best of `repeats`."""
    rng = np.random.default_rng(0)
    total = 0.0
    for m, k, n, count in shapes:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        out = np.empty((m, n), np.float32)
        reps = max(1, min(200, int(2e8 / (m * k * n + 1))))
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(reps):
                np.matmul(a, b, out=out)
            best = min(best, (time.perf_counter() - t0) / reps)
        total += best * count
    return total


class Trainer:
    def __init__(self, cell, H, B, args):
        self.cell, self.H, self.B, self.T = cell, H, B, args.seq
        cfg = ModelConfig(cell=cell, vocab_size=args.vocab, hidden_size=H, num_layers=args.layers)
        self.model = CharRNN(cfg, seed=0)
        self.opt = make_optimizer("adam", self.model.params, TrainConfig().weight_decay)
        rng = np.random.default_rng(1)
        self.cols = 200 * self.T + 1
        self.data = rng.integers(0, args.vocab, (B, self.cols)).astype(np.uint8)
        self.state = self.model.initial_state(B)
        self.pos = 0
        self.rates, self.step_s, self.limits = [], [], []
        self.per_window = 1
        self.args = args

    def step(self):
        p = self.pos
        if p + self.T + 1 > self.cols:
            p, self.state = 0, self.model.initial_state(self.B)
        x, y = self.data[:, p:p + self.T], self.data[:, p + 1:p + self.T + 1]
        self.pos = p + self.T
        _, grads, _, self.state = clipped_gradients(self.model, x, y, self.state, None, 5.0)
        self.opt.step(self.model.params, grads, 2e-3)

    def warmup(self):
        t0, n = time.perf_counter(), 0
        while n < 3 or time.perf_counter() - t0 < self.args.warmup_s:
            self.step()
            n += 1
        self.per_window = max(1, round(self.args.window_s / ((time.perf_counter() - t0) / n)))

    def window(self):
        """One timed window, then the GEMM-bound limit timed at once, under the same load."""
        t0 = time.perf_counter()
        for _ in range(self.per_window):
            self.step()
        dt = (time.perf_counter() - t0) / self.per_window
        self.step_s.append(dt)
        self.rates.append(self.B * self.T / dt)
        a = self.args
        limit_s = time_gemms(gemm_shapes(self.cell, self.H, self.B, self.T, a.vocab, a.layers))
        self.limits.append(self.B * self.T / limit_s)

    def result(self):
        a = self.args
        median = statistics.median(self.rates)
        limit = statistics.median(self.limits)
        fraction = statistics.median([r / lim for r, lim in zip(self.rates, self.limits,
                                                                strict=True)])
        return {"kind": "train", "tag": a.tag, "cell": self.cell, "layers": a.layers,
                "hidden": self.H, "batch": self.B, "seq": self.T, "vocab": a.vocab,
                "params": self.model.num_parameters, "windows": len(self.rates),
                "steps_per_window": self.per_window,
                "chars_per_s_median": round(median), "chars_per_s_min": round(min(self.rates)),
                "chars_per_s_max": round(max(self.rates)),
                "step_ms_median": round(statistics.median(self.step_s) * 1e3, 2),
                "gemm_limit_chars_per_s": round(limit),
                "gemm_fraction": round(fraction, 3),
                "peak_rss_mb": round(peak_rss_mb(), 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default=DEFAULT, help="comma list of cell:hidden:batch")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=65)
    ap.add_argument("--windows", type=int, default=5, help="timed rounds")
    ap.add_argument("--window-s", type=float, default=2.0, help="seconds per timed window")
    ap.add_argument("--warmup-s", type=float, default=1.0)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    print(json.dumps({"kind": "env", "tag": args.tag, "python": platform.python_version(),
                      "numpy": np.__version__, "cpus": os.cpu_count(),
                      "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
                      "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE")}), flush=True)
    trainers = []
    for spec in filter(None, args.configs.split(",")):
        cell, H, B = spec.split(":")
        t = Trainer(cell, int(H), int(B), args)
        t.warmup()
        trainers.append(t)
    for _ in range(args.windows):
        for t in trainers:
            t.window()
    for t in trainers:
        print(json.dumps(t.result()), flush=True)


if __name__ == "__main__":
    main()
