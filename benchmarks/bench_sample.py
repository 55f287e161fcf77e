"""Sampling speed: characters per second for 2-layer H=256 LSTM, GRU and RNN at batch 1 and 32.

    python benchmarks/bench_sample.py [--length 2000] [--repeats 7] [--cells lstm,gru,rnn]
                                      [--batches 1,32] [--hidden 256] [--layers 2]

Models are built through the library (random init, V = 65, the tiny-shakespeare alphabet) and
sampled with `charrnn.sampling.sample` at temperature 1 after a short prime. Each config gets a
warm-up run, then `--repeats` timed runs; the median is reported, one JSON line per config:

    {"kind": "sample", "cell", "hidden", "layers", "batch", "chars_per_s_median" (all N streams),
     "ms_per_step", "time_ratio_vs_batch1" (batch > 1: ms_per_step / ms_per_step at batch 1),
     "floor_ratio_vs_batch1" (batch > 1: the step's matrix products at the machine's peak
     matmul rate, divided by the measured batch-1 step: no implementation can go below it)}

The peak rate is NumPy's best float32 matmul rate on large square matrices, timed first
({"kind": "peak_matmul", "gflops"}).

See docs/performance.md for measured figures and a PyTorch reference.
OpenBLAS threading is left as numpy set it up; run with OPENBLAS_NUM_THREADS=1 to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from charrnn.config import GATES, ModelConfig
from charrnn.data import Vocab
from charrnn.model import CharRNN
from charrnn.sampling import sample

ALPHABET = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # 65 characters
PRIME = "First Citizen:\n"


def time_config(cell: str, hidden: int, layers: int, batch: int, length: int,
                repeats: int) -> float:
    """Median seconds per generated step (all `batch` streams advance one character)."""
    vocab = Vocab(ALPHABET)
    config = ModelConfig(cell=cell, vocab_size=len(vocab), hidden_size=hidden, num_layers=layers)
    model = CharRNN(config, vocab=vocab, seed=0)
    sample(model, min(length, 200), prime=PRIME, seed=0, num_samples=batch)  # warm-up
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        sample(model, length, prime=PRIME, seed=r, num_samples=batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / length


def step_flops(cell: str, hidden: int, layers: int, batch: int, vocab: int) -> int:
    """Multiply-add FLOPs of one sampling step: layer 0's h W_h (its input is a row gather),
    the upper layers' [x | h] [W_x; W_h], and the head."""
    gh = GATES[cell] * hidden
    return 2 * batch * (hidden * gh + (layers - 1) * 2 * hidden * gh + hidden * vocab)


def peak_gflops(sizes=(1024, 2048, 3072), repeats: int = 3) -> float:
    """NumPy's best float32 matmul rate on square matrices of these sizes: the machine's
    ceiling for the products a sampling step is made of."""
    best = 0.0
    for n in sizes:
        a = np.random.default_rng(0).random((n, n), dtype=np.float32)
        out = np.empty_like(a)
        np.matmul(a, a, out=out)
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, a, out=out)
            best = max(best, 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=2000, help="characters per timed run")
    ap.add_argument("--repeats", type=int, default=7, help="timed runs per config")
    ap.add_argument("--cells", default="lstm,gru,rnn")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    args = ap.parse_args()
    batches = sorted({int(b) for b in args.batches.split(",")} | {1})
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_"))}
    peak = peak_gflops()
    print(json.dumps({"kind": "peak_matmul", "gflops": round(peak, 1)}), flush=True)
    for cell in args.cells.split(","):
        per_step = {}
        for batch in batches:
            per_step[batch] = time_config(cell, args.hidden, args.layers, batch, args.length,
                                          args.repeats)
            row = {"kind": "sample", "cell": cell, "hidden": args.hidden, "layers": args.layers,
                   "batch": batch, "chars_per_s_median": round(batch / per_step[batch]),
                   "ms_per_step": round(per_step[batch] * 1e3, 4)}
            if batch > 1:
                row["time_ratio_vs_batch1"] = round(per_step[batch] / per_step[1], 2)
                floor = step_flops(cell, args.hidden, args.layers, batch, len(ALPHABET)) / (
                    peak * 1e9)
                row["floor_ratio_vs_batch1"] = round(floor / per_step[1], 2)
            row.update(numpy=np.__version__, machine=platform.machine(), cpus=os.cpu_count(),
                       env=env)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
