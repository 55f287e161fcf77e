"""The configuration of a new model where the user leaves it: chosen for the text and the run.

The rule, in three sentences (its measurements: docs/loss.md, "How the defaults are chosen"):

1. The model is a GRU 256 units wide with 2 layers, 3 layers when the run can train on at least
   DEEP_BUDGET characters at the GRU 2x256's speed, and 384 wide with 2 layers from BIG_BUDGET.
2. It reads its text at most MAX_PASSES times (``epochs``), so that a small text is not
   memorised before the learning rate has decayed, and at most MAX_CHARS characters in a run
   with neither ``max_time`` nor ``max_steps``.
3. Its dropout is DROPOUT_PER_PASS for each pass the run can make at the chosen width's speed,
   at most MAX_DROPOUT.

The run's budget is the tightest of its limits: the passes, ``max_steps`` x batch x window,
and ``max_time`` at SPEED characters a second, (256 / H)^1.25 of it at width H. Every option
given wins over the choice; a resumed run keeps the options stored in its file.

The smallest model (CELL, WIDTHS[0], its layers) and MAX_PASSES are ModelConfig's and
TrainConfig's defaults, so that the library's defaults are what a new run trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import ModelConfig, TrainConfig
from .data import validation_chars

__all__ = ["CHOSEN", "Choice", "budget_chars", "choose", "pass_limit"]

_MD, _TD = ModelConfig(), TrainConfig()
CELL = _MD.cell  # the cell of every chosen model
WIDTHS = (_MD.hidden_size, 384)  # the narrow and the wide model
DEEP_BUDGET = 1_000_000  # characters a run must be able to train on for a third layer
BIG_BUDGET = 10_000_000  # characters a run must be able to train on for the wide model
MAX_PASSES = _TD.epochs  # passes over the training text at most
MAX_CHARS = 50_000_000  # characters a run without a time or step limit trains on at most
SPEED = 20_000  # characters a second: the GRU 2x256 on the 2-core development machine
DROPOUT_PER_PASS, MAX_DROPOUT = 0.02, 0.3
# (the budget from which, width, layers): the first whose budget the run reaches
MODELS = ((BIG_BUDGET, WIDTHS[1], 2), (DEEP_BUDGET, WIDTHS[0], 3), (0, WIDTHS[0], _MD.num_layers))
CHOSEN = ("cell", "hidden_size", "num_layers", "dropout", "epochs")  # unless given


@dataclass(frozen=True)
class Choice:
    """What the rule chose (only options the user left), and why, in a few words."""

    model_options: dict[str, Any] = field(default_factory=dict)
    train_options: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def record(self) -> dict[str, Any] | None:
        """The model file's ``chosen``: the options and the reason; None if nothing was."""
        options = {**self.model_options, **self.train_options}
        return {"options": options, "reason": self.reason} if options else None


def pass_limit(train_chars: int, train_options: dict[str, Any]) -> float:
    """``epochs``, when not given: MAX_PASSES, and no more than MAX_CHARS characters in a run
    that has no time or step limit."""
    if train_options.get("max_time") or train_options.get("max_steps"):
        return MAX_PASSES
    return min(MAX_PASSES, round(MAX_CHARS / max(train_chars, 1), 2))


def budget_chars(train_chars: int, train_options: dict[str, Any], width: int) -> float:
    """The characters the run can train on: its tightest limit, ``max_time`` at the speed of a
    GRU 2 x ``width`` (SPEED x (256 / width)^1.25); inf without any limit."""
    t = {**_TD.to_dict(), "epochs": pass_limit(train_chars, train_options), **train_options}
    budgets = [t["epochs"] * train_chars] if t["epochs"] else []
    if t["max_time"]:
        budgets.append(t["max_time"] * SPEED * (WIDTHS[0] / width) ** 1.25)
    if t["max_steps"]:
        budgets.append(t["max_steps"] * t["batch_size"] * t["seq_len"])
    return min(budgets) if budgets else float("inf")


def choose(corpus_chars: int, model_options: dict[str, Any], train_options: dict[str, Any]
           ) -> Choice:
    """The options a new run takes where ``model_options``/``train_options`` (what the user
    gave) are silent, by the rule above; deterministic in its inputs."""
    train_chars = max(1, corpus_chars - validation_chars(
        corpus_chars, train_options.get("val_frac", _TD.val_frac)))
    narrow_budget = budget_chars(train_chars, train_options, WIDTHS[0])
    _, width, layers = next(m for m in MODELS if narrow_budget >= m[0])
    width = model_options.get("hidden_size", width)
    passes = budget_chars(train_chars, train_options, width) / train_chars
    chosen = {"cell": CELL, "hidden_size": width, "num_layers": layers,
              "dropout": round(min(MAX_DROPOUT, DROPOUT_PER_PASS * passes), 2),
              "epochs": pass_limit(train_chars, train_options)}
    model = {k: v for k, v in chosen.items() if k != "epochs" and k not in model_options}
    train = {} if "epochs" in train_options else {"epochs": chosen["epochs"]}
    return Choice(model, train, _reason(corpus_chars, train_options, passes))


def _reason(corpus_chars: int, train_options: dict[str, Any], passes: float) -> str:
    """"1.12M characters of text and 10 minutes (7.2 passes)"."""
    t = train_options
    budget = _duration(t["max_time"]) if t.get("max_time") else \
        f"{t['max_steps']:,} steps" if t.get("max_steps") else None
    reads = f"{passes:.2g} pass{'' if passes == 1 else 'es'}"
    return f"{_size(corpus_chars)} characters of text and " + (
        f"{budget} ({reads})" if budget else reads)


def _size(chars: int) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if chars >= scale:
            return f"{chars / scale:.3g}{unit}"
    return f"{chars}"


def _duration(seconds: float) -> str:
    unit, scale = next(((u, s) for u, s in (("hour", 3600), ("minute", 60)) if seconds >= s),
                       ("second", 1))
    n = seconds / scale
    return f"{n:.3g} {unit}{'' if n == 1 else 's'}"
