"""The configuration of a new model where the user leaves it: chosen for the text and the run.

The rule, in three sentences (its measurements: docs/loss.md, "How the defaults are chosen"):

1. The model is the first row of MODELS whose budget the run reaches: the characters it can
   train on at the GRU 2x256's speed (a GRU 2x256, 3x256 or 2x512).
2. It reads its text at most MAX_PASSES times (``epochs``), so that a small text is not
   memorised before the learning rate has decayed, and at most MAX_CHARS characters in a run
   with neither ``max_time`` nor ``max_steps``.
3. Its dropout is DROPOUT_PER_PASS for each pass the run can make with the chosen model, at
   most MAX_DROPOUT, and none for a run of fewer than DROPOUT_FROM passes: it cannot learn
   its text by heart, and dropout would cost it both learning and steps.

The run's budget is the tightest of its limits: the passes, ``max_steps`` x batch x window,
and ``max_time`` x the model's speed on this machine, measured at the start of the run
(``speed(cell, width, layers)``, ``charrnn.speed``): a timed run plans with what this machine
does, a run bounded by steps or passes is the same everywhere. Every option given wins over the
choice; a resumed run keeps the options stored in its file.

The smallest model (CELL, WIDTHS[0], its layers) and MAX_PASSES are ModelConfig's and
TrainConfig's defaults, so that the library's defaults are what a new run trains.

Before a new model is chosen, ``charrnn train`` asks ``start_from_base`` whether to fine-tune
the built-in English base (BASE) instead: it does where the base's vocabulary holds at least
MIN_BASE_COVERAGE of the text's characters and the run can train on fewer characters than the
base was trained on (BASE_TRAINED_CHARS), at the base's own speed and fine-tuning's limits.
Fine-tuning's rate comes from the score, on the text's first BASE_FIT_CHARS characters, of the
model it starts from, the base grown by the text's new characters (``finetune_lr``):
FINETUNE_DEFAULTS' gentle one for a text like the base's, BRISK_LR for one scored over
UNLIKE_BASE_LOSS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .config import FINETUNE_DEFAULTS, ModelConfig, TrainConfig
from .data import validation_chars

__all__ = ["BASE", "CHOSEN", "Choice", "budget_chars", "choose", "finetune_lr", "left_to_choose",
           "pass_limit", "start_from_base", "training_chars"]

_MD, _TD = ModelConfig(), TrainConfig()
CELL = _MD.cell  # the cell of every chosen model
WIDTHS = (_MD.hidden_size, 512)  # the narrow and the wide model
DEEP_BUDGET = 1_000_000  # characters a run must be able to train on for a third layer
# ... for the wide model: a fast machine's 10 minutes (28M characters at 47k a second). On a
# machine with half that budget the 3x256 beats a 2x384 and a 2x512 (docs/loss.md, "The levers")
BIG_BUDGET = 20_000_000
MAX_PASSES = _TD.epochs  # passes over the training text at most
MAX_CHARS = 50_000_000  # characters a run without a time or step limit trains on at most
# with weight decay, the Sonnets' 15 passes in 2 minutes reach 1.588 at dropout 0.2, against
# 1.593 at 0.15, 1.606 at 0.3 and 1.635 at 0.4 (docs/loss.md, "The levers")
MAX_DROPOUT = 0.2
DROPOUT_PER_PASS = MAX_DROPOUT / MAX_PASSES  # 0.2 at the pass limit
# passes a run must be able to make for any dropout: at 3.1 passes, dropout 0.04 cost the plays
# 0.011 at the slow speed (docs/loss.md, "The measurements behind the rule")
DROPOUT_FROM = 4
# (the budget from which, width, layers): the first whose budget the run reaches
MODELS = ((BIG_BUDGET, WIDTHS[1], 2), (DEEP_BUDGET, WIDTHS[0], 3),
          (0, WIDTHS[0], _MD.num_layers))
CHOSEN = ("cell", "hidden_size", "num_layers", "dropout", "epochs")  # unless given
BASE = "english"  # the built-in model a new run may fine-tune (charrnn.builtin)
# of the text's characters, in the base's vocabulary: fine-tuned at BRISK_LR, the english base
# beats a model from scratch on Russian, Japanese and Chinese manual pages (56%, 61% and 68% of
# their characters known); a text mostly in a script it has never seen trains from scratch
MIN_BASE_COVERAGE = 0.5
# the characters the base trained on: corpora/tools/build_base.py's steps x batch x window
BASE_TRAINED_CHARS = 10_000 * 32 * 128
BASE_FIT_CHARS = 20_000  # characters of the text's start that the base scores
# Fine-tuning's peak rate where the model it starts from (the base, grown by the text's new
# characters) scores a text over UNLIKE_BASE_LOSS nats a character. At FINETUNE_DEFAULTS'
# gentle rate, the english base loses to a model from scratch on C headers (scored 2.15),
# Italian, German and Polish (2.77, 3.20, 3.77), English and Russian (3.41) and Japanese
# (4.27); at this one it beats it on all but the Italian and the Polish, where it trails by
# 0.03 and 0.015. The gentle rate suits the Sonnets and the poems (1.65, 1.72)
# (docs/training.md, "The English base by default"). A new character starts at a probability
# of at most 0.001 (transfer.NEW_CHAR_PROB), 7 nats or more: a text a tenth of whose
# characters are new takes the brisk rate whatever the rest.
BRISK_LR = 0.003
UNLIKE_BASE_LOSS = 1.9

# Characters per second of a training step of a shape (cell, width, layers) on this machine,
# and whether it was measured (else estimated from the shapes that were: charrnn.speed).
Speed = Callable[[str, int, int], tuple[float, bool]]


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


def budget_chars(train_chars: int, train_options: dict[str, Any],
                 chars_per_s: float | None = None) -> float:
    """The characters the run can train on: its tightest limit, ``max_time`` at
    ``chars_per_s`` (which a timed run must give); inf without any limit."""
    t = {**_TD.to_dict(), "epochs": pass_limit(train_chars, train_options), **train_options}
    budgets = [t["epochs"] * train_chars] if t["epochs"] else []
    if t["max_time"]:
        budgets.append(t["max_time"] * chars_per_s)
    if t["max_steps"]:
        budgets.append(t["max_steps"] * t["batch_size"] * t["seq_len"])
    return min(budgets) if budgets else float("inf")


def choose(corpus_chars: int, model_options: dict[str, Any], train_options: dict[str, Any],
           speed: Speed | None = None) -> Choice:
    """The options a new run takes where ``model_options``/``train_options`` (what the user
    gave) are silent, by the rule above. A run with ``max_time`` needs ``speed`` (unless every
    option is given: nothing is then chosen or measured); any other is deterministic in its
    inputs."""
    if not left_to_choose(model_options, train_options):
        return Choice()
    train_chars = training_chars(corpus_chars, train_options)
    cell = model_options.get("cell", CELL)
    timed = _timed(train_options, speed)

    def budget(width: int, layers: int) -> float:
        chars_per_s = speed(cell, width, layers)[0] if timed else None
        return budget_chars(train_chars, train_options, chars_per_s)

    width, layers = model_options.get("hidden_size"), model_options.get("num_layers")
    if width is None or layers is None:  # the table's row, by the GRU 2x256's budget
        narrow_budget = budget(WIDTHS[0], _MD.num_layers)
        _, row_width, row_layers = next(m for m in MODELS if narrow_budget >= m[0])
        width, layers = width or row_width, layers or row_layers
    passes = budget(width, layers) / train_chars
    dropout = DROPOUT_PER_PASS * passes if passes >= DROPOUT_FROM else 0.0
    chosen = {"cell": CELL, "hidden_size": width, "num_layers": layers,
              "dropout": round(min(MAX_DROPOUT, dropout), 2),
              "epochs": pass_limit(train_chars, train_options)}
    model = {k: v for k, v in chosen.items() if k != "epochs" and k not in model_options}
    train = {} if "epochs" in train_options else {"epochs": chosen["epochs"]}
    speed_note = _speed_note(*speed(cell, width, layers)) if timed else ""
    return Choice(model, train, _reason(corpus_chars, train_options, passes, speed_note))


def start_from_base(corpus_chars: int, coverage: float, train_options: dict[str, Any],
                    base_speed: Callable[[], tuple[float, bool]] | None = None
                    ) -> tuple[bool, str]:
    """Whether a new run fine-tunes the built-in base rather than train a new model, and why:
    yes where ``coverage`` (the share of the text's characters that the base's vocabulary
    holds) is at least MIN_BASE_COVERAGE and the fine-tuning run's budget is below
    BASE_TRAINED_CHARS. A timed run's budget is ``max_time`` at ``base_speed()``, asked for
    only once the coverage holds. A text mostly in a script the base has never seen is not
    measured, and a run that can train as long as the base did has time for a model chosen for
    its own text (docs/training.md, "The English base by default")."""
    if coverage < MIN_BASE_COVERAGE:
        return False, f"from scratch: {coverage:.0%} of its characters are in the {BASE} base"
    train_chars = training_chars(corpus_chars, train_options)
    speed = base_speed() if _timed(train_options, base_speed) else None
    budget = budget_chars(train_chars, {**FINETUNE_DEFAULTS, **train_options},
                          speed[0] if speed else None)
    if budget >= BASE_TRAINED_CHARS:
        if budget == float("inf"):
            return False, (f"from scratch: the run has no limit (the {BASE} base trained on "
                           f"{_size(BASE_TRAINED_CHARS)} characters)")
        return False, (f"from scratch: the run can train on {_size(round(budget))} characters, "
                       f"at least the {BASE} base's {_size(BASE_TRAINED_CHARS)}")
    speed_note = _speed_note(*speed) if speed else ""
    return True, (_reason(corpus_chars, train_options, budget / train_chars, speed_note)
                  + f", {coverage:.0%} of its characters in the {BASE} base")


def finetune_lr(base_loss: float) -> tuple[float, str]:
    """Fine-tuning's peak rate where the user gives none, for a text that the model it starts
    from (the base, grown by the text's new characters) scores at ``base_loss`` nats a
    character, and why where it is not FINETUNE_DEFAULTS' gentle one: a text unlike the base's,
    in its words or its characters (scored over UNLIKE_BASE_LOSS), takes BRISK_LR, since its
    weights must move further than a few hundred gentle steps take them."""
    if not base_loss > UNLIKE_BASE_LOSS:  # NaN too: nothing is known of the text
        return FINETUNE_DEFAULTS["lr"], ""
    return BRISK_LR, (f"fine-tuning at lr {BRISK_LR:g}, not {FINETUNE_DEFAULTS['lr']:g}: the base "
                      f"scores {base_loss:.2f} nats a character on this text (over "
                      f"{UNLIKE_BASE_LOSS:g}), so it has further to go")


def training_chars(corpus_chars: int, train_options: dict[str, Any]) -> int:
    """The characters a run trains on: the text less its validation tail."""
    return max(1, corpus_chars - validation_chars(
        corpus_chars, train_options.get("val_frac", _TD.val_frac)))


def _timed(train_options: dict[str, Any], speed: Any) -> bool:
    """Whether the run has ``max_time``, which a speed must then come with."""
    if train_options.get("max_time") and speed is None:
        raise ValueError("a run with max_time is planned with this machine's speed")
    return bool(train_options.get("max_time"))


def left_to_choose(model_options: dict[str, Any], train_options: dict[str, Any]) -> list[str]:
    """The options of CHOSEN the user did not give."""
    return [k for k in CHOSEN if k not in model_options and k not in train_options]


def _speed_note(chars_per_s: float, measured: bool) -> str:
    return f" at {_size(round(chars_per_s))} characters/s, " + (
        "measured" if measured else "estimated")


def _reason(corpus_chars: int, train_options: dict[str, Any], passes: float,
            speed_note: str = "") -> str:
    """"1.12M characters of text and 10 minutes (7.2 passes at 13.1k characters/s,
    measured)"."""
    t = train_options
    budget = _duration(t["max_time"]) if t.get("max_time") else \
        f"{t['max_steps']:,} steps" if t.get("max_steps") else None
    reads = f"{passes:.2g} pass{'' if passes == 1 else 'es'}{speed_note}"
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
