"""Training: the ``Trainer`` and its loop in named phases, and ``train``, which builds a run.

``train(...)`` returns an iterator of ``Report`` events (start, step, eval, sample, saved,
notice, done); the command line renders them, a library user may simply exhaust it. Each pass
of the loop is one optimizer step on the next window of every stream (truncated BPTT, the
global gradient norm clipped, the rate from the schedule), then, every ``eval_every`` steps, a
validation and a checkpoint. Everything a run needs to continue bit for bit is saved at every
evaluation, at the end and when stopped early (bit for bit with the same BLAS thread count:
see ``charrnn.blas``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint, sampling
from .config import ModelConfig, TrainConfig
from .data import Corpus, StreamBatches, split_train_val
from .errors import DivergenceError
from .evaluation import edge_windows, evaluate, predictions, validation_sample
from .model import CharRNN
from .optim import clip_grad_norm
from .output_guard import check_output
from .reports import Report
from .runs import (
    MIN_VAL_CHARS,
    RunState,
    check_option_names,
    corpus_facts,
    finetune_base,
    finetuned_run,
    new_run,
    resumed_run,
)
from .schedule import lr_at
from .timing import RunTime
from .train_threads import (
    StepClock,
    ThreadPlan,
    check_threads,
    plan_threads,
    with_threads,
)

__all__ = ["Report", "Trainer", "finetune_base", "train"]

MAX_LOSS = 1e4  # nats/char: no model that learns comes near (a uniform guess costs ln V ~ 4-9)
SAMPLE_TEMPERATURE = 0.8  # progress samples: a little sharper than the raw distribution
SMOOTHING = 0.02  # the shown training loss: an exponential average, each step weighs this
MIN_EVAL_EVERY = 60  # steps between validations at least, by default
VALIDATION_SHARE = 0.04  # of a run's time, what its validations may cost by default
EVAL_COST = 0.4  # seconds to score a character / seconds to train on one (0.23-0.37 measured)


# A diverging run overflows on its way to inf/nan; the finite checks of the loss, the gradient
# norm and the validation loss stop it with one message, so NumPy's warnings are left out.
def _quiet() -> np.errstate:
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


def validation_interval(predictions: int, chars_per_step: int) -> int:
    """Steps between validations by default: often, but at most VALIDATION_SHARE of the time.

        every = max(MIN_EVAL_EVERY, EVAL_COST * predictions / (VALIDATION_SHARE * B * T))

    It depends only on what is scored and on the step's size, so a run and its resumption
    validate at the same steps, whatever the machine's speed.
    """
    return max(MIN_EVAL_EVERY,
               math.ceil(EVAL_COST * predictions / (VALIDATION_SHARE * chars_per_step)))


def _broken_loss(what: str, loss: float) -> str | None:
    """Why a loss means the run diverged (not a number, or absurd), or None when it is fine."""
    if math.isfinite(loss) and loss <= MAX_LOSS:
        return None
    beyond = f" (beyond {MAX_LOSS:,.0f} nats per character)" if math.isfinite(loss) else ""
    return f"the {what} is {loss:.6g}{beyond}"


class Trainer:
    """One training run over a ``RunState``, in named phases; ``reports()`` runs it.

    Each pass of the loop: ``stop_reason()`` (the step/epoch limit, --max-time, a stop request,
    --patience), ``step()`` (the rate from ``rate()``, one update), then every ``eval_every``
    steps ``validate()`` and ``save()`` (but not in the last half interval of a --max-time run,
    whose closing validation comes soon after). ``saved`` is the step the file at ``path`` holds for
    this run (None: nothing saved yet); ``should_stop`` is polled before every step.
    """

    def __init__(self, state: RunState, cfg: TrainConfig, corpus: Corpus, path: str | Path, *,
                 saved: int | None = None, should_stop: Callable[[], bool] = lambda: False,
                 threads: ThreadPlan | None = None, notes: Sequence[str] = ()) -> None:
        self.state, self.cfg, self.path, self.saved = state, cfg, Path(path), saved
        self.should_stop, self.notes = should_stop, list(notes)
        self.threads = threads or ThreadPlan()
        self.clock = StepClock(self.threads)
        self.train_ids, self.val_ids = split_train_val(corpus.encode(state.model.vocab),
                                                       cfg.val_frac)
        self.batches = StreamBatches(self.train_ids, cfg.batch_size, cfg.seq_len)
        limits = [s for s in (cfg.max_steps, math.ceil(cfg.epochs * len(self.batches))) if s > 0]
        self.total_steps = min(limits) if limits else None
        # what each validation scores: the held-out text, or evenly spaced pieces of a long one
        self.val_scored, self.val_record = validation_sample(self.val_ids)
        self.facts = corpus_facts(corpus, state.model.vocab)
        self.chars_per_step = cfg.batch_size * cfg.seq_len
        self.eval_every = cfg.eval_every or validation_interval(predictions(self.val_scored),
                                                                self.chars_per_step)
        self.first_step = state.step
        self.time = RunTime(self.chars_per_step, state.spent_before)
        self.last_lr: float | None = None  # the rate of the latest step
        self.last_eval_step: int | None = None  # the step of this invocation's latest validation
        self.recent_losses: list[float] = []  # the steps' losses since the latest validation
        self.smooth = self.smooth_weight = 0.0  # the shown training loss, before its bias fix
        self.shown = Report("start", total_steps=self.total_steps, time_limit=cfg.max_time,
                            path=str(self.path))

    # ------------------------------------------------------------------------- the loop

    def reports(self) -> Iterator[Report]:
        """Run the training, yielding every event; the model file is saved at the end."""
        self.time.start()
        yield from self._opening()
        while (reason := self.stop_reason()) is None:
            self.step()
            yield from self._after_step()
            if self.state.step % self.eval_every == 0 and not self._end_is_near():
                yield self.validate()
                yield from self._thread_news()
                yield self.save()
        # an interrupted run saves where it stands: a validation here would add a history row
        # (a possible new best, a count towards --patience) that a run never stopped lacks
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
        # a second look at the same step (the thread check) draws the same dropout masks
        draws = s.rng.bit_generator.state if self.threads.will_compare("training step") else None

        def window() -> tuple[float, dict[str, np.ndarray], np.ndarray]:
            if draws is not None:
                s.rng.bit_generator.state = draws
            return s.model.loss_and_grad(x, y, s.hidden, s.rng)

        self.clock.start()
        with self.time.phase("steps"), _quiet():
            loss, grads, hidden = self.threads.run("training step", window)
            norm = clip_grad_norm(grads, cfg.grad_clip) if math.isfinite(loss) else math.nan
            if problem := _broken_loss("loss", loss):
                raise self._diverged(problem, s.step + 1)
            if not math.isfinite(norm):
                raise self._diverged(f"the gradient norm is {norm}", s.step + 1)
            self.last_lr = self.rate()
            s.optimizer.step(s.model.params, grads, self.last_lr)
        self.clock.stop()
        s.hidden, s.step, s.window = hidden, s.step + 1, s.window + 1
        if s.window == len(self.batches):  # a new pass starts at the streams' beginnings
            s.window, s.epoch = 0, s.epoch + 1
            s.hidden = s.model.initial_state(cfg.batch_size)
        self.recent_losses.append(loss)
        self.smooth = (1 - SMOOTHING) * self.smooth + SMOOTHING * loss
        self.smooth_weight = (1 - SMOOTHING) * self.smooth_weight + SMOOTHING
        return loss

    def validate(self) -> Report:
        """Score the validation text (or its sample), add a history row, and keep the weights
        if they are the best so far."""
        s, scored = self.state, self.val_scored
        val = None
        if len(self.val_ids) >= MIN_VAL_CHARS:
            with self.time.phase("validation"), _quiet():
                val = self.threads.run("validation", lambda: evaluate(s.model, scored),
                                       probe=lambda: edge_windows(s.model, scored))
        if val is not None and (problem := _broken_loss("validation loss", val)):
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
        s = self.state
        self._check_weights()
        best_params = s.best_params if s.best_params is not None else s.model.params
        best_model = CharRNN(s.model.config, best_params, vocab=s.model.vocab,
                             dtype=s.model.dtype)
        resume = checkpoint.ResumeState(
            params=s.model.params, optimizer=self.cfg.optimizer,
            optimizer_state=s.optimizer.state_dict(), rng_state=s.rng.bit_generator.state,
            hidden=s.hidden, train_config=self.cfg, step=s.step,
            elapsed=s.elapsed_before + self.elapsed(), window=s.window, epoch=s.epoch,
            spent=self.time.split(whole_run=True))
        with self.time.phase("saving"):
            checkpoint.save(self.path, best_model, resume=resume, history=s.history,
                            corpus=self.facts, best=s.best,
                            validation=self.val_record if len(self.val_ids) else None,
                            origin=s.origin, chosen=s.chosen)
        self.saved = s.step
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
        per_char = self.time.spent["steps"] / max(self.time.steps * self.chars_per_step, 1)
        guess = EVAL_COST * predictions(self.val_scored) * per_char  # until one is timed
        return self.time.time_left(steps_left, self.eval_every, limit, guess)

    def _end_is_near(self) -> bool:
        """Whether a --max-time run ends within half an interval: its closing validation is
        then due so soon that an interval's own would cost its time twice."""
        if not self.cfg.max_time or not self.time.steps:
            return False
        per_step = self.time.spent["steps"] / self.time.steps
        return self.cfg.max_time - self.elapsed() < per_step * self.eval_every / 2

    def latest_rate(self) -> float:
        """The rate the latest step took (before any step: the first one's)."""
        return self.last_lr if self.last_lr is not None else self.rate()

    def report(self, kind: str, **fields) -> Report:
        """The live view's snapshot, updated with the run's position and ``fields``."""
        s = self.state
        fields = {"text": "", "info": {}, **fields}
        self.shown = replace(self.shown, kind=kind, step=s.step,
                             epoch=s.epoch + s.window / len(self.batches), lr=self.latest_rate(),
                             elapsed=self.elapsed(), chars_per_s=self.time.stepping,
                             overall_chars_per_s=self.time.overall(), eta=self.time_left(),
                             **fields)
        return self.shown

    def _stalled(self) -> bool:
        """The last ``patience`` evaluations all failed to beat the best validation loss."""
        s, patience = self.state, self.cfg.patience
        if not patience or s.best is None or s.best.get("val_loss") is None:
            return False
        return sum(row["step"] > s.best["step"] for row in s.history) >= patience

    def _after_step(self) -> Iterator[Report]:
        yield self.report("step", train_loss=self.smooth / self.smooth_weight)
        yield from self._thread_news()
        if self.cfg.sample_every and self.state.step % self.cfg.sample_every == 0:
            yield self.sample()
        if hint := self.clock.busy_note():
            yield self.report("notice", text=hint)

    def _thread_news(self) -> Iterator[Report]:
        """What the thread plan and the chooser found since the latest report."""
        news = self.threads.news + ([self.clock.note] if self.clock.note else [])
        self.threads.news, self.clock.note = [], None
        for text in news:
            yield self.report("notice", text=text)

    def _opening(self) -> Iterator[Report]:
        s = self.state
        yield self.report("start", info={
            "model": s.model.config, "train": self.cfg, "parameters": s.model.num_parameters,
            "corpus": self.facts, "train_chars": len(self.train_ids),
            "val_chars": len(self.val_ids), "validation": self.val_record,
            "eval_every": self.eval_every, "steps_per_epoch": len(self.batches),
            "resumed_at": s.step, "origin": s.origin, "chosen": s.chosen})
        notes = list(self.notes)
        if self.total_steps is not None and s.step >= self.total_steps:
            notes.append(f"the run is already at step {s.step}, at or past its limit of "
                         f"{self.total_steps} steps: nothing to train (raise --max-steps or "
                         "--epochs to go on)")
        for note in notes:
            yield self.report("notice", text=note)
        if s.best is not None:  # a resumed run shows where it stood from its first line
            self.shown = replace(self.shown, best_val=s.best.get("val_loss"),
                                 best_step=s.best.get("step"))
        if s.history:
            self.shown = replace(self.shown, val_loss=s.history[-1].get("val_loss"))

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
        if not all(np.isfinite(p).all() for p in self.state.model.params.values()):
            raise self._diverged("an update made weights infinite or NaN", self.state.step)

    def _diverged(self, what: str, step: int) -> DivergenceError:
        advice = ("Try a lower --lr or --grad-clip" if self.cfg.grad_clip else
                  "Try a lower --lr, or clipping (e.g. --grad-clip 5)")
        if self.saved is None:
            return DivergenceError(f"training diverged at step {step}: {what}; nothing was "
                                   f"saved to {self.path}. {advice}")
        return DivergenceError(f"training diverged at step {step}: {what}; {self.path} (step "
                               f"{self.saved}) is intact. {advice}, then --resume")


# ----------------------------------------------------------------------------- building a run

def train(corpus: Corpus, output: str | Path, *, model_options: dict[str, Any] | None = None,
          train_options: dict[str, Any] | None = None, resume: bool = False,
          force: bool = False, should_stop: Callable[[], bool] = lambda: False,
          threads: int | str | None = None, dtype=np.float32, init_from: Any = None
          ) -> Iterator[Report]:
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
    ``config.FINETUNE_DEFAULTS``.

    ``threads``: BLAS threads for the run (process-wide while it runs, restored after). None
    follows the machine's load where that cannot change the model (``charrnn.train_threads``),
    a number pins the count, "auto" follows the load regardless.
    """
    model_options = dict(model_options or {})
    train_options = dict(train_options or {})
    check_option_names("model_options", model_options, ModelConfig, exclude={"vocab_size"})
    check_option_names("train_options", train_options, TrainConfig)
    path = Path(output)
    check_threads(threads)
    base = None if init_from is None else finetune_base(init_from, model_options,
                                                        resume=resume, output=path)
    check_output(path, resume=resume, force=force)
    if resume:
        state, cfg, notes = resumed_run(checkpoint.load(path), corpus, model_options,
                                        train_options, path)
    elif base is not None:
        state, cfg, notes = finetuned_run(base, corpus, model_options, train_options)
    else:
        state, cfg, notes = new_run(corpus, model_options, train_options, dtype)
    plan = plan_threads(threads)
    trainer = Trainer(state, cfg, corpus, path, saved=state.step if resume else None,
                      should_stop=should_stop, threads=plan,
                      notes=corpus.notes() + notes + plan.notes)
    return with_threads(plan, trainer.reports())
