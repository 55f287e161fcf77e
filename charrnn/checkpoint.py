"""The model file: save, load and describe a versioned `.npz`, with no pickle anywhere.

docs/model-file.md is the format's one description: its members, their dtypes and shapes, the
metadata's keys, the versions and the safety checks (a test holds it to this module). This
module writes format FORMAT_VERSION and reads every version up to it. Before any array is
allocated, the zip directory and every member's npy header are checked against what the
metadata implies (``npzfile``), and the metadata against its format's keys and bounds
(``model_meta``); any failure is a one-line
``CheckpointError`` naming the file. A save checks what it writes as ``load`` would, then writes
atomically.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .builtin import model_path
from .config import ModelConfig, TrainConfig, plain
from .errors import CheckpointError, ConfigError, DataError
from .model import CharRNN
from .model_meta import (
    FLOATS,
    FORMAT_VERSION,
    MAGIC,
    MAX_META,
    check_meta_text,
    package_version,
    parse_meta,
)
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

class ModelNotFound(CheckpointError):
    """No model file at the path (the CLI then says how to train one)."""


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
    references: dict[str, Any] | None = None  # the n-gram references' validation losses
    format_version: int = FORMAT_VERSION
    charrnn_version: str = field(default_factory=package_version)  # the version that wrote it
    path: Path | None = None


def _expected(meta: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every member but meta, without .npy -> (dtype.str, shape), as the metadata implies."""
    from .optim import optimizer_class

    cfg: ModelConfig = meta["model_config"]
    f, shapes, r = FLOATS[meta["dtype"]], cfg.parameter_shapes(), meta["resume"]
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
    meta = parse_meta(_read_json(zf, info))
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
    check_meta_text(text)
    return json.loads(text, parse_constant=_no_constant)


def _no_constant(name: str):
    raise Invalid(f"metadata JSON contains {name}")


@contextmanager
def _reading(path):
    """Open a model file; turn every failure into a CheckpointError naming the file."""
    name = os.fspath(path)
    path = model_path(path)
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
                      references=meta.get("references"), format_version=meta["format_version"],
                      charrnn_version=meta["charrnn_version"], path=Path(model_path(path)))


def describe(path) -> dict[str, Any]:
    """The whole file as plain data but the arrays' values (shapes and dtypes, yes).

    Cheap: reads the JSON, the npy headers and the vocabulary, never the weights."""
    from .data import Vocab

    with _reading(path) as (zf, infos):
        meta, heads = _scan(zf, infos)
        vocab = Vocab.from_codepoints(read_member(zf, infos["vocab.npy"], *heads["vocab"]))
    cfg, r = meta["model_config"], meta["resume"]
    path = model_path(path)
    out = dict(meta, path=os.fspath(path), file_size=os.path.getsize(path),
               model_config=cfg.to_dict(), num_parameters=cfg.num_parameters(),
               vocab="".join(vocab.chars),
               arrays={k: {"shape": s, "dtype": d.name} for k, (d, s, _) in heads.items()})
    if r is not None:
        out["resume"] = dict(r, train_config=r["train_config"].to_dict())
    return out


# ----------------------------------------------------------------------------- writing

def _pack(model: CharRNN, resume, history, corpus, best, validation, origin, chosen,
          references) -> tuple[bytes, dict]:
    check(isinstance(model, CharRNN), f"expected a CharRNN, not {type(model).__name__}")
    check(model.vocab is not None, "the model has no vocabulary (set model.vocab)")
    if corpus is not None and not isinstance(corpus, dict):  # a charrnn.data.Corpus
        corpus = {"name": corpus.name, "size": corpus.size_bytes, "sha256": corpus.sha256,
                  "chars": len(corpus), "files": list(corpus.files)}
    meta = {"format": MAGIC, "format_version": FORMAT_VERSION,
            "charrnn_version": package_version(),
            "dtype": model.dtype.name, "model_config": model.config.to_dict(),
            "best": best, "history": list(history), "corpus": corpus, "resume": None,
            "validation": validation, "origin": origin, "chosen": chosen,
            "references": references}
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
    check_meta_text(text)
    # check all as load will (NaN in the JSON included), so that a save never replaces a good
    # file with one that does not load
    want = _expected(parse_meta(json.loads(text)))
    check(set(want) == set(arrays), f"arrays differ from the format: "
           f"{shown(sorted(set(want) ^ set(arrays)))}")
    for k, w in want.items():
        _check_member(k, arrays[k].dtype, arrays[k].shape, w)
    _finite(arrays)
    return text.encode("ascii"), arrays


def save(path, model, *, resume: ResumeState | None = None, history=(), corpus=None,
         best=None, validation=None, origin=None, chosen=None, references=None) -> Path:
    """Write a model file atomically.

    ``corpus`` is a dict of facts or a ``charrnn.data.Corpus``; ``validation`` says what the
    validation losses scored (``evaluation.validation_sample``); ``origin`` the record of a
    fine-tuned model's base (``runs.finetuned_run``); ``chosen`` the options charrnn chose
    (``charrnn.choice``); ``references`` what the n-gram references score on the validation
    text (``references.reference_losses``). Everything is first checked as ``load`` checks
    it, so a save never replaces a good file with one that does not load.
    """
    path = Path(path)
    try:
        meta, arrays = _pack(model, resume, history, corpus, best, validation, origin, chosen,
                             references)
    except (Invalid, ConfigError, DataError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"cannot save {os.fspath(path)}: {short_message(e)}") from None
    write_atomic(path, meta, arrays)
    return path
