#!/usr/bin/env python3
"""Peak memory of `charrnn train` on a large corpus (default 100 MB), as one JSON line.

Builds the corpus in a temporary folder by repeating a text file (each copy with one
character changed, so it is not one string repeated), runs a few training steps with the
real command (`--max-steps`, evaluation on the validation tail at the end) and reports the
child's peak resident memory against the corpus size. Example:

    python benchmarks/bench_memory.py --source tinyshakespeare.txt
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", required=True, help="text file to repeat")
    ap.add_argument("--mb", type=float, default=100.0, help="corpus size in MB")
    ap.add_argument("--val-frac", default="0.1")
    ap.add_argument("extra", nargs="*", help="more `charrnn train` options (after --)")
    args = ap.parse_args()
    text = Path(args.source).read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "big.txt"
        with corpus.open("wb") as f:
            size, k = 0, 0
            while size < args.mb * 1e6:
                copy = bytearray(text)
                copy[k % len(copy)] = ord("\n")  # perturb each copy a little
                f.write(copy)
                size, k = size + len(copy), k + 7919
        cmd = [sys.executable, "-m", "charrnn", "train", str(corpus), "-o",
               str(Path(tmp) / "m.npz"), "--max-steps", "3", "--val-frac", args.val_frac,
               "--from-scratch", *args.extra]  # a new model, as the figures always measured
        t0 = time.perf_counter()
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - t0
        if done.returncode:
            sys.exit(done.stderr[-2000:])
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        print(json.dumps({"kind": "memory", "corpus_bytes": size, "options": args.extra,
                          "val_frac": float(args.val_frac), "peak_rss_bytes": peak,
                          "ratio": round(peak / size, 3), "seconds": round(seconds, 1)}))


if __name__ == "__main__":
    main()
