#!/usr/bin/env python3
"""Cost of the trust checks: the copy check and the reference models, JSON lines.

    python benchmarks/bench_trust.py [--repeats 3] [--big-mb 100] [--skip-big]

Copy check (``charrnn.copies``): a 10,000-character sample against the plays (1 MB) and against
a 100 MB corpus built in a temporary folder from the plays' lines, shuffled in each copy (deleted
after). Two samples: "random", characters drawn from the corpus's alphabet (a model that
learned nothing: short spans only, many small probes), and "copied", 10,000 characters of the
plays verbatim (a memorising model). Each corpus is measured in a fresh process that reads it
with ``read_corpus`` (ids, 1 byte a character) and checks through ``CopyIndex.from_ids``:

    {"kind": "copy_check", "corpus_chars", "sample", "seconds_median" (of --repeats checks),
     "longest", "copied_share", "rss_corpus_mb" (the process once the corpus is read),
     "rss_peak_mb" (after the checks: ru_maxrss), "check_peak_mb" (tracemalloc, one check)}

References (``charrnn.references``): fit on the first 90% of the plays, score the last 10%:

    {"kind": "references", "seconds_median", "share_of_2min_run", "peak_mb" (tracemalloc),
     "unigram", "ngram", "order", "fit_chars", "predictions"}

Every line carries the machine's CPU and BLAS settings (benchmarks/machine.py).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from machine import machine

from charrnn.copies import CopyIndex
from charrnn.data import read_corpus, split_train_val
from charrnn.references import reference_losses

PLAYS = Path(__file__).resolve().parents[1] / "corpora" / "shakespeare_plays.txt"
SAMPLE_CHARS = 10_000
RUN_SECONDS = 120  # the 2-minute run the references' time is compared with


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def samples(text: str) -> dict[str, str]:
    """The two samples: random characters of the plays' alphabet, and a verbatim slice."""
    rng = np.random.default_rng(0)
    middle = len(text) // 2
    return {"random": "".join(rng.choice(sorted(set(text)), SAMPLE_CHARS)),
            "copied": text[middle:middle + SAMPLE_CHARS]}


def copy_child(corpus_path: str, sample: str, repeats: int) -> dict:
    """In a fresh process: read the corpus, time the check, then measure its memory."""
    corpus = read_corpus(corpus_path)
    rss_corpus = rss_mb()
    index = CopyIndex.from_ids(corpus.ids, corpus.vocab.chars)
    text = samples(PLAYS.read_text())[sample]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        report = index.check(text)
        times.append(time.perf_counter() - start)
    rss_peak = rss_mb()
    tracemalloc.start()
    index.check(text)
    check_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {"kind": "copy_check", "corpus_chars": len(corpus), "sample": sample,
            "sample_chars": len(text), "seconds_median": round(statistics.median(times), 3),
            "seconds": [round(t, 3) for t in times], "longest": report.longest,
            "copied_share": round(report.copied_share, 4), "rss_corpus_mb": round(rss_corpus),
            "rss_peak_mb": round(rss_peak), "check_peak_mb": round(check_peak, 1)}


def measure_copy_check(corpus_path: Path, repeats: int) -> None:
    for sample in ("random", "copied"):
        done = subprocess.run([sys.executable, __file__, "--child", str(corpus_path), sample,
                               "--repeats", str(repeats)], capture_output=True, text=True)
        if done.returncode:
            sys.exit(done.stderr[-2000:])
        print(json.dumps({**json.loads(done.stdout), **machine()}), flush=True)


def build_big(folder: Path, megabytes: float) -> Path:
    """A corpus of about `megabytes` MB: copies of the plays' lines, each copy shuffled."""
    lines = PLAYS.read_text().splitlines(keepends=True)
    rng, size, path = random.Random(0), 0, folder / "big.txt"
    with path.open("w") as f:
        while size < megabytes * 1e6:
            rng.shuffle(lines)
            copy = "".join(lines)[:int(megabytes * 1e6) - size]
            f.write(copy)
            size += len(copy)
    return path


def measure_references(repeats: int) -> None:
    corpus = read_corpus(PLAYS)
    train, val = split_train_val(corpus.ids, 0.1)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = reference_losses(train, val, len(corpus.vocab))
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    reference_losses(train, val, len(corpus.vocab))
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    seconds = statistics.median(times)
    print(json.dumps({"kind": "references", "corpus": PLAYS.name,
                      "seconds_median": round(seconds, 3), "seconds": [round(t, 3) for t in times],
                      "share_of_2min_run": round(seconds / RUN_SECONDS, 5),
                      "peak_mb": round(peak, 1),
                      **{k: round(v, 4) if isinstance(v, float) else v
                         for k, v in result.items()}, **machine()}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--big-mb", type=float, default=100.0)
    ap.add_argument("--skip-big", action="store_true", help="only the 1 MB corpus")
    ap.add_argument("--child", nargs=2, metavar=("CORPUS", "SAMPLE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(copy_child(*args.child, args.repeats)))
        return
    measure_references(max(args.repeats, 5))
    measure_copy_check(PLAYS, args.repeats)
    if not args.skip_big:
        with tempfile.TemporaryDirectory() as folder:
            measure_copy_check(build_big(Path(folder), args.big_mb), args.repeats)


if __name__ == "__main__":
    main()
