"""How a training run is built: a new model for a corpus, a trained model fine-tuned on it,
or a saved run continued.

A ``RunState`` is everything a model file's resume section holds; the ``Trainer`` steps it.
Building one checks every option against the corpus first, so that a run that cannot go on is
refused before any work, with notes on what was adjusted to fit.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import builtin, checkpoint
from .choice import (
    BASE,
    BASE_FIT_CHARS,
    choose,
    finetune_lr,
    left_to_choose,
    start_from_base,
    training_chars,
)
from .config import FINETUNE_DEFAULTS, ModelConfig, TrainConfig
from .data import Corpus, Vocab, min_chars, validation_chars
from .errors import CheckpointError, ConfigError, DataError, UsageError, option
from .evaluation import evaluate
from .model import CharRNN
from .optim import make_optimizer
from .speed import SHARE, SpeedProbe
from .transfer import grown

__all__ = ["Base", "RunState", "builtin_base", "check_option_names",
           "considers_base", "corpus_facts", "coverage", "finetune_base", "finetuned_run",
           "fit_to_corpus", "new_run", "resumed_run"]

MIN_VAL_CHARS = 2  # fewer validation characters than this: no validation at all
SHAPE_OPTIONS = ("cell", "hidden_size", "num_layers")  # a fine-tuned model has its base's


@dataclass
class RunState:
    """Mutable state of a run: exactly what a model file's resume section holds."""

    model: CharRNN
    optimizer: Any
    rng: np.random.Generator
    hidden: np.ndarray  # the carried state at the next window (model.initial_state layout)
    step: int = 0  # optimizer steps taken in the whole run
    window: int = 0  # the next window of the current pass
    epoch: int = 0  # passes completed
    elapsed_before: float = 0.0  # training seconds of earlier invocations
    spent_before: dict[str, float] = field(default_factory=dict)  # their seconds per phase
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per evaluation
    best_params: dict[str, np.ndarray] | None = None  # None: the latest weights are the best
    best: dict[str, Any] | None = None  # {"step", "val_loss"} of the best evaluation
    origin: dict[str, Any] | None = None  # the base of a fine-tuned model (Base.origin + added)
    chosen: dict[str, Any] | None = None  # the options charrnn chose, and why (choice.Choice)
    references: dict[str, Any] | None = None  # the references' validation losses (Trainer)
    measuring: float = 0.0  # seconds a timed run spent choosing (timing, the base's score)


def check_option_names(what: str, options: dict[str, Any], config: type,
                       exclude=frozenset()) -> None:
    """Raise a ConfigError naming an option that ``config`` does not have."""
    known = set(config.__dataclass_fields__) - set(exclude)
    unknown = sorted(set(options) - known, key=str)
    if unknown:
        raise ConfigError(f"{what} has no option {unknown[0]!r}; it takes "
                          + ", ".join(sorted(known)))


def corpus_facts(corpus: Corpus, vocab: Vocab | None = None) -> dict[str, Any]:
    """What the model file records of its corpus: name, size, sha256, characters, and the count
    of each character of ``vocab`` (the model's, which may hold characters the corpus lacks:
    counted 0; by default the corpus's own)."""
    counts = corpus.char_counts
    if vocab is not None and vocab != corpus.vocab:
        counts, ours = np.zeros(len(vocab), np.int64), counts
        counts[vocab.ids_of(corpus.vocab.chars)] = ours
    return {"name": corpus.name, "size": corpus.size_bytes, "sha256": corpus.sha256,
            "chars": len(corpus), "char_counts": [int(k) for k in counts]}  # in vocab order


def coverage(corpus: Corpus, vocab: Vocab) -> float:
    """The share of the corpus's characters (each occurrence) that ``vocab`` holds."""
    counts = corpus.char_counts
    known = np.isin(np.array(corpus.vocab.chars), np.array(vocab.chars))
    return float(counts[known].sum() / max(1, counts.sum()))


FIT_PIECE_CHARS = 625  # characters of each piece the model scores side by side (32 at most)


def base_fit(corpus: Corpus, model: CharRNN, train_options: dict[str, Any]) -> float:
    """Nats a character ``model`` scores on the first BASE_FIT_CHARS characters of the text's
    training part (those it does not know left out, as ``charrnn eval --unknown skip``), read
    as pieces of FIT_PIECE_CHARS side by side: one batched pass instead of a long thin one. For
    fine-tuning's rate, ``model`` is the base grown by the text's new characters
    (``transfer.grown``), so that none is left out: each counts at the small probability it
    starts from."""
    stop = min(BASE_FIT_CHARS, training_chars(len(corpus), train_options))
    ids = corpus.encode(model.vocab, skip_unknown=True, stop=stop)
    pieces = len(ids) // FIT_PIECE_CHARS
    if pieces > 1:
        ids = ids[:pieces * FIT_PIECE_CHARS].reshape(pieces, FIT_PIECE_CHARS)
    return evaluate(model, ids)


def fit_to_corpus(cfg: TrainConfig, n_chars: int) -> tuple[TrainConfig, list[str]]:
    """Shrink the window and the batch (and drop validation) so a small corpus still trains;
    say so."""
    notes = []
    val_n = validation_chars(n_chars, cfg.val_frac)
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
                     f"{option('seq_len', cfg.seq_len)} + 1: using "
                     f"{option('seq_len', train_n - 1)}")
        cfg = cfg.replace(seq_len=train_n - 1)
    fit = (train_n - 1) // cfg.seq_len
    if fit < cfg.batch_size:
        notes.append(f"the corpus has {train_n:,} training characters, enough for {fit:,} "
                     f"stream{'' if fit == 1 else 's'} of {option('seq_len', cfg.seq_len)}: "
                     f"using {option('batch_size', fit)} instead of {cfg.batch_size}")
        cfg = cfg.replace(batch_size=fit)
    return cfg, notes


def new_run(corpus: Corpus, model_options: dict[str, Any], train_options: dict[str, Any],
            dtype=np.float32, thread_counts: Callable[[], Iterable[int | None]] = lambda: [None],
            from_scratch: bool = True) -> tuple[RunState, TrainConfig, list[str]]:
    """A fresh model for the corpus, seeded from the run's seed, with notes on what was fitted;
    without ``from_scratch``, the built-in base fine-tuned on it where ``choice.start_from_base``
    says so (never where the network's shape is given).

    The options not given are chosen for the corpus and the run's limits (``choice.choose``),
    then are ModelConfig's and TrainConfig's defaults. A run with ``max_time`` first times a
    few steps at the thread counts ``thread_counts()`` gives (``speed.SpeedProbe``), and the
    file's ``chosen`` record keeps what was measured. The time this takes counts in a timed
    run's time (``measuring``)."""
    began = time.perf_counter()

    def measuring() -> float:  # the time so far, which a timed run counts
        return time.perf_counter() - began if probe else 0.0

    probe = None
    if train_options.get("max_time") and left_to_choose(model_options, train_options):
        t, _ = fit_to_corpus(TrainConfig(**train_options), len(corpus))  # as the run steps
        probe = SpeedProbe(len(corpus.vocab), t.batch_size, t.seq_len, thread_counts,
                           SHARE * t.max_time)
    declined = ""
    if considers_base(model_options, from_scratch):
        base = builtin_base()
        net = base.model.config
        shape = net.cell, net.hidden_size, net.num_layers
        use, why = start_from_base(len(corpus), coverage(corpus, base.model.vocab),
                                   train_options, (lambda: probe.speed(*shape)) if probe else None)
        if use:
            state, tcfg, notes = finetuned_run(base, corpus, model_options, train_options)
            state.chosen = _record({"options": {"init_from": BASE}, "reason": why}, probe)
            state.measuring = measuring()
            return state, tcfg, notes
        declined = f"; {why}"
    chosen = choose(corpus_chars=len(corpus), model_options=model_options,
                    train_options=train_options, speed=probe.speed if probe else None)
    model_options = {**chosen.model_options, **model_options}
    train_options = {**chosen.train_options, **train_options}
    cfg, notes = fit_to_corpus(TrainConfig(**train_options), len(corpus))
    mcfg = ModelConfig(**{**model_options, "vocab_size": len(corpus.vocab)})
    rng = np.random.default_rng(cfg.seed)
    model = CharRNN(mcfg, vocab=corpus.vocab, dtype=dtype, seed=rng)
    record = chosen.record()
    if record is not None:
        record = _record({**record, "reason": record["reason"] + declined}, probe)
    state = RunState(model, make_optimizer(cfg.optimizer, model.params, cfg.weight_decay), rng,
                     model.initial_state(cfg.batch_size), chosen=record,
                     measuring=measuring())
    return state, cfg, notes


def considers_base(model_options: dict[str, Any], from_scratch: bool) -> bool:
    """Whether a new run asks ``choice.start_from_base`` about the built-in base: not when
    ``from_scratch``, nor when the network's shape is given."""
    return not from_scratch and not any(k in model_options for k in SHAPE_OPTIONS)


def _record(chosen: dict[str, Any], probe: SpeedProbe | None) -> dict[str, Any]:
    """The model file's ``chosen``, with what the probe measured where it measured."""
    return {**chosen, "measured": probe.record()} if probe is not None else chosen


def _resume_refusal(ck: checkpoint.Checkpoint, corpus: Corpus, path: Path) -> str | None:
    """Why the model file cannot continue a run on this corpus, or None."""
    if ck.resume is None:
        return (f"cannot resume: {path} holds no training state (it was saved for sampling "
                f"only); use {option('force', True)} to start a new model")
    # a fine-tuned model's vocabulary may hold characters of its base that the corpus lacks
    if ck.model.vocab.unknown("".join(corpus.vocab.chars)):
        return (f"cannot resume: the corpus's characters differ from the model's vocabulary "
                f"({len(corpus.vocab)} vs {len(ck.model.vocab)} characters); train on the same "
                f"text or start a new model with {option('force', True)}")
    if ck.corpus and ck.corpus.get("sha256") != corpus.sha256:
        return (f"cannot resume: the corpus differs from the one {path} was trained on "
                f"({ck.corpus.get('name')}, sha256 {str(ck.corpus.get('sha256'))[:12]}...); "
                f"train on the same text or start a new model with {option('force', True)}")
    return None


def resumed_run(ck: checkpoint.Checkpoint, corpus: Corpus, model_options: dict[str, Any],
                train_options: dict[str, Any], path: Path
                ) -> tuple[RunState, TrainConfig, list[str]]:
    """Rebuild a run from a model file, refusing what would not continue the same run; with
    notes on options that a resumed run does not take."""
    if problem := _resume_refusal(ck, corpus, path):
        raise UsageError(problem)
    rs, cfg = ck.resume, ck.model.config
    differs = [f"{option(k, v)} (model has {getattr(cfg, k)})"
               for k, v in model_options.items() if getattr(cfg, k) != v]
    notes = []
    if train_options.get("seed", rs.train_config.seed) != rs.train_config.seed:
        notes.append(f"{option('seed', train_options['seed'])} is left aside: a resumed run "
                     f"goes on with the random state saved in {path.name} (the run's seed is "
                     f"{rs.train_config.seed})")
    train_options = {k: v for k, v in train_options.items() if k != "seed"}
    # max_time limits one invocation: a resumed run has none unless given again
    tcfg = rs.train_config.replace(**{"max_time": 0.0, **train_options})
    # options the first run shrank to fit the corpus compare as shrunk the same way
    tcfg, fitted = fit_to_corpus(tcfg, len(corpus))
    notes += fitted
    for k in ("batch_size", "seq_len", "val_frac"):
        if getattr(tcfg, k) != getattr(rs.train_config, k):
            differs.append(f"{option(k, getattr(tcfg, k))} (the run uses "
                           f"{getattr(rs.train_config, k)}; it fixes the data layout)")
    if differs:
        raise UsageError("cannot resume with different options: " + "; ".join(differs))
    model = CharRNN(cfg, rs.params, vocab=ck.model.vocab, dtype=ck.model.dtype)
    optimizer = make_optimizer(rs.train_config.optimizer, model.params, tcfg.weight_decay)
    optimizer.load_state_dict(rs.optimizer_state)
    if tcfg.optimizer != rs.train_config.optimizer:
        raise UsageError(f"cannot resume with {option('optimizer', tcfg.optimizer)}: the run "
                         f"uses {rs.train_config.optimizer}")
    rng = np.random.default_rng()
    rng.bit_generator.state = rs.rng_state
    state = RunState(model, optimizer, rng, rs.hidden.copy(), step=rs.step, window=rs.window,
                     epoch=rs.epoch, elapsed_before=rs.elapsed, spent_before=rs.spent,
                     history=list(ck.history),
                     best_params={k: v.copy() for k, v in ck.model.params.items()},
                     best=ck.best, origin=ck.origin, chosen=ck.chosen,
                     references=ck.references)  # fitted to the same text: kept, not refitted
    return state, tcfg, notes


# ----------------------------------------------------------------------------- fine-tuning

@dataclass(frozen=True)
class Base:
    """A trained model that a fine-tuning run starts from, and the record of where it came
    from."""

    model: CharRNN  # its best weights, with its vocabulary
    origin: dict[str, Any]  # for the new file: name, sha256 of the file, steps, val_loss (best)
    path: Path | None = None  # the model file it was read from


def finetune_base(init_from: Any, model_options: dict[str, Any], *, resume: bool = False,
                  output: str | Path | None = None) -> Base:
    """The base of a fine-tuning run, once what such a run cannot take is refused: ``resume``,
    the options that fix the network's shape (it is the base's), the base's file as output.

    ``init_from`` is a model file's path (read by ``checkpoint.load``, as every model file is,
    then hashed), a loaded ``Checkpoint`` (its file at ``path`` is hashed), a ``CharRNN`` (no
    file: the record names none) or a ``Base`` (checked again)."""
    if resume:
        raise UsageError(f"{option('init_from')} starts a new model from a base and "
                         f"{option('resume', True)} continues the one in {option('output')}; "
                         "give one of them")
    if shape := [k for k in SHAPE_OPTIONS if k in model_options]:
        raise UsageError(f"{', '.join(map(option, shape))} cannot be given with "
                         f"{option('init_from')}: the network's shape is the base model's")
    base = init_from if isinstance(init_from, Base) else _read_base(init_from)
    if base.model.vocab is None:
        raise ConfigError("the base model has no vocabulary (set model.vocab)")
    if output is not None and base.path is not None and Path(output).exists() \
            and os.path.samefile(base.path, output):
        raise UsageError(f"{output} is the base model ({option('init_from')}); write the "
                         f"fine-tuned model to another file with {option('output')}")
    return base


def builtin_base() -> Base:
    """The built-in base that a new run may fine-tune (``choice.BASE``), read and checked once
    per process while its file stays the same; a broken file is refused in one line that says
    how to train without it."""
    path = builtin.FOLDER / builtin.BUILT_IN[BASE]
    try:
        stat = path.stat()
        return _cached_base(path, stat.st_mtime_ns, stat.st_size)
    except (OSError, CheckpointError) as e:
        problem = e if isinstance(e, CheckpointError) else f"{path}: {e.strerror}"
        raise CheckpointError(f"{problem} (the built-in {BASE} base; "
                              f"{option('from_scratch', True)} trains without it)") from None


@functools.lru_cache(maxsize=2)
def _cached_base(path: Path, mtime_ns: int, size: int) -> Base:
    return _read_base(path)


def _read_base(init_from: Any) -> Base:
    if isinstance(init_from, CharRNN):
        return Base(init_from, {"name": None, "sha256": None, "steps": None, "val_loss": None})
    if isinstance(init_from, str | os.PathLike):
        init_from = checkpoint.load(init_from)
    if not isinstance(init_from, checkpoint.Checkpoint):
        raise ConfigError("init_from is a model file's path, a Checkpoint or a CharRNN, not "
                          f"{type(init_from).__name__}")
    ck, path = init_from, init_from.path
    steps = ck.resume.step if ck.resume else ck.history[-1]["step"] if ck.history else None
    origin = {"name": None if path is None else path.name,
              "sha256": _sha256(path) if path is not None and path.is_file() else None,
              "steps": steps, "val_loss": (ck.best or {}).get("val_loss")}
    return Base(ck.model, origin, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def finetuned_run(base: Base, corpus: Corpus, model_options: dict[str, Any],
                  train_options: dict[str, Any]) -> tuple[RunState, TrainConfig, list[str]]:
    """A new run whose model starts from the base's best weights, its vocabulary grown by the
    corpus's new characters (``charrnn.transfer``), its dropout the base's unless given.

    The training options not given are FINETUNE_DEFAULTS, then TrainConfig's, but for the rate:
    ``choice.finetune_lr`` takes it from the grown model's score on the text (``base_fit``),
    which a timed run counts in its time. The optimizer's state, the schedule, the step count
    and the history start afresh."""
    began = time.perf_counter()
    cfg, notes = fit_to_corpus(TrainConfig(**{**FINETUNE_DEFAULTS, **train_options}),
                               len(corpus))
    rng = np.random.default_rng(cfg.seed)
    model = grown(base.model, base.model.vocab.merged(corpus.vocab), rng)
    if "dropout" in model_options:
        model = CharRNN(model.config.replace(dropout=model_options["dropout"]), model.params,
                        vocab=model.vocab, dtype=model.dtype)
    if "lr" not in train_options:
        lr, why = finetune_lr(base_fit(corpus, model, train_options))
        cfg = cfg.replace(lr=lr)
        notes += [why] if why else []
    known = set(base.model.vocab.chars)
    added = "".join(c for c in model.vocab.chars if c not in known)
    state = RunState(model, make_optimizer(cfg.optimizer, model.params, cfg.weight_decay), rng,
                     model.initial_state(cfg.batch_size), origin={**base.origin, "added": added},
                     measuring=time.perf_counter() - began if cfg.max_time else 0.0)
    return state, cfg, notes
