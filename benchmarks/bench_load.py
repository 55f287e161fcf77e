#!/usr/bin/env python3
"""Speed on a busy machine: the default model, idle and beside CPU-bound busy loops.

For each load (0, 1 and 2 busy loops, each a separate process spinning in pure Python) and
each thread setting (the default, ``--threads 1``, ``--threads 2``, ``--threads auto``), this
trains the default model for ``--seconds`` in a fresh process and prints one JSON line:

    chars_per_s        characters trained per second of the run (start-up included)
    of_idle            chars_per_s / the default's median with no load
    of_baseline        with --baseline: chars_per_s / the same setting's on the baseline

``--command sample`` or ``--command inspect`` times the real command instead, on ``--model``:
``charrnn sample -n --chars``, or ``charrnn inspect --text --text`` (the whole command, start-up
included); there "threads 1" sets OPENBLAS_NUM_THREADS=1, the only other setting.

Settings are interleaved within each round, so that drift spreads over all of them; the
summary lines give the median over ``--rounds``. ``--baseline DIR`` runs every setting a second
time on the charrnn package in DIR (another checkout, say the previous release), interleaved,
labelled "<setting> @baseline". The busy loops end by themselves after the
time they were given, and are killed on any exit of the script (an error, Ctrl-C, SIGTERM).

    python benchmarks/bench_load.py --corpus tinyshakespeare.txt --seconds 25 --rounds 2
    python benchmarks/bench_load.py --command sample --model model.npz --rounds 3
    python benchmarks/bench_load.py --settings "default,threads 1,threads 2" --baseline /tmp/old
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from machine import machine

ROOT = Path(__file__).resolve().parents[1]
BASELINE = " @baseline"
SETTINGS = {"default": None, "threads 1": 1, "threads 2": 2, "threads auto": "auto"}

# one training run in a fresh process: prints the done report's figures as JSON
DRIVER = """
import json, sys, charrnn
corpus = charrnn.read_corpus([sys.argv[1]])
threads = None if sys.argv[3] == "None" else sys.argv[3]
threads = int(threads) if threads not in (None, "auto") else threads
last = None
for last in charrnn.train(corpus, sys.argv[2], force=True, threads=threads,
                          train_options={"max_time": float(sys.argv[4]), "eval_every": 10**9}):
    pass
info = last.info
print(json.dumps({"steps": info["steps_this_run"], "seconds": info["seconds"],
                  "chars_per_s": info["chars_per_s"]}))
"""


@contextmanager
def busy_loops(count: int, seconds: float):
    """`count` processes that each keep a core busy for at most `seconds`; always stopped."""
    spin = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(count)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def train_once(corpus: str, out: str, threads, seconds: float, code: str | None) -> dict:
    """One run, in a fresh process, of the charrnn in folder ``code`` (None: this one)."""
    env = {**os.environ, **({"PYTHONPATH": code} if code else {})}
    done = subprocess.run([sys.executable, "-c", DRIVER, corpus, out, str(threads), str(seconds)],
                          capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"training failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def command_once(args, setting: str) -> dict:
    """One `charrnn sample` or `charrnn inspect --text` run, timed from outside."""
    env = {**os.environ, **({"OPENBLAS_NUM_THREADS": "1"} if setting == "threads 1" else {})}
    if args.command == "sample":
        chars, cli = args.chars, ["sample", "-m", args.model, "-n", str(args.chars), "--seed", "1"]
    else:
        chars = len(Path(args.text).read_text(encoding="utf-8"))
        cli = ["inspect", args.model, "--text", args.text, "--unknown", "skip"]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "charrnn", *cli], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{args.command} failed:\n{done.stderr[-2000:]}")
    return {"chars": chars, "seconds": round(seconds, 3), "chars_per_s": chars / seconds}


def run_once(args, out: str, setting: str) -> dict:
    if args.command == "train":
        name = setting.removesuffix(BASELINE)
        code = args.baseline if setting.endswith(BASELINE) else None
        return train_once(args.corpus, out, SETTINGS[name], args.seconds, code)
    return command_once(args, setting)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=str(ROOT / "corpora" / "shakespeare_plays.txt"))
    ap.add_argument("--seconds", type=float, default=25.0, help="training time of each run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--loads", default="0,1,2", help="numbers of busy loops, comma-separated")
    ap.add_argument("--settings", help="comma-separated, of: " + ", ".join(SETTINGS)
                    + " (default: all but threads 2; sample and inspect: default, threads 1)")
    ap.add_argument("--command", choices=("train", "sample", "inspect"), default="train")
    ap.add_argument("--model", help="sample, inspect: the model file")
    ap.add_argument("--chars", type=int, default=5000, help="sample: characters to generate")
    ap.add_argument("--text", default=str(ROOT / "corpora" / "poems.txt"),
                    help="inspect: the text to show")
    ap.add_argument("--baseline", help="train: a folder whose charrnn package to run too")
    args = ap.parse_args()
    if args.command != "train" and not args.model:
        ap.error(f"--command {args.command} needs --model")
    settings = (args.settings or ("default,threads 1,threads auto" if args.command == "train"
                                  else "default,threads 1")).split(",")
    allowed = SETTINGS if args.command == "train" else ("default", "threads 1")
    if unknown := [name for name in settings if name not in allowed]:
        ap.error(f"--settings: no setting {unknown[0]!r} for {args.command}")
    if args.baseline:
        settings = [s for name in settings for s in (name, name + BASELINE)]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-ups, then exit
    loads = [int(n) for n in args.loads.split(",")]
    results: dict[tuple[int, str], list[float]] = {}
    out = str(Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_load_{os.getpid()}.npz")
    try:
        for round_ in range(args.rounds):
            for load in loads:
                with busy_loops(load, args.seconds * len(settings) * 2 + 60):
                    for name in settings:
                        got = run_once(args, out, name)
                        results.setdefault((load, name), []).append(got["chars_per_s"])
                        print(json.dumps({"kind": "run", "round": round_, "busy_loops": load,
                                          "setting": name, **got}), flush=True)
    finally:
        Path(out).unlink(missing_ok=True)
    def median(load: int, name: str) -> float:
        return statistics.median(results.get((load, name), [float("nan")]))

    for (load, name), speeds in sorted(results.items()):
        ours = not name.endswith(BASELINE)
        idle = median(0, "default" + ("" if ours else BASELINE))
        speed = statistics.median(speeds)
        versus = {"of_baseline": round(speed / median(load, name + BASELINE), 3)} \
            if ours and args.baseline else {}
        print(json.dumps({"kind": "median", "command": args.command, "busy_loops": load,
                          "setting": name, "chars_per_s": round(speed),
                          "of_idle": round(speed / idle, 3), **versus, "runs": len(speeds),
                          **machine()}))

if __name__ == "__main__":
    main()
