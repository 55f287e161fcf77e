"""Frozen, validated configuration: what a model is and how it is trained; and the plain-value
rules configs, model files and reports share (what is an integer or a number, JSON-ready data)."""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError, option, speaking_in_flags

CELLS = ("rnn", "gru", "lstm")
#: gate blocks per cell: the width of W_x, W_h and b is GATES[cell] * hidden_size
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
OPTIMIZERS = ("adam", "rmsprop", "adagrad", "sgd")
LR_SCHEDULES = ("constant", "cosine")


def check(ok: bool, message: str) -> None:
    """Refuse a setting: raise ConfigError(message) unless ok."""
    if not ok:
        raise ConfigError(message)


def is_int(x: Any, *, numpy: bool = False) -> bool:
    """An integer and not a bool (which Python counts as one); numpy=True takes NumPy's too."""
    return isinstance(x, int | np.integer if numpy else int) and not isinstance(x, bool)


def is_number(x: Any, *, numpy: bool = False) -> bool:
    """A real number, not a bool, that is finite as a float: |x| <= 1.8e308 (no NaN, no
    infinity, no integer too large to convert); numpy=True takes NumPy's numbers too."""
    kinds = int | float | np.integer | np.floating if numpy else int | float
    if not isinstance(x, kinds) or isinstance(x, bool):
        return False
    # an int is compared, not converted: math.isfinite(10**400) would raise OverflowError
    return abs(x) <= sys.float_info.max if isinstance(x, int) else math.isfinite(x)


def plain(value: Any, *, keep_non_finite: bool = False) -> Any:
    """JSON-ready: NumPy scalars as Python's, tuples as lists, keys as str, NaN and infinities
    as None (strict JSON has neither); keep_non_finite=True leaves them for a check to name."""
    if isinstance(value, dict):
        return {str(k): plain(v, keep_non_finite=keep_non_finite) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, keep_non_finite=keep_non_finite) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if not keep_non_finite and isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def shape_name(cell: str, width: int, layers: int) -> str:
    """"GRU 2x256": a network's shape as the start line and the measured speeds name it."""
    return f"{cell.upper()} {layers}x{width}"


class _Config:
    """Shared helpers: plain-dict round trip with unknown/missing keys reported clearly."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any):
        if not isinstance(d, dict):
            raise ConfigError(f"{cls.__name__} must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(map(str, unknown))}")
        try:
            with speaking_in_flags(False):  # a stored config's fields, not the command's flags
                return cls(**d)
        except TypeError as e:  # a required field is missing
            raise ConfigError(f"{cls.__name__}: {e}") from None

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


MAX_VOCAB_SIZE = 0x110000  # one id per Unicode code point, U+0000 to U+10FFFF
MAX_HIDDEN_SIZE, MAX_LAYERS = 16384, 64  # far beyond use; keeps a typo from exhausting memory


@dataclass(frozen=True)
class ModelConfig(_Config):
    """What the network is; fixed for the life of a model. Its defaults are the model that
    ``charrnn.choice`` starts from: a GRU 2 x 256, without dropout until chosen."""

    cell: str = "gru"  # recurrent cell: rnn (tanh), gru (cuDNN form) or lstm
    vocab_size: int = 65  # V: number of distinct characters
    hidden_size: int = 256  # H: units per layer
    num_layers: int = 2  # L: stacked recurrent layers
    dropout: float = 0.0  # inverted-dropout rate between layers and before the head (training only)

    def __post_init__(self) -> None:
        check(self.cell in CELLS,
              f"{option('cell')} must be one of {', '.join(CELLS)}, not {self.cell!r}")
        check(is_int(self.vocab_size) and 1 <= self.vocab_size <= MAX_VOCAB_SIZE,
              f"vocab_size must be an integer from 1 to {MAX_VOCAB_SIZE}, not "
              f"{self.vocab_size!r}")
        check(is_int(self.hidden_size) and 1 <= self.hidden_size <= MAX_HIDDEN_SIZE,
              f"{option('hidden_size')} must be an integer from 1 to {MAX_HIDDEN_SIZE}, not "
              f"{self.hidden_size!r}")
        check(is_int(self.num_layers) and 1 <= self.num_layers <= MAX_LAYERS,
              f"{option('num_layers')} must be an integer from 1 to {MAX_LAYERS}, not "
              f"{self.num_layers!r}")
        check(is_number(self.dropout) and 0.0 <= self.dropout < 1.0,
              f"{option('dropout')} must be at least 0 and below 1, not {self.dropout!r}")

    @property
    def gates(self) -> int:
        """G: gate blocks per layer (RNN 1, GRU 3, LSTM 4)."""
        return GATES[self.cell]

    @property
    def state_parts(self) -> int:
        """S: arrays in a layer's recurrent state (h, and c for the LSTM)."""
        return 2 if self.cell == "lstm" else 1

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter's name (the checkpoint key) and exact shape, in a fixed order."""
        V, H, G = self.vocab_size, self.hidden_size, self.gates
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(self.num_layers):
            D = V if layer == 0 else H
            shapes[f"layers.{layer}.W_x"] = (D, G * H)
            shapes[f"layers.{layer}.W_h"] = (H, G * H)
            shapes[f"layers.{layer}.b"] = (G * H,)
            if self.cell == "gru":
                shapes[f"layers.{layer}.b_hn"] = (H,)
        shapes["head.W"] = (H, V)
        shapes["head.b"] = (V,)
        return shapes

    def num_parameters(self) -> int:
        return sum(math.prod(s) for s in self.parameter_shapes().values())


MAX_SEQ_LEN = MAX_BATCH_SIZE = 100_000  # far beyond use; keeps a typo from exhausting memory
MAX_THREADS = 1024  # BLAS threads a run may ask for (OpenBLAS caps it at its own build's limit)
MAX_SEED = 2**63 - 1  # the largest signed 64-bit integer


@dataclass(frozen=True)
class TrainConfig(_Config):
    """How a model is trained; may change between resumed runs. Its defaults are a new run's,
    but for ``epochs``, which ``charrnn.choice`` lowers for a large text, and fine-tuning's
    (FINETUNE_DEFAULTS)."""

    seq_len: int = 64  # T: characters per truncated-BPTT window
    batch_size: int = 32  # B: parallel contiguous streams
    lr: float = 4e-3  # learning rate at the start, the peak (the schedules only lower it)
    optimizer: str = "adam"  # adam, rmsprop, adagrad or sgd (with momentum 0.9)
    lr_schedule: str = "cosine"  # cosine to the run's limit, or constant (with optional step decay)
    lr_decay: float = 1.0  # multiply the learning rate by this ...
    lr_decay_every: int = 0  # ... every this many steps (0: never)
    grad_clip: float = 5.0  # clip the global gradient norm to this (0: no clipping)
    weight_decay: float = 0.1  # decoupled (AdamW): a step first scales matrices by 1 - lr x this
    epochs: float = 15.0  # stop after this many passes over the training text (0: no limit)
    max_steps: int = 0  # stop after this many steps in the whole run (0: no limit)
    max_time: float = 0.0  # stop after this many seconds of training in this run (0: no limit)
    patience: int = 5  # stop after this many evaluations without a better val loss (0: never)
    val_frac: float = 0.1  # fraction of the text (its tail) held out for validation
    eval_every: int = 0  # validate and checkpoint every this many steps (0: by the text's size)
    sample_every: int = 0  # show a sample every this many steps (0: never)
    sample_length: int = 200  # characters in each progress sample
    seed: int = 0  # seeds initialisation, dropout, batching and samples

    def __post_init__(self) -> None:
        check(is_int(self.seq_len) and 1 <= self.seq_len <= MAX_SEQ_LEN,
              f"{option('seq_len')} must be an integer from 1 to {MAX_SEQ_LEN:,}, not "
              f"{self.seq_len!r}")
        check(is_int(self.batch_size) and 1 <= self.batch_size <= MAX_BATCH_SIZE,
              f"{option('batch_size')} must be an integer from 1 to {MAX_BATCH_SIZE:,}, not "
              f"{self.batch_size!r}")
        check(is_number(self.lr) and self.lr > 0,
              f"{option('lr')} must be a positive number, not {self.lr!r}")
        check(self.optimizer in OPTIMIZERS, f"{option('optimizer')} must be one of "
              f"{', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        check(self.lr_schedule in LR_SCHEDULES, f"{option('lr_schedule')} must be one of "
              f"{', '.join(LR_SCHEDULES)}, not {self.lr_schedule!r}")
        check(is_number(self.lr_decay) and 0 < self.lr_decay <= 1,
              f"{option('lr_decay')} must be in (0, 1], not {self.lr_decay!r}")
        check(is_int(self.lr_decay_every) and self.lr_decay_every >= 0,
              f"{option('lr_decay_every')} must be a non-negative integer, not "
              f"{self.lr_decay_every!r}")
        check(self.lr_schedule == "constant" or (self.lr_decay_every == 0
                                                 and self.lr_decay == 1.0),
              f"{option('lr_decay')} and {option('lr_decay_every')} apply to "
              f"{option('lr_schedule', 'constant')}; add it")
        check(is_number(self.grad_clip) and self.grad_clip >= 0,
              f"{option('grad_clip')} must be a finite number >= 0 (0: no clipping), not "
              f"{self.grad_clip!r}")
        check(is_number(self.weight_decay) and self.weight_decay >= 0,
              f"{option('weight_decay')} must be a finite number >= 0 (0: no decay), not "
              f"{self.weight_decay!r}")
        for name in ("epochs", "max_time"):
            value = getattr(self, name)
            check(is_number(value) and value >= 0,
                  f"{option(name)} must be a finite number >= 0 (0: no limit), not {value!r}")
        for name in ("max_steps", "patience", "eval_every", "sample_every"):
            value = getattr(self, name)
            check(is_int(value) and value >= 0,
                  f"{option(name)} must be a non-negative integer, not {value!r}")
        check(is_number(self.val_frac) and 0 <= self.val_frac < 1,
              f"{option('val_frac')} must be at least 0 and below 1, not {self.val_frac!r}")
        check(is_int(self.sample_length) and self.sample_length >= 1,
              f"{option('sample_length')} must be a positive integer, not "
              f"{self.sample_length!r}")
        check(is_int(self.seed) and 0 <= self.seed <= MAX_SEED,
              f"{option('seed')} must be a non-negative integer, not {self.seed!r}")


#: Training options a fine-tuning run takes unless given, over TrainConfig's. A trained model
#: needs a gentler rate than a new one and reaches its best on a small text within a few hundred
#: steps, then overfits: the rate measured on the built-in english base with the Sonnets, the
#: poems and a technical text, the interval and the passes on an earlier base trained on eight
#: plays (docs/training.md, "The fine-tuning defaults"); a text unlike the base's takes a
#: brisker rate (choice.finetune_lr). It keeps its weights undecayed: decay pulls them towards
#: zero, away from what the base knows.
FINETUNE_DEFAULTS = {"lr": 1e-3, "eval_every": 50, "epochs": 20.0, "weight_decay": 0.0}
