"""The model file's metadata: the keys of each format version, their bounds, and the checks of
every value, applied before anything the metadata implies is allocated (``checkpoint``).

docs/model-file.md describes the keys; a test holds it to this module.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .config import OPTIMIZERS, ModelConfig, TrainConfig, is_int, is_number
from .errors import ConfigError
from .npzfile import Invalid, check, shown

__all__ = ["ADDED", "FLOATS", "FORMAT_VERSION", "KEYS", "MAGIC", "MAX_HISTORY_ROWS", "MAX_META",
           "MAX_META_VALUES", "MAX_TEXT", "check_meta_text", "package_version", "parse_meta",
           "version_keys"]

FORMAT_VERSION = 6  # 2 adds the validation record, the origin and the resume time split; 3
# chosen; 4 the references; 5 the speeds measured for chosen; 6 the weight decay
MAGIC = "charrnn-model"
# The metadata's limits: what a real run writes, with room to spare (a row per evaluation, and
# every save rewrites them all), and no more, so that no file's metadata makes a command use
# more than ~150 MB whatever it holds
MAX_META = 12 << 20  # bytes of JSON (50,000 history rows take 6.5 to 8.3 MB)
MAX_META_VALUES = 1_000_000  # JSON values, keys included (11 per history row)
MAX_HISTORY_ROWS = 50_000  # evaluations: 10 million steps at eval_every 200
MAX_TEXT = 65_536  # characters of the corpus name or digest, which inspect shows
FLOATS = {"float32": "<f4", "float64": "<f8"}



def package_version() -> str:
    """This charrnn's version, which it writes into every model file."""
    from . import __version__  # late: charrnn/__init__ imports this module

    return __version__


def check_meta_text(text: str) -> None:
    """The metadata's text, bounded before json parses it (json builds every value before the
    schema is checked: 12 MB of `[],` would be 270 MB of lists): at most MAX_META bytes of
    memory and MAX_META_VALUES JSON values."""
    # a str holds every character at the width of its widest: one beyond U+FFFF makes it 4 bytes
    size = sys.getsizeof(text) - sys.getsizeof("")
    check(size <= MAX_META, f"member 'meta' takes {size:,} bytes as text (limit {MAX_META:,})")
    # each value but the first follows one of , : [ { (counted in strings too: an upper bound)
    n = 1 + sum(map(text.count, ",:[{"))
    check(n <= MAX_META_VALUES,
          f"member 'meta' has up to {n:,} JSON values (limit {MAX_META_VALUES:,})")


def _kind(test, noun: str):
    """A check(value, what) that the JSON value passes test."""
    def validate(v: Any, what: str) -> None:
        check(test(v), lambda: f"{what} must be {noun}, not {shown(v)}")
    return validate


_int = _kind(lambda v: is_int(v) and v >= 0, "a non-negative integer")
_num = _kind(is_number, "a number")
_num_or_null = _kind(lambda v: v is None or is_number(v), "a number or null")


def _str(v: Any, what: str) -> None:
    check(isinstance(v, str), lambda: f"{what} must be a string, not {shown(v)}")
    check(len(v) <= MAX_TEXT, f"{what} has {len(v):,} characters (limit {MAX_TEXT:,})")


_int_or_null = _kind(lambda v: v is None or is_int(v) and v >= 0,
                     "a non-negative integer or null")
_str_or_null = _kind(lambda v: v is None or isinstance(v, str) and len(v) <= MAX_TEXT,
                     "a string (at most 65,536 characters) or null")


def _is_plain(x: Any) -> bool:
    return x is None or isinstance(x, str | bool) or is_number(x)


def _flat(d: Any, what: str, required: dict, lists: bool = False) -> None:
    """A flat JSON object: required keys pass their checks; the others hold plain values."""
    check(isinstance(d, dict), lambda: f"{what} must be a JSON object, not {shown(d)}")
    for k, validate in required.items():
        check(k in d, f"{what} has no {k!r}")
        validate(d[k], f"{what} {k}")
    for k, v in d.items():
        check(k in required or _is_plain(v)
              or lists and isinstance(v, list) and all(map(_is_plain, v)),
              lambda k=k, v=v: f"{what} {shown(k)} must be a plain value, not {shown(v)}")


def _config(cls, d: Any, what: str):
    try:
        return cls.from_dict(d)
    except ConfigError as e:
        raise Invalid(f"{what}: {e}") from None


KEYS = {"format", "format_version", "charrnn_version", "dtype", "model_config", "best",
         "history", "corpus", "resume"}
_RESUME = {"train_config", "optimizer", "step", "elapsed", "window", "epoch", "rng_state"}
ADDED = {2: ({"validation", "origin"}, {"spent"}),  # keys a version adds: (top, resume)
          3: ({"chosen"}, set()), 4: ({"references"}, set()), 5: (set(), set()),
          6: (set(), set())}
WEIGHT_DECAY_FROM = 6  # the format whose train config has weight_decay: earlier runs had none
_VALIDATION = {"chars": _int, "of": _int}  # and, for a sample of pieces, pieces, piece_chars
_PHASES = ("steps", "validation", "saving", "samples", "other")


def version_keys(version: int) -> tuple[set[str], set[str]]:
    """The metadata's keys and the resume section's keys in a format version."""
    top, resume = set(KEYS), set(_RESUME)
    for v, (more_top, more_resume) in ADDED.items():
        if version >= v:
            top, resume = top | more_top, resume | more_resume
    return top, resume


def _check_validation(v: Any) -> None:
    check(isinstance(v, dict) and set(_VALIDATION) <= set(v)
          <= {*_VALIDATION, "pieces", "piece_chars"}
          and all(is_int(x) and x >= 0 for x in v.values()),
          f"validation must be a JSON object of counts (chars, of[, pieces, piece_chars]), "
          f"not {shown(v)}")


def _check_measured(v: Any) -> bool:
    speeds = v.get("chars_per_s") if isinstance(v, dict) else None
    return (isinstance(v, dict) and set(v) == {"chars_per_s", "seconds"}
            and is_number(v["seconds"]) and v["seconds"] >= 0 and isinstance(speeds, dict)
            and len(speeds) <= 64 and all(isinstance(k, str) and len(k) <= 64 and is_number(x)
                                          and x > 0 for k, x in speeds.items()))


def _check_chosen(v: Any, version: int = FORMAT_VERSION) -> None:
    options = v.get("options") if isinstance(v, dict) else None
    keys = {"options", "reason", "measured"} if version >= 5 else {"options", "reason"}
    check(isinstance(v, dict) and {"options", "reason"} <= set(v) <= keys
          and isinstance(v["reason"], str)
          and ("measured" not in v or _check_measured(v["measured"]))
          and len(v["reason"]) <= MAX_TEXT and isinstance(options, dict)
          and len(options) <= 64 and all(
              isinstance(k, str) and len(k) <= 64 and (is_number(x) or isinstance(x, str))
              and not isinstance(x, bool) for k, x in options.items()),
          lambda: f"chosen must be a JSON object of options, a reason and what was measured, "
                  f"not {shown(v)}")


def _check_spent(v: Any) -> None:
    check(isinstance(v, dict) and set(v) <= set(_PHASES)
          and all(is_number(x) and x >= 0 for x in v.values()),
          f"resume spent must be a JSON object of seconds per phase, not {shown(v)}")
_loss = _kind(lambda v: is_number(v) and v >= 0, "a non-negative number")
# references.reference_losses, whose figures inspect shows: losses, an order, counts
_REFERENCES = {"unigram": _loss, "ngram": _loss, "uniform": _loss,
               "order": _kind(lambda v: is_int(v) and 1 <= v <= 64, "an integer from 1 to 64"),
               "fit_chars": _int, "predictions": _int}
_ROW = {"step": _int, "time": _num, "train_loss": _num, "val_loss": _num_or_null, "lr": _num}
_ORIGIN = {"name": _str_or_null, "sha256": _str_or_null, "steps": _int_or_null,
           "val_loss": _num_or_null, "added": _str}


def parse_meta(meta: Any) -> dict:
    """Check the metadata's JSON; return it with the configs as objects."""
    check(isinstance(meta, dict) and meta.get("format") == MAGIC,
           "not a charrnn model file (meta.npy has no charrnn format tag)")
    version, writer = meta.get("format_version"), meta.get("charrnn_version")
    check(isinstance(writer, str) and len(writer) <= 40,
           lambda: f"charrnn_version must be a short string, not {shown(writer)}")
    _int(version, "format_version")
    check(version <= FORMAT_VERSION, f"written by charrnn {shown(writer)[1:-1]} (format "
           f"{version}); this charrnn {package_version()} reads format {FORMAT_VERSION} — "
           "upgrade charrnn")
    top, resume_keys = version_keys(version)
    check(set(meta) == top, lambda: f"metadata keys differ from format {version}: "
           f"{shown(sorted(set(meta) ^ top))}")
    if meta.get("validation") is not None:
        _check_validation(meta["validation"])
    check(meta["dtype"] in list(FLOATS), lambda: f"dtype must be float32 or float64, not "
           f"{shown(meta['dtype'])}")
    out = dict(meta, model_config=_config(ModelConfig, meta["model_config"], "model config"))
    if meta["best"] is not None:
        _flat(meta["best"], "best", {"step": _int, "val_loss": _num_or_null})
    check(isinstance(meta["history"], list), "history must be a JSON list")
    check(len(meta["history"]) <= MAX_HISTORY_ROWS, f"history has {len(meta['history']):,} "
           f"rows (limit {MAX_HISTORY_ROWS:,})")
    for i, row in enumerate(meta["history"]):
        _flat(row, f"history row {i}", _ROW)
    if meta["corpus"] is not None:
        _flat(meta["corpus"], "corpus", {"name": _str, "size": _int, "sha256": _str}, True)
    if meta.get("origin") is not None:
        _flat(meta["origin"], "origin", _ORIGIN)
    if meta.get("chosen") is not None:
        _check_chosen(meta["chosen"], meta["format_version"])
    if meta.get("references") is not None:
        _flat(meta["references"], "references", _REFERENCES)
    r = meta["resume"]
    if r is not None:
        check(isinstance(r, dict) and set(r) == resume_keys,
               f"resume must be a JSON object with the keys {sorted(resume_keys)}")
        if "spent" in r:
            _check_spent(r["spent"])
        check(r["optimizer"] in OPTIMIZERS, lambda: f"resume optimizer must be one of "
               f"{', '.join(OPTIMIZERS)}, not {shown(r['optimizer'])}")
        for k in ("step", "window", "epoch"):
            _int(r[k], f"resume {k}")
        _num(r["elapsed"], "resume elapsed")
        s = r["rng_state"]
        check(isinstance(s, dict) and s.get("bit_generator") == "PCG64"
               and set(s) == {"bit_generator", "state", "has_uint32", "uinteger"}
               and isinstance(s["state"], dict) and set(s["state"]) == {"state", "inc"}
               and all(is_int(x) and 0 <= x < 2**128 for x in s["state"].values())
               and s["has_uint32"] in (0, 1) and is_int(s["uinteger"])
               and 0 <= s["uinteger"] < 2**32, "resume rng_state is not a PCG64 state")
        np.random.PCG64().state = s  # and the generator's own checks
        stored = r["train_config"]
        if version < WEIGHT_DECAY_FROM and isinstance(stored, dict):
            stored = {"weight_decay": 0.0, **stored}
        out["resume"] = dict(r, train_config=_config(TrainConfig, stored, "resume train config"))
    return out
