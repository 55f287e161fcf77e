#!/usr/bin/env python3
"""Model quality per minute: `charrnn train` (the real command) under --max-time on a corpus.

Trains with the defaults (plus any extra options given after `--`), the last 10% of the text
as validation, then prints one JSON line per evaluation (step, seconds, train and validation
loss), one line with the best validation loss (nats, perplexity, bits per character) and what
was chosen, and the final sample from the best weights. Examples:

    python benchmarks/bench_quality.py --corpus tinyshakespeare.txt \\
        --max-time 10m -- --dropout 0.2
    python benchmarks/bench_quality.py --table --tinyshakespeare tinyshakespeare.txt

`--table` runs the README's quality table: each corpus and budget `--runs` times (default 2),
rounds interleaved, one "best" line per run and one "median" line per corpus. `--table
machine` runs the table of the timed defaults (tinyshakespeare 10 minutes, the plays 5, the
Sonnets 2) instead, with targets; `--busy-loops 1 -- --threads 1` stands for a slow machine.
The machine table trains from scratch (`--from-scratch`): it measures the chosen new models,
and the built-in base has read Shakespeare. Each "best" line says where the best step came
(`best_at`: best step / steps) and carries the CPU and the OpenBLAS settings.

`--table base` measures the built-in English base: the Sonnets (2 minutes) and the poems (1
minute) with the defaults, which fine-tune the base, against their targets; then each text of
`--heldout DIR` (verse.txt, prose.txt, code.txt: texts the base never saw, which
corpora/tools/build_base.py holds out) at 2 minutes, with the defaults and with
`--from-scratch`, rounds interleaved, and the median gain of the base against its target.

    python benchmarks/bench_quality.py --table machine --tinyshakespeare tinyshakespeare.txt
    python benchmarks/bench_quality.py --table machine --tinyshakespeare tinyshakespeare.txt \
        --busy-loops 1 --tag slow -- --threads 1
    python benchmarks/bench_quality.py --table base --heldout corpora/base/heldout
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_load import busy_loops
from machine import machine

from charrnn import checkpoint

CORPORA = Path(__file__).resolve().parents[1] / "corpora"
#: the README's table: (corpus, --max-time); tinyshakespeare is not shipped (--tinyshakespeare)
TABLE = (("tinyshakespeare", "10m"), (CORPORA / "sonnets.txt", "2m"),
         (CORPORA / "poems.txt", "1m"), (CORPORA / "shakespeare_plays.txt", "5m"))
#: the timed defaults' table (docs/loss.md): (corpus, --max-time, the target at full speed and
#: on a slow machine); each run's best step must come in its last 15%
MACHINE_TABLE = (("tinyshakespeare", "10m", 1.44, 1.46),
                 (CORPORA / "shakespeare_plays.txt", "5m", 1.64, 1.66),
                 (CORPORA / "sonnets.txt", "2m", 1.60, 1.62))
LATE = 0.85  # the best step comes after this share of the run's steps
#: the built-in base's table: the defaults, which fine-tune it, against a target ...
BASE_TABLE = ((CORPORA / "sonnets.txt", "2m", 1.45), (CORPORA / "poems.txt", "1m", 1.80))
#: ... and texts it never saw, with the defaults and from scratch: the base must gain this much
HELDOUT, HELDOUT_TIME, MIN_GAIN = ("verse.txt", "prose.txt", "code.txt"), "2m", 0.15


def one_run(corpus, max_time: str, extra: list[str], tag: str, sample_length: int) -> dict:
    """Train once; print the curve and the sample; return the "best" line."""
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.npz"
        cmd = [sys.executable, "-m", "charrnn", "train", str(corpus), "-o", str(model),
               "--max-time", max_time, "--val-frac", "0.1", *extra]
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        if done.returncode != 0:
            sys.exit(f"training failed:\n{done.stderr[-2000:]}")
        ck = checkpoint.load(model)
    for row in ck.history:
        print(json.dumps({"kind": "curve", "tag": tag, **row}))
    best = ck.best["val_loss"]
    cfg, tcfg = ck.model.config, ck.resume.train_config
    line = {"kind": "best", "tag": tag, "corpus": Path(corpus).name, "max_time": max_time,
            "options": extra, "cell": cfg.cell, "layers": cfg.num_layers,
            "hidden": cfg.hidden_size, "dropout": cfg.dropout, "batch": tcfg.batch_size,
            "seq": tcfg.seq_len, "lr": tcfg.lr, "epochs": tcfg.epochs,
            "chosen": getattr(ck, "chosen", None),  # None in files before format 3
            "steps": ck.resume.step, "best_step": ck.best["step"],
            "best_at": round(ck.best["step"] / max(ck.resume.step, 1), 3),
            "best_val_loss": best, "perplexity": math.exp(best),
            "bits_per_char": best / math.log(2), **machine()}
    print(json.dumps(line), flush=True)
    text = ck.model.sample(sample_length, prime="\n", temperature=0.8, seed=1)
    print(json.dumps({"kind": "sample", "tag": tag, "temperature": 0.8, "text": text}))
    return line


def table(args) -> None:
    machine_table = args.table == "machine"
    if args.table == "base":
        return base_table(args)
    rows = MACHINE_TABLE if machine_table else [(c, t, None, None) for c, t in TABLE]
    extra = ["--from-scratch", *args.extra] if machine_table else args.extra
    rows = [(args.tinyshakespeare if c == "tinyshakespeare" else c, *rest) for c, *rest in rows]
    rows = [row for row in rows if row[0] is not None]
    results: dict[str, list[dict]] = {}
    with busy_loops(args.busy_loops, 24 * 3600):
        for round_ in range(args.runs):
            for corpus, max_time, *_ in rows:
                line = one_run(corpus, max_time, extra, f"{args.tag}round{round_ + 1}",
                               args.sample_length)
                results.setdefault(f"{Path(corpus).name} {max_time}", []).append(line)
    for (corpus, max_time, full, slow), lines in zip(rows, results.values(), strict=True):
        losses = [line["best_val_loss"] for line in lines]
        median = {"kind": "median", "tag": args.tag, "corpus": Path(corpus).name,
                  "max_time": max_time, "options": extra, "busy_loops": args.busy_loops,
                  "runs": losses, "best_val_loss_median": statistics.median(losses),
                  "best_at": [line["best_at"] for line in lines], **machine()}
        if machine_table:
            target = slow if args.busy_loops else full
            median.update(target=target, met=median["best_val_loss_median"] <= target
                          and all(line["best_at"] >= LATE for line in lines))
        print(json.dumps(median), flush=True)


def base_table(args) -> None:
    """The built-in base's acceptance: the defaults on the shipped small texts, then the
    held-out texts from the base (the defaults) and from scratch."""
    runs: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.runs):
        tag = f"{args.tag}round{round_ + 1}"
        for corpus, max_time, _ in BASE_TABLE:
            line = one_run(corpus, max_time, args.extra, tag, args.sample_length)
            runs.setdefault((Path(corpus).name, "base"), []).append(line["best_val_loss"])
        for name in HELDOUT if args.heldout else ():
            for how, extra in (("base", []), ("scratch", ["--from-scratch"])):
                line = one_run(Path(args.heldout) / name, HELDOUT_TIME, [*extra, *args.extra],
                               tag, args.sample_length)
                runs.setdefault((name, how), []).append(line["best_val_loss"])
    median = {key: statistics.median(losses) for key, losses in runs.items()}
    for corpus, max_time, target in BASE_TABLE:
        name = Path(corpus).name
        print(json.dumps({"kind": "median", "tag": args.tag, "corpus": name,
                          "max_time": max_time, "runs": runs[name, "base"],
                          "best_val_loss_median": median[name, "base"], "target": target,
                          "met": median[name, "base"] <= target, **machine()}), flush=True)
    for name in HELDOUT if args.heldout else ():
        gain = median[name, "scratch"] - median[name, "base"]
        print(json.dumps({"kind": "median", "tag": args.tag, "corpus": name,
                          "max_time": HELDOUT_TIME, "base": runs[name, "base"],
                          "scratch": runs[name, "scratch"], "gain": gain,
                          "target": MIN_GAIN, "met": gain >= MIN_GAIN, **machine()}),
              flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus")
    ap.add_argument("--max-time", default="10m")
    ap.add_argument("--table", nargs="?", const="readme", choices=("readme", "machine", "base"),
                    help="run the README's quality table, the timed defaults' (machine) or "
                         "the built-in base's (base)")
    ap.add_argument("--heldout", help="--table base: the folder of the held-out texts")
    ap.add_argument("--busy-loops", type=int, default=0,
                    help="--table: busy loops (one core each) beside the runs")
    ap.add_argument("--tinyshakespeare", help="--table: the tinyshakespeare corpus's path "
                    "(left out of the table without it)")
    ap.add_argument("--runs", type=int, default=2, help="--table: runs of each row")
    ap.add_argument("--sample-length", type=int, default=600)
    ap.add_argument("--tag", default="")
    ap.add_argument("extra", nargs="*", help="more `charrnn train` options (after --)")
    args = ap.parse_args()
    if args.table:
        table(args)
    elif args.corpus:
        one_run(args.corpus, args.max_time, args.extra, args.tag, args.sample_length)
    else:
        ap.error("give --corpus, or --table")


if __name__ == "__main__":
    main()
