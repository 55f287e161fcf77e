"""The model file of a training run: the best weights to sample, and all that resuming needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import checkpoint
from .config import TrainConfig
from .model import CharRNN
from .runs import RunState

__all__ = ["save_run"]


def save_run(path: Path, state: RunState, cfg: TrainConfig, *, corpus: dict[str, Any],
             validation: dict[str, int] | None, elapsed: float,
             spent: dict[str, float]) -> None:
    """Write the run's model file at ``path``: the best weights (the latest where none were
    kept), and the resume section (the latest weights, the optimizer's and the random
    generator's state, the carried hidden state, the data position, ``elapsed`` seconds and
    the ``spent`` seconds per phase of the whole run)."""
    s = state
    best_params = s.best_params if s.best_params is not None else s.model.params
    best_model = CharRNN(s.model.config, best_params, vocab=s.model.vocab, dtype=s.model.dtype)
    resume = checkpoint.ResumeState(
        params=s.model.params, optimizer=cfg.optimizer, optimizer_state=s.optimizer.state_dict(),
        rng_state=s.rng.bit_generator.state, hidden=s.hidden, train_config=cfg, step=s.step,
        elapsed=elapsed, window=s.window, epoch=s.epoch, spent=spent)
    checkpoint.save(path, best_model, resume=resume, history=s.history, corpus=corpus,
                    best=s.best, validation=validation, origin=s.origin, chosen=s.chosen,
                    references=s.references)
