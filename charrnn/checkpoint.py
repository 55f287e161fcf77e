"""The model file: save, load and describe a versioned `.npz`, with no pickle anywhere.

docs/model-file.md is the format's one description: its members, their dtypes and shapes, the
metadata's keys, the versions and the safety checks (a test holds it to this module). This
module writes format FORMAT_VERSION and reads every version up to it. Before any array is
allocated, the zip directory and every member's npy header are checked against what the
metadata implies (``npzfile``), and the metadata is bounded by MAX_META bytes, MAX_META_VALUES
JSON values, MAX_HISTORY_ROWS rows and MAX_TEXT characters; any failure is a one-line
``CheckpointError`` naming the file. A save checks what it writes as ``load`` would, then writes
atomically.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
import sys
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import OPTIMIZERS, ModelConfig, TrainConfig, is_int, is_number, plain
from .errors import CheckpointError, ConfigError, DataError
from .model import CharRNN
from .npzfile import (
    MAX_TOTAL_BYTES,
    Invalid,
    check,
    dtype_name,
    member_header,
    open_zip,
    read_member,
    short_message,
    shown,
    write_atomic,
)

__all__ = ["FORMAT_VERSION", "Checkpoint", "ResumeState", "ModelNotFound", "save", "load",
           "describe"]

FORMAT_VERSION = 3  # 2 adds the validation record, the origin and the resume time split; 3 chosen
MAGIC = "charrnn-model"
# The metadata's limits: what a real run writes, with room to spare (a row per evaluation, and
# every save rewrites them all), and no more, so that no file's metadata makes a command use
# more than ~150 MB whatever it holds
MAX_META = 12 << 20  # bytes of JSON (50,000 history rows take 6.5 to 8.3 MB)
MAX_META_VALUES = 1_000_000  # JSON values, keys included (11 per history row)
MAX_HISTORY_ROWS = 50_000  # evaluations: 10 million steps at eval_every 200
MAX_TEXT = 65_536  # characters of the corpus name or digest, which inspect shows
_FLOATS = {"float32": "<f4", "float64": "<f8"}


class ModelNotFound(CheckpointError):
    """No model file at the path (the CLI then says how to train one)."""


def _version() -> str:
    from . import __version__  # late: charrnn/__init__ imports this module

    return __version__


@dataclass
class ResumeState:
    """Everything a resumed run (``resume=True``) needs to continue as if it had never stopped."""

    params: dict[str, np.ndarray]  # latest weights, keyed and shaped like CharRNN.params
    optimizer: str  # optimizer name, one of config.OPTIMIZERS
    optimizer_state: dict[str, np.ndarray]  # Optimizer.state_dict(): `slot/param` moments, `t`
    rng_state: dict[str, Any]  # np.random.Generator(PCG64).bit_generator.state
    hidden: np.ndarray  # carried recurrent state (L, S, B, H), B = train_config.batch_size
    train_config: TrainConfig  # how the run trains
    step: int = 0  # optimizer steps taken so far in the run
    elapsed: float = 0.0  # seconds of training so far
    window: int = 0  # index of the next training window within the epoch
    epoch: int = 0  # completed passes over the training text
    spent: dict[str, float] = field(default_factory=dict)  # seconds per phase (timing.PHASES)


@dataclass
class Checkpoint:
    """A loaded model file."""

    model: CharRNN  # best-validation weights in the stored dtype, .vocab set
    resume: ResumeState | None = None  # None if the file cannot resume training
    history: list[dict[str, Any]] = field(default_factory=list)  # step, time, losses, lr
    corpus: dict[str, Any] | None = None  # name, size (bytes), sha256, chars, files
    best: dict[str, Any] | None = None  # {"step", "val_loss"} of the model's weights
    validation: dict[str, int] | None = None  # what each val_loss scored: chars, of[, pieces]
    origin: dict[str, Any] | None = None  # a fine-tuned model's base: name, sha256, steps, ...
    chosen: dict[str, Any] | None = None  # the options charrnn chose for the run, and why
    format_version: int = FORMAT_VERSION
    charrnn_version: str = field(default_factory=_version)  # the version that wrote it
    path: Path | None = None


# ----------------------------------------------------------------------------- metadata


def _check_meta_text(text: str) -> None:
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


_KEYS = {"format", "format_version", "charrnn_version", "dtype", "model_config", "best",
         "history", "corpus", "resume"}
_RESUME = {"train_config", "optimizer", "step", "elapsed", "window", "epoch", "rng_state"}
_ADDED = {2: ({"validation", "origin"}, {"spent"}),  # keys a version adds: (top, resume)
          3: ({"chosen"}, set())}
_VALIDATION = {"chars": _int, "of": _int}  # and, for a sample of pieces, pieces, piece_chars
_PHASES = ("steps", "validation", "saving", "samples", "other")


def _keys(version: int) -> tuple[set[str], set[str]]:
    """The metadata's keys and the resume section's keys in a format version."""
    top, resume = set(_KEYS), set(_RESUME)
    for v, (more_top, more_resume) in _ADDED.items():
        if version >= v:
            top, resume = top | more_top, resume | more_resume
    return top, resume


def _check_validation(v: Any) -> None:
    check(isinstance(v, dict) and set(_VALIDATION) <= set(v)
          <= {*_VALIDATION, "pieces", "piece_chars"}
          and all(is_int(x) and x >= 0 for x in v.values()),
          f"validation must be a JSON object of counts (chars, of[, pieces, piece_chars]), "
          f"not {shown(v)}")


def _check_chosen(v: Any) -> None:
    options = v.get("options") if isinstance(v, dict) else None
    check(isinstance(v, dict) and set(v) == {"options", "reason"} and isinstance(v["reason"], str)
          and len(v["reason"]) <= MAX_TEXT and isinstance(options, dict)
          and len(options) <= 64 and all(
              isinstance(k, str) and len(k) <= 64 and (is_number(x) or isinstance(x, str))
              and not isinstance(x, bool) for k, x in options.items()),
          lambda: f"chosen must be a JSON object of options and a reason, not {shown(v)}")


def _check_spent(v: Any) -> None:
    check(isinstance(v, dict) and set(v) <= set(_PHASES)
          and all(is_number(x) and x >= 0 for x in v.values()),
          f"resume spent must be a JSON object of seconds per phase, not {shown(v)}")
_ROW = {"step": _int, "time": _num, "train_loss": _num, "val_loss": _num_or_null, "lr": _num}
_ORIGIN = {"name": _str_or_null, "sha256": _str_or_null, "steps": _int_or_null,
           "val_loss": _num_or_null, "added": _str}


def _parse_meta(meta: Any) -> dict:
    """Check the metadata's JSON; return it with the configs as objects."""
    check(isinstance(meta, dict) and meta.get("format") == MAGIC,
           "not a charrnn model file (meta.npy has no charrnn format tag)")
    version, writer = meta.get("format_version"), meta.get("charrnn_version")
    check(isinstance(writer, str) and len(writer) <= 40,
           lambda: f"charrnn_version must be a short string, not {shown(writer)}")
    _int(version, "format_version")
    check(version <= FORMAT_VERSION, f"written by charrnn {shown(writer)[1:-1]} (format "
           f"{version}); this charrnn {_version()} reads format {FORMAT_VERSION} — upgrade charrnn")
    top, resume_keys = _keys(version)
    check(set(meta) == top, lambda: f"metadata keys differ from format {version}: "
           f"{shown(sorted(set(meta) ^ top))}")
    if meta.get("validation") is not None:
        _check_validation(meta["validation"])
    check(meta["dtype"] in list(_FLOATS), lambda: f"dtype must be float32 or float64, not "
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
        _check_chosen(meta["chosen"])
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
        out["resume"] = dict(r, train_config=_config(TrainConfig, r["train_config"],
                                                     "resume train config"))
    return out


def _expected(meta: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every member but meta, without .npy -> (dtype.str, shape), as the metadata implies."""
    from .optim import optimizer_class

    cfg: ModelConfig = meta["model_config"]
    f, shapes, r = _FLOATS[meta["dtype"]], cfg.parameter_shapes(), meta["resume"]
    out = {"vocab": ("<i4", (cfg.vocab_size,)), **{f"params/{k}": (f, s)
                                                   for k, s in shapes.items()}}
    if r is not None:
        out.update({f"resume/params/{k}": (f, s) for k, s in shapes.items()})
        for k, s in optimizer_class(r["optimizer"]).state_shapes(shapes).items():
            out[f"resume/optim/{k}"] = ("<i8" if k == "t" else f, s)
        B = r["train_config"].batch_size
        out["resume/hidden"] = (f, (cfg.num_layers, cfg.state_parts, B, cfg.hidden_size))
    total = sum(math.prod(s) * int(d[-1]) for d, s in out.values())
    check(total <= MAX_TOTAL_BYTES,
           f"the configuration implies {total:,} bytes of arrays (limit {MAX_TOTAL_BYTES:,})")
    return out


def _finite(arrays: dict[str, np.ndarray]) -> None:
    for k, a in arrays.items():  # min/max propagate NaN and see Inf, with no temporary array
        check(a.dtype.kind != "f" or bool(np.isfinite(a.min()) and np.isfinite(a.max())),
               f"member {k!r} contains NaN or infinite values")


def _check_member(key: str, dtype: np.dtype, shape: tuple, want: tuple) -> None:
    check(dtype.str == want[0], f"member {key!r} has dtype {dtype_name(dtype)}, "
           f"expected {dtype_name(np.dtype(want[0]))}")
    check(tuple(shape) == want[1], f"member {key!r} has shape {tuple(shape)}, expected {want[1]}")


# ----------------------------------------------------------------------------- reading


def _scan(zf, infos) -> tuple[dict, dict[str, tuple]]:
    """Check all but the arrays' values; return the metadata and {key: (dtype, shape, hlen)}."""
    info = infos.get("meta.npy")
    check(info is not None, "not a charrnn model file (no meta.npy member)")
    meta = _parse_meta(_read_json(zf, info))
    want = _expected(meta)
    names = {k + ".npy" for k in want} | {"meta.npy"}
    missing, extra = sorted(names - set(infos)), sorted(set(infos) - names)
    what = [f"missing member {shown(missing[0])}"] if missing else []
    what += [f"unexpected member {shown(extra[0])}"] if extra else []
    n = len(missing) + len(extra)
    check(not n, ", ".join(what) + (f" ({n} members differ)" if n > 1 else ""))
    heads = {}
    for key, w in want.items():
        info = infos[key + ".npy"]
        dtype, shape, hlen = heads[key] = member_header(zf, info, key)
        _check_member(key, dtype, shape, w)
        check(hlen + math.prod(shape) * dtype.itemsize == info.file_size,
               f"member {key!r} declares {math.prod(shape):,} elements but holds "
               f"{info.file_size - hlen:,} bytes of data")
    return meta, heads


def _read_json(zf, info) -> Any:
    """The metadata member's JSON, its size checked before it is read; the text is decoded
    straight from the member's buffer, which is freed before the parse."""
    dtype, shape, hlen = member_header(zf, info, "meta")
    check(dtype.str == "|u1" and len(shape) == 1 and hlen + shape[0] == info.file_size,
           f"member 'meta' must be 1-D uint8 text filling the member, not "
           f"{dtype_name(dtype)} {tuple(shape)}")
    check(shape[0] <= MAX_META, f"member 'meta' has {shape[0]:,} bytes (limit {MAX_META:,})")
    raw = read_member(zf, info, dtype, shape, hlen)
    text = str(raw.data, "utf-8")
    del raw
    _check_meta_text(text)
    return json.loads(text, parse_constant=_no_constant)


def _no_constant(name: str):
    raise Invalid(f"metadata JSON contains {name}")


@contextmanager
def _reading(path):
    """Open a model file; turn every failure into a CheckpointError naming the file."""
    name = os.fspath(path)
    try:
        mode = os.stat(path).st_mode  # a FIFO or a device would block or never end
        check(not stat.S_ISDIR(mode), "is a directory, not a model file")
        check(stat.S_ISREG(mode), "is not a regular file")
        with open(path, "rb") as f:
            zf, infos = open_zip(f)
            with zf:
                yield zf, infos
    except FileNotFoundError:
        raise ModelNotFound(f"{name}: no such model file") from None
    except (Invalid, DataError, ConfigError) as e:
        raise CheckpointError(f"{name}: {short_message(e)}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise CheckpointError(f"{name}: the archive is corrupt ({short_message(e)})") from None
    except OSError as e:
        raise CheckpointError(f"{name}: cannot read the file: "
                              f"{e.strerror or short_message(e)}") from None
    except (ValueError, TypeError, KeyError, IndexError, struct.error, OverflowError,
            MemoryError, RecursionError, RuntimeError, NotImplementedError) as e:
        raise CheckpointError(f"{name}: not a valid model file "
                              f"({type(e).__name__}: {short_message(e)})") from None


def load(path, *, resume: bool = True) -> Checkpoint:
    """Check and read a model file; with resume=False the resume arrays are checked, not read."""
    from .data import Vocab

    with _reading(path) as (zf, infos):
        meta, heads = _scan(zf, infos)
        a = {k: read_member(zf, infos[k + ".npy"], *h) for k, h in heads.items()
             if resume or not k.startswith("resume/")}
        _finite(a)
        cfg, r, state = meta["model_config"], meta["resume"], None
        names = cfg.parameter_shapes()
        model = CharRNN(cfg, {k: a[f"params/{k}"] for k in names},
                        vocab=Vocab.from_codepoints(a["vocab"]), dtype=meta["dtype"])
        if r is not None and resume:
            opt = {k.removeprefix("resume/optim/"): v for k, v in a.items()
                   if k.startswith("resume/optim/")}
            state = ResumeState(
                params={k: a[f"resume/params/{k}"] for k in names}, optimizer=r["optimizer"],
                optimizer_state=opt, rng_state=r["rng_state"], hidden=a["resume/hidden"],
                train_config=r["train_config"], step=r["step"], elapsed=float(r["elapsed"]),
                window=r["window"], epoch=r["epoch"],
                spent={k: float(v) for k, v in r.get("spent", {}).items()})
    return Checkpoint(model=model, resume=state, history=meta["history"], corpus=meta["corpus"],
                      best=meta["best"], validation=meta.get("validation"),
                      origin=meta.get("origin"), chosen=meta.get("chosen"),
                      format_version=meta["format_version"],
                      charrnn_version=meta["charrnn_version"], path=Path(path))


def describe(path) -> dict[str, Any]:
    """The whole file as plain data but the arrays' values (shapes and dtypes, yes).

    Cheap: reads the JSON, the npy headers and the vocabulary, never the weights."""
    from .data import Vocab

    with _reading(path) as (zf, infos):
        meta, heads = _scan(zf, infos)
        vocab = Vocab.from_codepoints(read_member(zf, infos["vocab.npy"], *heads["vocab"]))
    cfg, r = meta["model_config"], meta["resume"]
    out = dict(meta, path=os.fspath(path), file_size=os.path.getsize(path),
               model_config=cfg.to_dict(), num_parameters=cfg.num_parameters(),
               vocab="".join(vocab.chars),
               arrays={k: {"shape": s, "dtype": d.name} for k, (d, s, _) in heads.items()})
    if r is not None:
        out["resume"] = dict(r, train_config=r["train_config"].to_dict())
    return out


# ----------------------------------------------------------------------------- writing

def _pack(model: CharRNN, resume, history, corpus, best, validation, origin, chosen
          ) -> tuple[bytes, dict]:
    check(isinstance(model, CharRNN), f"expected a CharRNN, not {type(model).__name__}")
    check(model.vocab is not None, "the model has no vocabulary (set model.vocab)")
    if corpus is not None and not isinstance(corpus, dict):  # a charrnn.data.Corpus
        corpus = {"name": corpus.name, "size": corpus.size_bytes, "sha256": corpus.sha256,
                  "chars": len(corpus), "files": list(corpus.files)}
    meta = {"format": MAGIC, "format_version": FORMAT_VERSION, "charrnn_version": _version(),
            "dtype": model.dtype.name, "model_config": model.config.to_dict(),
            "best": best, "history": list(history), "corpus": corpus, "resume": None,
            "validation": validation, "origin": origin, "chosen": chosen}
    arrays = {"vocab": model.vocab.codepoints(),
              **{f"params/{k}": v for k, v in model.params.items()}}
    if resume is not None:
        meta["resume"] = {
            "train_config": resume.train_config.to_dict(), "optimizer": resume.optimizer,
            "step": resume.step, "elapsed": resume.elapsed, "window": resume.window,
            "epoch": resume.epoch, "rng_state": resume.rng_state, "spent": dict(resume.spent)}
        arrays.update({f"resume/params/{k}": v for k, v in resume.params.items()})
        arrays.update({f"resume/optim/{k}": v for k, v in resume.optimizer_state.items()})
        arrays["resume/hidden"] = resume.hidden
    arrays = {k: np.asarray(a) for k, a in arrays.items()}
    arrays = {k: a.astype(a.dtype.newbyteorder("<") if a.dtype.kind in "fiu" else a.dtype,
                          order="C", copy=False)  # so that it is stored in C order
              for k, a in arrays.items()}
    # ASCII: any str survives; a NaN is kept, so that the check below names it
    text = json.dumps(plain(meta, keep_non_finite=True), separators=(",", ":"))
    _check_meta_text(text)
    # check all as load will (NaN in the JSON included), so that a save never replaces a good
    # file with one that does not load
    want = _expected(_parse_meta(json.loads(text)))
    check(set(want) == set(arrays), f"arrays differ from the format: "
           f"{shown(sorted(set(want) ^ set(arrays)))}")
    for k, w in want.items():
        _check_member(k, arrays[k].dtype, arrays[k].shape, w)
    _finite(arrays)
    return text.encode("ascii"), arrays


def save(path, model, *, resume: ResumeState | None = None, history=(), corpus=None,
         best=None, validation=None, origin=None, chosen=None) -> Path:
    """Write a model file atomically.

    ``corpus`` is a dict of facts or a ``charrnn.data.Corpus``; ``validation`` says what the
    validation losses scored (``evaluation.validation_sample``); ``origin`` the record of a
    fine-tuned model's base (``runs.finetuned_run``); ``chosen`` the options charrnn chose
    (``charrnn.choice``). Everything is first checked
    as ``load`` checks it, so a save never replaces a good file with one that does not load.
    """
    path = Path(path)
    try:
        meta, arrays = _pack(model, resume, history, corpus, best, validation, origin, chosen)
    except (Invalid, ConfigError, DataError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"cannot save {os.fspath(path)}: {short_message(e)}") from None
    write_atomic(path, meta, arrays)
    return path
