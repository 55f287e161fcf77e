#!/usr/bin/env python3
"""Where a default training run's time goes, at corpus sizes from 100 KB to 100 MB.

For each size, a corpus is made in a temporary folder by repeating a shipped text, and
`charrnn.train` runs the defaults (plus any options given after `--`) for ``--seconds``. One
JSON line per size:

    steps_share, validation_share, saving_share, other_share   fractions of the wall time
    overhead_share     validation + saving
    eval_every         the validation interval the run used
    scored_chars       characters each validation scores

    python benchmarks/bench_overhead.py --seconds 60 --sizes 100K,1M,20M,100M
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import charrnn

ROOT = Path(__file__).resolve().parents[1]
UNITS = {"K": 1_000, "M": 1_000_000}


def size(text: str) -> int:
    return int(float(text[:-1]) * UNITS[text[-1].upper()]) if text[-1].isalpha() else int(text)


def make_corpus(folder: Path, chars: int, source: Path) -> Path:
    """A corpus of about `chars` characters: the source text repeated (then cut)."""
    text = source.read_text(encoding="utf-8")
    path = folder / f"corpus_{chars}.txt"
    with open(path, "w", encoding="utf-8") as f:
        left = chars
        while left > 0:
            f.write(text[:left])
            left -= len(text)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--sizes", default="100K,1M,20M,100M")
    ap.add_argument("--source", default=str(ROOT / "corpora" / "shakespeare_plays.txt"))
    ap.add_argument("--hidden-size", type=int, default=None)
    args = ap.parse_args()
    model_options = {"hidden_size": args.hidden_size} if args.hidden_size else {}
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.sizes.split(","):
            corpus_path = make_corpus(Path(tmp), size(label), Path(args.source))
            corpus = charrnn.read_corpus([corpus_path])
            out = Path(tmp) / "model.npz"
            last = start = None
            for last in charrnn.train(corpus, out, force=True, model_options=model_options,
                                      train_options={"max_time": args.seconds}):
                start = start or last
            info, wall = last.info, last.info["seconds"]
            split = info["time_split"]
            print(json.dumps({
                "corpus": label, "chars": len(corpus), "seconds": round(wall, 2),
                "steps": info["steps_this_run"], "eval_every": start.info["eval_every"],
                "scored_chars": start.info["validation"]["chars"],
                **{f"{k}_share": round(v / wall, 4) for k, v in split.items()},
                "overhead_share": round((split["validation"] + split["saving"]) / wall, 4),
                "stepping_chars_per_s": round(info["stepping_chars_per_s"]),
                "overall_chars_per_s": round(info["chars_per_s"]),
                "file_mb": round(out.stat().st_size / 1e6, 1),
                "cpu": platform.processor() or platform.machine(),
                "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}), flush=True)
            del corpus


if __name__ == "__main__":
    main()
