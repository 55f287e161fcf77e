"""Training: the ``Trainer`` and its loop in named phases, and ``train``, which builds a run.

``train(...)`` returns an iterator of ``Report`` events (start, step, eval, sample, saved,
notice, done); the command line renders them, a library user may simply exhaust it. Each pass
of the loop is one optimizer step on the next window of every stream (truncated BPTT, the
global gradient norm clipped, the rate from the schedule), then, every ``eval_every`` steps, a
validation and a checkpoint. Everything a run needs to continue is saved at every evaluation,
at the end and when stopped early: resumed with the same pinned thread count, it goes on bit for
bit (``charrnn.blas``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint, sampling
from .blas import ThreadPlan, check_threads, plan_threads
from .config import ModelConfig, TrainConfig
from .data import Corpus, StreamBatches, split_train_val
from .divergence import broken_loss, broken_weights, diverged, quiet
from .errors import DivergenceError, option
from .evaluation import evaluate, predictions, validation_sample
from .optim import clipped_gradients
from .output_guard import check_output
from .progress import Progress, SmoothedLoss
from .references import reference_losses
from .reports import Report
from .run_file import save_run
from .runs import (
    MIN_VAL_CHARS,
    RunState,
    builtin_base,
    check_option_names,
    considers_base,
    corpus_facts,
    finetune_base,
    finetuned_run,
    new_run,
    resumed_run,
)
from .schedule import lr_at
from .timing import EVAL_COST, RunTime

__all__ = ["Report", "Trainer", "builtin_base", "considers_base", "finetune_base", "train"]

SAMPLE_TEMPERATURE = 0.8  # progress samples: a little sharper than the raw distribution
MIN_EVAL_EVERY = 60  # steps between validations at least, by default
VALIDATION_SHARE = 0.04  # of a run's time, what its validations may cost by default


def validation_interval(predictions: int, chars_per_step: int) -> int:
    """Steps between validations by default: often, but at most VALIDATION_SHARE of the time.

        every = max(MIN_EVAL_EVERY, EVAL_COST * predictions / (VALIDATION_SHARE * B * T))

    It depends only on what is scored and on the step's size, so a run and its resumption
    validate at the same steps, whatever the machine's speed.
    """
    return max(MIN_EVAL_EVERY,
               math.ceil(EVAL_COST * predictions / (VALIDATION_SHARE * chars_per_step)))


class Trainer:
    """One training run over a ``RunState``, in named phases; ``reports()`` runs it.

    Each pass of the loop: ``stop_reason()`` (the step/epoch limit, the time limit, a stop
    request, patience), ``step()`` (the rate from ``rate()``, one update), then every
    ``eval_every`` steps ``validate()`` and ``save()`` (but not in the last half interval of a
    timed run, whose closing validation comes soon after). ``saved`` is the step the file at
    ``path`` holds for this run (None: nothing saved yet); ``should_stop`` is polled before
    every step.
    """

    def __init__(self, state: RunState, cfg: TrainConfig, corpus: Corpus, path: str | Path, *,
                 saved: int | None = None, should_stop: Callable[[], bool] = lambda: False,
                 threads: ThreadPlan | None = None, notes: Sequence[str] = ()) -> None:
        self.state, self.cfg, self.path, self.saved = state, cfg, Path(path), saved
        self.should_stop, self.notes = should_stop, list(notes)
        self.threads = threads or ThreadPlan()
        self.train_ids, self.val_ids = split_train_val(corpus.encode(state.model.vocab),
                                                       cfg.val_frac)
        self.batches = StreamBatches(self.train_ids, cfg.batch_size, cfg.seq_len)
        limits = [s for s in (cfg.max_steps, math.ceil(cfg.epochs * len(self.batches))) if s > 0]
        self.total_steps = min(limits) if limits else None
        # what each validation scores: the held-out text, or evenly spaced pieces of a long one
        self.val_scored, self.val_record = validation_sample(self.val_ids)
        self.facts = corpus_facts(corpus, state.model.vocab)
        chars_per_step = cfg.batch_size * cfg.seq_len
        self.eval_every = cfg.eval_every or validation_interval(predictions(self.val_scored),
                                                                chars_per_step)
        self.first_step = state.step
        self.time = RunTime(chars_per_step, state.spent_before, head_start=state.measuring)
        self.last_lr: float | None = None  # the rate of the latest step
        self.last_eval_step: int | None = None  # the step of this invocation's latest validation
        self.recent_losses: list[float] = []  # the steps' losses since the latest validation
        self.smoothed = SmoothedLoss()
        self.progress = Progress(total_steps=self.total_steps, time_limit=cfg.max_time,
                                 path=str(self.path))

    # ------------------------------------------------------------------------- the loop

    def reports(self) -> Iterator[Report]:
        """Run the training, yielding every event; the model file is saved at the end."""
        self.time.start()
        yield from self._opening()
        while (reason := self.stop_reason()) is None:
            self.step()
            yield self.report("step", train_loss=self.smoothed.value)
            yield from self._news()
            if self.cfg.sample_every and self.state.step % self.cfg.sample_every == 0:
                yield self.sample()
            if self.state.step % self.eval_every == 0 and not self._end_is_near():
                yield self.validate()
                yield self.save()
        # an interrupted run saves where it stands: a validation here would add a history row
        # (a possible new best, a count towards patience) that a run never stopped lacks
        if reason != "interrupted" and self.state.step > self.first_step \
                and self.last_eval_step != self.state.step:
            yield self.validate()
        yield self.save()
        yield self._closing(reason)

    def stop_reason(self) -> str | None:
        """Why the run ends before another step: stalled, done, time or interrupted; or None."""
        s, cfg = self.state, self.cfg
        if self.last_eval_step == s.step and self._stalled():
            return "stalled"
        if self.total_steps is not None and s.step >= self.total_steps:
            return "done"
        if cfg.max_time and self.elapsed() >= cfg.max_time:
            return "time"
        if self.should_stop():
            return "interrupted"
        return None

    # ------------------------------------------------------------------------- the phases

    def rate(self) -> float:
        """The learning rate for the next step, from the schedule and the run's progress."""
        progress = self.state.step / self.total_steps if self.total_steps else 0.0
        if self.cfg.max_time:
            progress = max(progress, self.elapsed() / self.cfg.max_time)
        return lr_at(self.cfg, self.state.step, progress)

    def step(self) -> float:
        """One update on the next window of every stream: forward, BPTT, clip, optimizer step;
        the window's mean loss (nats/char)."""
        s, cfg = self.state, self.cfg
        x, y = self.batches.window(s.window)
        with self.threads.timed(), self.time.phase("steps"), quiet():
            loss, grads, norm, hidden = clipped_gradients(s.model, x, y, s.hidden, s.rng,
                                                          cfg.grad_clip)
            if problem := broken_loss("loss", loss):
                raise self._diverged(problem, s.step + 1)
            if not math.isfinite(norm):
                raise self._diverged(f"the gradient norm is {norm}", s.step + 1)
            self.last_lr = self.rate()
            s.optimizer.step(s.model.params, grads, self.last_lr)
        s.hidden, s.step, s.window = hidden, s.step + 1, s.window + 1
        if s.window == len(self.batches):  # a new pass starts at the streams' beginnings
            s.window, s.epoch = 0, s.epoch + 1
            s.hidden = s.model.initial_state(cfg.batch_size)
        self.recent_losses.append(loss)
        self.smoothed.add(loss)
        return loss

    def validate(self) -> Report:
        """Score the validation text (or its sample), add a history row, and keep the weights
        if they are the best so far."""
        s = self.state
        val = None
        if len(self.val_ids) >= MIN_VAL_CHARS:
            with self.time.phase("validation"), quiet():
                val = evaluate(s.model, self.val_scored)
        if val is not None and (problem := broken_loss("validation loss", val)):
            raise self._diverged(problem, s.step)  # the last update broke the weights
        recent = float(np.mean(self.recent_losses)) if self.recent_losses else math.nan
        self.recent_losses.clear()
        s.history.append({"step": s.step, "time": s.elapsed_before + self.elapsed(),
                          "train_loss": recent, "val_loss": val, "lr": self.latest_rate()})
        self.last_eval_step = s.step
        if val is None or s.best is None or s.best.get("val_loss") is None \
                or val < s.best["val_loss"]:
            s.best = {"step": s.step, "val_loss": val}
            s.best_params = None if val is None else {k: v.copy()
                                                     for k, v in s.model.params.items()}
        return self.report("eval", val_loss=val, best_val=s.best["val_loss"],
                           best_step=s.best["step"])

    def save(self) -> Report:
        """Write the model file: the best weights to sample, and all that resuming needs."""
        self._check_weights()
        with self.time.phase("saving"):
            save_run(self.path, self.state, self.cfg, corpus=self.facts,
                     validation=self.val_record if len(self.val_ids) else None,
                     elapsed=self.state.elapsed_before + self.elapsed(),
                     spent=self.time.split(whole_run=True))
        self.saved = self.state.step
        return self.report("saved")

    def sample(self) -> Report:
        """A short progress sample from the current weights, seeded by the run and the step."""
        self._check_weights()
        with self.time.phase("samples"):
            text = sampling.sample(self.state.model, self.cfg.sample_length,
                                   temperature=SAMPLE_TEMPERATURE,
                                   seed=[self.cfg.seed, self.state.step])
        return self.report("sample", text=text)

    # ------------------------------------------------------------------------- helpers

    def elapsed(self) -> float:
        """Seconds of training in this invocation."""
        return self.time.elapsed()

    def time_left(self) -> float | None:
        """Seconds until the run ends, the validations and saves still to come included."""
        steps_left = None if self.total_steps is None else self.total_steps - self.state.step
        limit = self.cfg.max_time - self.elapsed() if self.cfg.max_time else None
        return self.time.time_left(steps_left, self.eval_every, limit,
                                   predictions(self.val_scored))

    def _end_is_near(self) -> bool:
        """Whether a timed run ends within half an interval: its closing validation is then due
        so soon that an interval's own would cost its time twice."""
        if not self.cfg.max_time or not self.time.steps:
            return False
        return self.cfg.max_time - self.elapsed() < self.time.mean_step() * self.eval_every / 2

    def latest_rate(self) -> float:
        """The rate the latest step took (before any step: the first one's)."""
        return self.last_lr if self.last_lr is not None else self.rate()

    def report(self, kind: str, **fields) -> Report:
        """The live view's snapshot, updated with the run's position and ``fields``."""
        s = self.state
        return self.progress.report(
            kind, step=s.step, epoch=s.epoch + s.window / len(self.batches),
            lr=self.latest_rate(), elapsed=self.elapsed(), chars_per_s=self.time.stepping,
            overall_chars_per_s=self.time.overall(), eta=self.time_left(), **fields)

    def _stalled(self) -> bool:
        """The last ``patience`` evaluations all failed to beat the best validation loss."""
        s, patience = self.state, self.cfg.patience
        if not patience or s.best is None or s.best.get("val_loss") is None:
            return False
        return sum(row["step"] > s.best["step"] for row in s.history) >= patience

    def _news(self) -> Iterator[Report]:
        """What the thread plan found since the latest report."""
        for text in self.threads.take_news():
            yield self.report("notice", text=text)

    def _opening(self) -> Iterator[Report]:
        s = self.state
        if s.references is None and s.step == 0 and len(self.val_ids) >= MIN_VAL_CHARS:
            # a new run (a resumed one keeps its own): the loss of simple models of the training
            # text on what validation scores, for the network's in context (0.1 s for 1 MB)
            s.references = reference_losses(self.train_ids, self.val_scored,
                                            s.model.config.vocab_size)
        yield self.report("start", info={
            "model": s.model.config, "train": self.cfg, "parameters": s.model.num_parameters,
            "corpus": self.facts, "train_chars": len(self.train_ids),
            "val_chars": len(self.val_ids), "validation": self.val_record,
            "eval_every": self.eval_every, "steps_per_epoch": len(self.batches),
            "resumed_at": s.step, "origin": s.origin, "chosen": s.chosen,
            "references": s.references})
        notes = list(self.notes)
        if self.total_steps is not None and s.step >= self.total_steps:
            notes.append(f"the run is already at step {s.step}, at or past its limit of "
                         f"{self.total_steps} steps: nothing to train (raise "
                         f"{option('max_steps')} or {option('epochs')} to go on)")
        for note in notes:
            yield self.report("notice", text=note)
        if s.best is not None:  # a resumed run shows where it stood from its first line
            self.progress.keep(best_val=s.best.get("val_loss"), best_step=s.best.get("step"))
        if s.history:
            self.progress.keep(val_loss=s.history[-1].get("val_loss"))

    def _closing(self, reason: str) -> Report:
        elapsed = self.elapsed()
        return self.report("done", info={
            "stopped": reason, "steps_this_run": self.state.step - self.first_step,
            "seconds": elapsed, "total_seconds": self.state.elapsed_before + elapsed,
            "chars_per_s": self.time.overall(), "stepping_chars_per_s": self.time.stepping,
            "time_split": self.time.split(), "total_time_split": self.time.split(True)})

    def _check_weights(self) -> None:
        """Before the weights are used to sample, validate or save: an update that overflowed
        them (with finite gradients) shows first here."""
        if problem := broken_weights(self.state.model.params):
            raise self._diverged(problem, self.state.step)

    def _diverged(self, what: str, step: int) -> DivergenceError:
        return diverged(what, step, self.path, self.saved, self.cfg.grad_clip)


# ----------------------------------------------------------------------------- building a run

def train(corpus: Corpus, output: str | Path, *, model_options: dict[str, Any] | None = None,
          train_options: dict[str, Any] | None = None, resume: bool = False,
          force: bool = False, should_stop: Callable[[], bool] = lambda: False,
          threads: int | str | None = None, dtype=np.float32, init_from: Any = None,
          from_scratch: bool = True) -> Iterator[Report]:
    """Train a model on a corpus, checkpointing to ``output``; returns an iterator of
    ``Report`` events, which runs the training as it is consumed.

    ``model_options``/``train_options`` are ModelConfig/TrainConfig fields the user set; for a
    new model the cell, width, layers, dropout and epochs left out are chosen for the corpus and
    the limits (``charrnn.choice``), and on resume the others come from the model file. The options,
    the output path and the model file to resume are checked here, before the first event.
    ``should_stop`` is polled before every step (Ctrl-C): the run then saves its latest state
    without another validation (so a resumed run goes on exactly as if never stopped) and ends
    with a ``done`` report whose ``info["stopped"]`` is "interrupted".

    ``init_from``: a model file's path, a ``Checkpoint`` or a ``CharRNN`` to fine-tune on the
    corpus (``charrnn.runs.finetuned_run``): the shape and the dtype are the base's, so
    ``model_options`` may only set dropout, and the training options not given are
    ``config.FINETUNE_DEFAULTS``, but for the rate, ``choice.finetune_lr``'s.
    ``from_scratch=False`` (``charrnn train``'s default): a new run without ``init_from``
    fine-tunes the built-in English base where the rule says it helps
    (``charrnn.choice.start_from_base``), and the start line says why either way.

    ``threads``: BLAS threads for the run (process-wide while it runs, restored after). None
    (or "auto") follows the machine's load, which changes the model only by float32 rounding;
    a number pins the count, and with it the model's bits (``charrnn.blas``).
    """
    model_options = dict(model_options or {})
    train_options = dict(train_options or {})
    check_option_names("model_options", model_options, ModelConfig, exclude={"vocab_size"})
    check_option_names("train_options", train_options, TrainConfig)
    path = Path(output)
    check_threads(threads)
    base = None if init_from is None else finetune_base(init_from, model_options,
                                                        resume=resume, output=path)
    check_output(path, resume=resume, force=force, sources=corpus.sources)
    plan = plan_threads(threads)
    if resume:
        state, cfg, notes = resumed_run(checkpoint.load(path), corpus, model_options,
                                        train_options, path)
    elif base is not None:
        state, cfg, notes = finetuned_run(base, corpus, model_options, train_options)
    else:
        state, cfg, notes = new_run(corpus, model_options, train_options, dtype,
                                    thread_counts=plan.counts_to_time,
                                    from_scratch=from_scratch)
    trainer = Trainer(state, cfg, corpus, path, saved=state.step if resume else None,
                      should_stop=should_stop, threads=plan,
                      notes=corpus.notes() + notes + plan.notes)
    return plan.apply(trainer.reports())
