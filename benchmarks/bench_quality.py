#!/usr/bin/env python3
"""Model quality per minute: `charrnn train` (the real command) under --max-time on a corpus.

Trains with the defaults (plus any extra options given after `--`), the last 10% of the text
as validation, then prints one JSON line per evaluation (step, seconds, train and validation
loss), one line with the best validation loss (nats, perplexity, bits per character), and the
final sample from the best weights. Example:

    python benchmarks/bench_quality.py --corpus tinyshakespeare.txt \\
        --max-time 10m -- --dropout 0.2
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from charrnn import checkpoint


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--max-time", default="10m")
    ap.add_argument("--sample-length", type=int, default=600)
    ap.add_argument("--tag", default="")
    ap.add_argument("extra", nargs="*", help="more `charrnn train` options (after --)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.npz"
        cmd = [sys.executable, "-m", "charrnn", "train", args.corpus, "-o", str(model),
               "--max-time", args.max_time, "--val-frac", "0.1", *args.extra]
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        if done.returncode != 0:
            sys.exit(f"training failed:\n{done.stderr[-2000:]}")
        ck = checkpoint.load(model)
        for row in ck.history:
            print(json.dumps({"kind": "curve", "tag": args.tag, **row}))
        best = ck.best["val_loss"]
        cfg, tcfg = ck.model.config, ck.resume.train_config
        print(json.dumps({
            "kind": "best", "tag": args.tag, "corpus": Path(args.corpus).name,
            "max_time": args.max_time, "options": args.extra, "cell": cfg.cell,
            "layers": cfg.num_layers, "hidden": cfg.hidden_size, "dropout": cfg.dropout,
            "batch": tcfg.batch_size, "seq": tcfg.seq_len, "lr": tcfg.lr,
            "steps": ck.resume.step, "best_step": ck.best["step"], "best_val_loss": best,
            "perplexity": math.exp(best), "bits_per_char": best / math.log(2)}))
        text = ck.model.sample(args.sample_length, prime="\n", temperature=0.8, seed=1)
        print(json.dumps({"kind": "sample", "tag": args.tag, "temperature": 0.8,
                          "text": text}))


if __name__ == "__main__":
    main()
