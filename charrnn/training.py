"""Training: the fit loop (truncated BPTT, clipping, schedule), evaluation, and ``train``.

``train(...)`` returns an iterator of ``Report`` events (start, step, eval, sample, saved,
done); the command line renders them, a library user may simply exhaust it. Everything a run
needs to continue bit for bit is saved at every evaluation, at the end and when stopped early
(bit for bit with the same BLAS thread count: see ``charrnn.blas``).

Evaluation scores every character of a text exactly once:

    loss = -(1/N) sum_i log p(x_{i+1} | x_0..x_i)    over the N = n - 1 predictions

computed as S parallel streams (so it is fast) that each start from the zero state; S and the
window depend only on the text's length, so ``charrnn eval`` on the validation text reports
exactly what training reported.
"""

from __future__ import annotations

import math
import numbers
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import blas, checkpoint, sampling
from .config import MAX_THREADS, ModelConfig, TrainConfig
from .data import Corpus, StreamBatches, min_chars, split_train_val
from .errors import CharRNNError, ConfigError, DataError, DivergenceError
from .model import CharRNN
from .optim import clip_grad_norm, make_optimizer

__all__ = ["Report", "TrainingUsageError", "evaluate", "evaluation_losses", "train"]

EVAL_WINDOW = 64  # characters per stream per forward call in evaluation (bounds its memory)
EVAL_STREAM_CHARS = 2048  # evaluation uses one stream per this many characters (at most 64)
BUSY_SHARE = 0.85  # the training thread got less of its core than this: say --threads may help
MAX_LOSS = 1e4  # nats/char: no model that learns comes near (a uniform guess costs ln V ~ 4-9)
MIN_VAL_CHARS = 2  # fewer validation characters than this: no validation at all
COUNT_CHUNK = 1 << 22  # characters counted at a time (bounds memory on large corpora)
COSINE_FLOOR = 0.05  # the cosine schedule ends at this fraction of --lr
SAMPLE_TEMPERATURE = 0.8  # progress samples: a little sharper than the raw distribution


class TrainingUsageError(CharRNNError):
    """A problem with the command's arguments found before any work starts (exit code 2)."""

    exit_code = 2


# ----------------------------------------------------------------------------- evaluation

def _eval_layout(n_predictions: int) -> tuple[int, int]:
    """(streams, stream length) for scoring n predictions; depends on n alone."""
    streams = max(1, min(64, n_predictions // EVAL_STREAM_CHARS))
    return streams, -(-n_predictions // streams)


def _scored_windows(model: CharRNN, ids: np.ndarray,
                    on_progress: Callable[[int, int], None] | None = None):
    """Yield (window losses (S, w) float64, mask of the real predictions (S, w)) in order."""
    n = len(ids) - 1
    S, per = _eval_layout(n)
    # streams of `per` predictions; the last one is padded and its padding ignored. Inputs and
    # targets are views of one padded copy in the ids' own (small) dtype.
    padded = np.zeros(S * per + 1, ids.dtype)
    padded[:n + 1] = ids
    inputs = padded[:-1].reshape(S, per)
    targets = padded[1:].reshape(S, per)
    first = np.arange(S)[:, None] * per  # position of each stream's first prediction
    state = model.initial_state(S)
    for start in range(0, per, EVAL_WINDOW):
        stop = min(per, start + EVAL_WINDOW)
        losses, state = model.losses(inputs[:, start:stop], targets[:, start:stop], state)
        yield losses, first + np.arange(start, stop)[None, :] < n
        if on_progress is not None:
            on_progress(min(n, stop * S), n)


def evaluation_losses(model: CharRNN, ids: np.ndarray,
                      on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """-log p of each next character: ids (n,) -> (n - 1,) float64, every prediction once."""
    n = len(ids) - 1
    if n < 1:
        return np.zeros(0)
    S, per = _eval_layout(n)
    out = np.empty((S, per))
    col = 0
    for losses, _ in _scored_windows(model, ids, on_progress):
        out[:, col:col + losses.shape[1]] = losses
        col += losses.shape[1]
    return out.reshape(-1)[:n]


def evaluate(model: CharRNN, ids: np.ndarray,
             on_progress: Callable[[int, int], None] | None = None) -> float:
    """Mean loss in nats per character of predicting ids[1:] from what precedes (see module).

    Sums window by window, so memory does not grow with the text.
    """
    n = len(ids) - 1
    if n < 1:
        return math.nan
    total = 0.0
    for losses, real in _scored_windows(model, ids, on_progress):
        total += float(losses[real].sum())
    return total / n


# ----------------------------------------------------------------------------- reports

@dataclass
class Report:
    """One event of a training run, with a snapshot of everything the live view shows."""

    kind: str  # start | step | eval | sample | saved | notice | done
    step: int = 0  # optimizer steps taken in the whole run
    total_steps: int | None = None  # steps the run will stop at, if a step/epoch limit is set
    epoch: float = 0.0  # passes over the training text so far (fractional)
    train_loss: float = math.nan  # smoothed training loss (nats/char)
    val_loss: float | None = None  # latest validation loss
    best_val: float | None = None  # best validation loss so far
    best_step: int | None = None
    lr: float = 0.0  # the rate of the latest step (before any: of the first)
    chars_per_s: float = 0.0  # training throughput over the recent steps
    elapsed: float = 0.0  # seconds of training in this invocation
    time_limit: float = 0.0  # --max-time in seconds (0: none)
    text: str = ""  # the sample, or the notice
    path: str = ""  # the model file
    info: dict[str, Any] = field(default_factory=dict)  # start/done details


# ----------------------------------------------------------------------------- the run

# A diverging run overflows on its way to inf/nan; the finite checks of the loss, the gradient
# norm and the validation loss stop it with one message, so NumPy's warnings are left out.
def _quiet() -> np.errstate:
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


@dataclass
class _Run:
    """Mutable state of a run: exactly what a model file's resume section holds."""

    model: CharRNN
    optimizer: Any
    rng: np.random.Generator
    hidden: np.ndarray
    step: int = 0
    window: int = 0
    epoch: int = 0
    elapsed_before: float = 0.0  # training seconds of earlier invocations
    history: list[dict[str, Any]] = field(default_factory=list)
    best_params: dict[str, np.ndarray] | None = None
    best: dict[str, Any] | None = None


def _lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """The learning rate for a step.

    constant: ``lr * lr_decay ** (step // lr_decay_every)`` (step decay, if set).
    cosine: ``lr * (m + (1 - m) * (1 + cos(pi * progress)) / 2)`` with m = COSINE_FLOOR, where
    progress in [0, 1] is how far the run is towards its step/epoch limit or its --max-time,
    whichever is further (no limit: progress stays 0, a constant rate).
    """
    if cfg.lr_schedule == "cosine":
        p = min(1.0, max(0.0, progress))
        return cfg.lr * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * p)))
    if cfg.lr_decay_every <= 0 or cfg.lr_decay == 1.0:
        return cfg.lr
    return cfg.lr * cfg.lr_decay ** (step // cfg.lr_decay_every)


def _stalled(run: _Run, cfg: TrainConfig) -> bool:
    """True when the last `patience` evaluations all failed to beat the best validation loss."""
    if not cfg.patience or run.best is None or run.best.get("val_loss") is None:
        return False
    since_best = [row for row in run.history if row["step"] > run.best["step"]]
    return len(since_best) >= cfg.patience


def _corpus_facts(corpus: Corpus) -> dict[str, Any]:
    counts = np.zeros(len(corpus.vocab), np.int64)
    for start in range(0, len(corpus.ids), COUNT_CHUNK):  # bincount widens ids to int64
        counts += np.bincount(corpus.ids[start:start + COUNT_CHUNK], minlength=len(counts))
    return {"name": corpus.name, "size": corpus.size_bytes, "sha256": corpus.sha256,
            "chars": len(corpus), "char_counts": [int(k) for k in counts]}  # in vocab order


def _may_replace(target: Path) -> bool:
    """Whether a new file may be renamed over ``target``: not in a sticky folder (/tmp) unless
    we own the file or the folder (or are root)."""
    if not hasattr(os, "geteuid"):
        return True
    me, folder = os.geteuid(), target.parent.stat()
    return (not folder.st_mode & stat.S_ISVTX) or me in (0, folder.st_uid, target.stat().st_uid)


def _check_output(path: Path, resume: bool, force: bool) -> None:
    target = Path(os.path.realpath(path))  # a symbolic link is written through to its target
    folder = target.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise TrainingUsageError(f"cannot write {path}: {folder} {what}")
    if path.is_dir():
        raise TrainingUsageError(f"cannot write {path}: it is a directory")
    if target.exists() and not target.is_file():
        raise TrainingUsageError(f"cannot write {path}: not a regular file (a device, a pipe "
                                 "or a socket)")
    if not os.access(folder, os.W_OK):
        raise TrainingUsageError(f"cannot write {path}: folder {folder} is not writable")
    if target.exists() and not _may_replace(target):
        raise TrainingUsageError(f"cannot write {path}: it belongs to another user, in a folder "
                                 "where only a file's owner may replace it (sticky, like /tmp)")
    if path.exists() and not (resume or force):
        raise TrainingUsageError(f"{path} already exists; pass --resume to continue training it "
                                 "or --force to overwrite it")
    if resume and not path.exists():
        raise TrainingUsageError(f"cannot resume: {path} does not exist")
    if resume and force:
        raise TrainingUsageError("--resume continues a model and --force starts a new one; "
                                 "pass one of them")


def _fit_to_corpus(cfg: TrainConfig, n_chars: int) -> tuple[TrainConfig, list[str]]:
    """Shrink the window and the batch (and drop validation) so a small corpus still trains;
    say so."""
    notes = []
    val_n = int(n_chars * cfg.val_frac + 0.5)
    if cfg.val_frac > 0 and val_n < MIN_VAL_CHARS:
        cfg = cfg.replace(val_frac=0.0)
        notes.append("the corpus is too small to hold out validation text; training without "
                     "validation (the saved weights are the latest)")
        val_n = 0
    train_n = n_chars - val_n
    if train_n < 2:
        raise DataError(f"the corpus has {train_n} training character(s); at least 2 are needed "
                        "(one to read, one to predict)")
    if train_n < min_chars(1, cfg.seq_len):
        notes.append(f"the corpus has {train_n} training characters, fewer than one window of "
                     f"--seq-len {cfg.seq_len} + 1: using --seq-len {train_n - 1}")
        cfg = cfg.replace(seq_len=train_n - 1)
    fit = (train_n - 1) // cfg.seq_len
    if fit < cfg.batch_size:
        notes.append(f"the corpus has {train_n:,} training characters, enough for {fit:,} "
                     f"stream{'' if fit == 1 else 's'} of --seq-len {cfg.seq_len}: using "
                     f"--batch-size {fit} instead of {cfg.batch_size}")
        cfg = cfg.replace(batch_size=fit)
    return cfg, notes


def _resumed(ck: checkpoint.Checkpoint, corpus: Corpus, model_options: dict[str, Any],
             train_options: dict[str, Any], path: Path) -> tuple[_Run, TrainConfig, list[str]]:
    """Rebuild a run from a model file, refusing what would not continue the same run; with
    notes on options that a resumed run does not take."""
    if ck.resume is None:
        raise TrainingUsageError(f"cannot resume: {path} holds no training state (it was saved "
                                 "for sampling only); use --force to start a new model")
    rs = ck.resume
    cfg = ck.model.config
    if ck.model.vocab != corpus.vocab:
        raise TrainingUsageError(
            f"cannot resume: the corpus's characters differ from the model's vocabulary "
            f"({len(corpus.vocab)} vs {len(ck.model.vocab)} characters); train on the same "
            "text or start a new model with --force")
    if ck.corpus and ck.corpus.get("sha256") != corpus.sha256:
        raise TrainingUsageError(
            f"cannot resume: the corpus differs from the one {path} was trained on "
            f"({ck.corpus.get('name')}, sha256 {str(ck.corpus.get('sha256'))[:12]}...); "
            "train on the same text or start a new model with --force")
    differs = [f"--{k.replace('_', '-')} {v} (model has {getattr(cfg, k)})"
               for k, v in model_options.items() if getattr(cfg, k) != v]
    notes = []
    if train_options.get("seed", rs.train_config.seed) != rs.train_config.seed:
        notes.append(f"--seed {train_options['seed']} is left aside: a resumed run goes on with "
                     f"the random state saved in {path.name} (the run's seed is "
                     f"{rs.train_config.seed})")
    train_options = {k: v for k, v in train_options.items() if k != "seed"}
    # --max-time limits one invocation: a resumed run has none unless given again
    tcfg = rs.train_config.replace(**{"max_time": 0.0, **train_options})
    # options the first run shrank to fit the corpus compare as shrunk the same way
    tcfg, fitted = _fit_to_corpus(tcfg, len(corpus))
    notes += fitted
    for k in ("batch_size", "seq_len", "val_frac"):
        if getattr(tcfg, k) != getattr(rs.train_config, k):
            differs.append(f"--{k.replace('_', '-')} {getattr(tcfg, k)} (the run uses "
                           f"{getattr(rs.train_config, k)}; it fixes the data layout)")
    if differs:
        raise TrainingUsageError("cannot resume with different options: " + "; ".join(differs))
    model = CharRNN(cfg, rs.params, vocab=ck.model.vocab, dtype=ck.model.dtype)
    optimizer = make_optimizer(rs.train_config.optimizer, model.params)
    optimizer.load_state_dict(rs.optimizer_state)
    if tcfg.optimizer != rs.train_config.optimizer:
        raise TrainingUsageError(f"cannot resume with --optimizer {tcfg.optimizer}: the run "
                                 f"uses {rs.train_config.optimizer}")
    rng = np.random.default_rng()
    rng.bit_generator.state = rs.rng_state
    run = _Run(model, optimizer, rng, rs.hidden.copy(), rs.step, rs.window, rs.epoch,
               rs.elapsed, list(ck.history),
               {k: v.copy() for k, v in ck.model.params.items()}, ck.best)
    return run, tcfg, notes


def train(corpus: Corpus, output: str | Path, *, model_options: dict[str, Any] | None = None,
          train_options: dict[str, Any] | None = None, resume: bool = False,
          force: bool = False, should_stop: Callable[[], bool] = lambda: False,
          threads: int | str | None = None, dtype=np.float32) -> Iterator[Report]:
    """Train a model on a corpus, checkpointing to ``output``; returns an iterator of
    ``Report`` events, which runs the training as it is consumed.

    ``model_options``/``train_options`` are ModelConfig/TrainConfig fields the user set; on
    resume, the others come from the model file. The options, the output path and the model
    file to resume are checked here, before the first event. ``should_stop`` is polled before
    every step (Ctrl-C): the run then saves its latest state without another validation (so a
    resumed run goes on exactly as if never stopped) and ends with a ``done`` report whose
    ``info["stopped"]`` is "interrupted".

    ``threads``: BLAS threads for the run (process-wide while it runs, restored after): None
    leaves the count alone, a number fixes it, "auto" times the steps and keeps the faster of
    all threads and one (see ``charrnn.blas.ThreadChooser``; the model then depends, in its
    last bits, on the machine's load).
    """
    model_options = dict(model_options or {})
    train_options = dict(train_options or {})
    _check_option_names("model_options", model_options, ModelConfig, exclude={"vocab_size"})
    _check_option_names("train_options", train_options, TrainConfig)
    path = Path(output)
    _check_threads(threads)
    _check_output(path, resume, force)
    if resume:
        ck = checkpoint.load(path)
        run, cfg, notes = _resumed(ck, corpus, model_options, train_options, path)
    else:
        cfg, notes = _fit_to_corpus(TrainConfig(**train_options), len(corpus))
        mcfg = ModelConfig(**{**model_options, "vocab_size": len(corpus.vocab)})
        rng = np.random.default_rng(cfg.seed)
        model = CharRNN(mcfg, vocab=corpus.vocab, dtype=dtype, seed=rng)
        run = _Run(model, make_optimizer(cfg.optimizer, model.params), rng,
                   model.initial_state(cfg.batch_size))
    saved = run.step if resume else None
    chooser = blas.ThreadChooser() if threads == "auto" else None
    fixed = int(threads) if isinstance(threads, numbers.Integral) else None
    notes += _thread_notes(fixed, chooser)
    reports = _fit(run, cfg, corpus, path, corpus.notes() + notes, should_stop, saved, chooser,
                   hint_threads=threads is None)
    return _with_threads(fixed, chooser, reports)


def _check_option_names(what: str, options: dict[str, Any], config: type,
                        exclude=frozenset()) -> None:
    known = set(config.__dataclass_fields__) - set(exclude)
    unknown = sorted(set(options) - known, key=str)
    if unknown:
        raise ConfigError(f"{what} has no option {unknown[0]!r}; it takes "
                          + ", ".join(sorted(known)))


def _busy_hint(share: blas.CoreShare) -> str | None:
    """A note when the training thread got much less than its core, window after window."""
    got = share.busy(BUSY_SHARE)
    if got is None:
        return None
    return (f"other processes keep the cores busy (training got {got:.0%} of its core): "
            "--threads 1 (or auto) may train much faster")


def _thread_notes(fixed: int | None, chooser: blas.ThreadChooser | None) -> list[str]:
    """What a user should know about the --threads they gave."""
    if (chooser is not None and not chooser.active) or (fixed and blas.openblas() is None):
        return ["--threads has no effect here (NumPy's BLAS is not OpenBLAS, or it runs one "
                "thread); OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or MKL_NUM_THREADS, set "
                "before the start, choose the count"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    if fixed and fixed > cores:
        return [f"--threads {fixed} is more than this machine's {cores} core(s): threads "
                "beyond the cores wait for each other, which makes training slower, not faster"]
    return []


def _broken_loss(what: str, loss: float) -> str | None:
    """Why a loss means the run diverged (not a number, or absurd), or None when it is fine."""
    if math.isfinite(loss) and loss <= MAX_LOSS:
        return None
    beyond = f" (beyond {MAX_LOSS:,.0f} nats per character)" if math.isfinite(loss) else ""
    return f"the {what} is {loss:.6g}{beyond}"


def _check_threads(threads) -> None:
    ok = threads in (None, "auto") or (isinstance(threads, numbers.Integral)
                                       and not isinstance(threads, bool)
                                       and 1 <= threads <= MAX_THREADS)
    if not ok:
        raise TrainingUsageError(f"threads must be a number from 1 to {MAX_THREADS} or 'auto', "
                                 f"not {threads!r}")


def _with_threads(fixed: int | None, chooser: blas.ThreadChooser | None,
                  reports: Iterator[Report]) -> Iterator[Report]:
    """The reports, run with ``fixed`` BLAS threads (or as the chooser sets them); then, at the
    end, on an error or when the caller stops, the count as it was."""
    with blas.threads(fixed):
        try:
            yield from reports
        finally:
            if chooser is not None:
                chooser.close()


def _fit(run: _Run, cfg: TrainConfig, corpus: Corpus, path: Path, notes: list[str],
         should_stop: Callable[[], bool], saved: int | None,
         chooser: blas.ThreadChooser | None, hint_threads: bool) -> Iterator[Report]:
    """The training loop; ``saved`` is the step the model file at ``path`` holds for this
    run (None: nothing saved yet); ``chooser`` (or None) times the steps and sets BLAS's
    threads; ``hint_threads``: watch, second by second, whether other processes keep the
    training from its core, and say so (once)."""
    model = run.model
    train_ids, val_ids = split_train_val(corpus.ids, cfg.val_frac)
    batches = StreamBatches(train_ids, cfg.batch_size, cfg.seq_len)
    per_epoch = len(batches)
    limits = [s for s in (cfg.max_steps, math.ceil(cfg.epochs * per_epoch)) if s > 0]
    total = min(limits) if limits else None
    facts = _corpus_facts(corpus)
    chars_per_step = cfg.batch_size * cfg.seq_len
    started = time.perf_counter()
    snap = Report("start", total_steps=total, time_limit=cfg.max_time, path=str(path))

    def lr_now() -> float:
        progress = run.step / total if total else 0.0
        if cfg.max_time:
            progress = max(progress, (time.perf_counter() - started) / cfg.max_time)
        return _lr_at(cfg, run.step, progress)

    def step_rate() -> float:
        """The rate the latest step took (before any step: the first one's): what reports and
        history rows show."""
        return last_lr if last_lr is not None else lr_now()

    def report(kind: str, **kw) -> Report:
        nonlocal snap
        kw = {"text": "", "info": {}, **kw}
        snap = replace(snap, kind=kind, step=run.step, epoch=run.epoch + run.window / per_epoch,
                       lr=step_rate(),
                       elapsed=time.perf_counter() - started, **kw)
        return snap

    def save() -> Report:
        nonlocal saved
        check_weights()
        best_params = run.best_params if run.best_params is not None else model.params
        best_model = CharRNN(model.config, best_params, vocab=model.vocab, dtype=model.dtype)
        state = checkpoint.ResumeState(
            params=model.params, optimizer=cfg.optimizer,
            optimizer_state=run.optimizer.state_dict(), rng_state=run.rng.bit_generator.state,
            hidden=run.hidden, train_config=cfg, step=run.step,
            elapsed=run.elapsed_before + time.perf_counter() - started, window=run.window,
            epoch=run.epoch)
        checkpoint.save(path, best_model, resume=state, history=run.history, corpus=facts,
                        best=run.best)
        saved = run.step
        return report("saved")

    def diverged(what: str, step: int) -> DivergenceError:
        advice = ("Try a lower --lr or --grad-clip" if cfg.grad_clip else
                  "Try a lower --lr, or clipping (e.g. --grad-clip 5)")
        if saved is None:
            return DivergenceError(f"training diverged at step {step}: {what}; nothing was "
                                   f"saved to {path}. {advice}")
        return DivergenceError(f"training diverged at step {step}: {what}; {path} (step "
                               f"{saved}) is intact. {advice}, then --resume")

    def check_weights() -> None:
        """Before the weights are used to sample, validate or save: an update that overflowed
        them (with finite gradients) shows first here."""
        if not all(np.isfinite(p).all() for p in model.params.values()):
            raise diverged("an update made weights infinite or NaN", run.step)

    def validate() -> Report:
        with _quiet():
            val = evaluate(model, val_ids) if len(val_ids) >= MIN_VAL_CHARS else None
        if val is not None and (problem := _broken_loss("validation loss", val)):
            raise diverged(problem, run.step)  # the last update broke the weights
        row = {"step": run.step, "time": run.elapsed_before + time.perf_counter() - started,
               "train_loss": recent_loss(), "val_loss": val,
               "lr": step_rate()}
        run.history.append(row)
        if val is None or run.best is None or run.best.get("val_loss") is None \
                or val < run.best["val_loss"]:
            run.best = {"step": run.step, "val_loss": val}
            run.best_params = None if val is None else {k: v.copy()
                                                       for k, v in model.params.items()}
        return report("eval", val_loss=val, best_val=run.best["val_loss"],
                      best_step=run.best["step"])

    window_losses: list[float] = []
    last_lr: float | None = None  # the rate of the latest step

    def recent_loss() -> float:
        out = float(np.mean(window_losses)) if window_losses else math.nan
        window_losses.clear()
        return out

    yield report("start", info={
        "model": model.config, "train": cfg, "parameters": model.num_parameters,
        "corpus": facts, "train_chars": len(train_ids), "val_chars": len(val_ids),
        "steps_per_epoch": per_epoch, "resumed_at": run.step})
    if total is not None and run.step >= total:
        notes.append(f"the run is already at step {run.step}, at or past its limit of {total} "
                     "steps: nothing to train (raise --max-steps or --epochs to go on)")
    for note in notes:
        yield report("notice", text=note)
    if run.best is not None:  # a resumed run shows where it stood from its first line
        snap = replace(snap, best_val=run.best.get("val_loss"), best_step=run.best.get("step"))
    if run.history:
        snap = replace(snap, val_loss=run.history[-1].get("val_loss"))

    first_step = run.step
    core_share = blas.CoreShare() if hint_threads else None
    smooth, smooth_weight = 0.0, 0.0
    rate_t, rate_steps = time.perf_counter(), 0
    stopped = "done"
    while True:
        if total is not None and run.step >= total:
            break
        if cfg.max_time and time.perf_counter() - started >= cfg.max_time:
            stopped = "time"
            break
        if should_stop():
            stopped = "interrupted"
            break
        x, y = batches.window(run.window)
        step_started = time.perf_counter()
        if core_share:
            cpu_started = time.thread_time(), time.process_time()
        with _quiet():
            loss, grads, hidden = model.loss_and_grad(x, y, run.hidden, run.rng)
            norm = clip_grad_norm(grads, cfg.grad_clip) if math.isfinite(loss) else math.nan
            if problem := _broken_loss("loss", loss):
                raise diverged(problem, run.step + 1)
            if not math.isfinite(norm):
                raise diverged(f"the gradient norm is {norm}", run.step + 1)
            last_lr = lr_now()
            run.optimizer.step(model.params, grads, last_lr)
        step_seconds = time.perf_counter() - step_started
        threads_note = chooser.record(step_seconds) if chooser else None
        if core_share:
            core_share.add(step_seconds, time.thread_time() - cpu_started[0],
                           time.process_time() - cpu_started[1])
        run.hidden = hidden
        run.step += 1
        run.window += 1
        if run.window == per_epoch:  # a new pass starts at the streams' beginnings
            run.window, run.epoch = 0, run.epoch + 1
            run.hidden = model.initial_state(cfg.batch_size)
        window_losses.append(loss)
        smooth = 0.98 * smooth + 0.02 * loss
        smooth_weight = 0.98 * smooth_weight + 0.02
        rate_steps += 1
        now = time.perf_counter()
        if now - rate_t >= 1.0 or rate_steps >= 50:
            snap = replace(snap, chars_per_s=rate_steps * chars_per_step / (now - rate_t))
            rate_t, rate_steps = now, 0
        if not snap.chars_per_s:  # until the first full rate window: the rate so far
            snap = replace(snap, chars_per_s=(run.step - first_step) * chars_per_step
                           / max(now - started, 1e-9))
        yield report("step", train_loss=smooth / smooth_weight)
        if threads_note:
            yield report("notice", text=threads_note)
        if cfg.sample_every and run.step % cfg.sample_every == 0:
            check_weights()
            text = sampling.sample(model, cfg.sample_length, temperature=SAMPLE_TEMPERATURE,
                                   seed=[cfg.seed, run.step])
            yield report("sample", text=text)
        if core_share and (hint := _busy_hint(core_share)):
            core_share = None
            yield report("notice", text=hint)
        if run.step % cfg.eval_every == 0:
            yield validate()
            yield save()
            if _stalled(run, cfg):
                stopped = "stalled"
                break
    # an interrupted run saves where it stands: a validation here would add a history row (a
    # possible new best, a count towards --patience) that a run never stopped does not have
    if stopped != "interrupted" and run.step > first_step \
            and (not run.history or run.history[-1]["step"] != run.step):
        yield validate()
    yield save()
    elapsed = time.perf_counter() - started
    steps = run.step - first_step
    yield report("done", info={
        "stopped": stopped, "steps_this_run": steps, "seconds": elapsed,
        "total_seconds": run.elapsed_before + elapsed,
        "chars_per_s": steps * chars_per_step / elapsed if elapsed > 0 else 0.0})
