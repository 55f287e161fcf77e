"""The model file: round trips, hostile and broken files, fuzzing, atomic and durable writes."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import charrnn
from charrnn import checkpoint as ckpt
from charrnn import model_meta, npzfile
from charrnn.checkpoint import Checkpoint, ModelNotFound, ResumeState, describe, load, save
from charrnn.config import ModelConfig, TrainConfig
from charrnn.data import Vocab
from charrnn.errors import CheckpointError
from charrnn.model import CharRNN
from charrnn.optim import make_optimizer

REPO = Path(__file__).resolve().parents[1]
# NUL, CR, LF, tab, ESC, emoji, a combining accent, a right-to-left mark, an astral CJK char
SPECIAL = "\x00\r\n\t\x1b a😀e\u0301\u200f𠀀"


# ----------------------------------------------------------------------------- helpers

def make_model(cell="lstm", hidden=8, layers=2, chars=SPECIAL, dtype=np.float32, seed=0):
    vocab = Vocab.from_text(chars)
    cfg = ModelConfig(cell=cell, vocab_size=len(vocab), hidden_size=hidden, num_layers=layers)
    return CharRNN(cfg, vocab=vocab, dtype=dtype, seed=seed)


def make_resume(model, optimizer="adam", batch_size=3, seed=1):
    """A resume state with non-trivial values everywhere: moments after real steps, used RNG."""
    rng = np.random.default_rng(seed)
    params = {k: v.copy() for k, v in model.params.items()}
    opt = make_optimizer(optimizer, params)
    for _ in range(3):
        grads = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}
        opt.step(params, grads, 0.01)
    rng.random(7)
    hidden = rng.standard_normal(model.initial_state(batch_size).shape).astype(model.dtype)
    tc = TrainConfig(batch_size=batch_size, seq_len=5, optimizer=optimizer, seed=seed)
    return ResumeState(params=params, optimizer=optimizer, optimizer_state=opt.state_dict(),
                       rng_state=rng.bit_generator.state, hidden=hidden, train_config=tc,
                       step=3, elapsed=12.5, window=17, epoch=2)


HISTORY = [
    {"step": 0, "time": 0.0, "train_loss": 2.5, "val_loss": None, "lr": 0.002},
    {"step": 200, "time": 31.25, "train_loss": 1.75, "val_loss": 1.875, "lr": 0.0019},
]
CORPUS = {"name": "input.txt", "size": 1_115_394, "sha256": "ab" * 32, "chars": 1_115_394}
BEST = {"step": 200, "val_loss": 1.875}


def save_full(path, model=None, **kw):
    model = model or make_model()
    args = dict(resume=make_resume(model), history=HISTORY, corpus=CORPUS, best=BEST)
    save(path, model, **{**args, **kw})
    return model


def members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def write_members(path, items, compression=zipfile.ZIP_STORED):
    """A zip of (name, bytes) pairs, duplicates allowed; items may be a dict."""
    items = items.items() if isinstance(items, dict) else items
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in items:
                zf.writestr(name, data)


def npy(arr, allow_pickle=False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=allow_pickle)
    return buf.getvalue()


def npy_raw(descr, shape, data=b"", fortran=False, version=1, pad=0) -> bytes:
    """A hand-made .npy: any header at all, any data."""
    h = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}" + " " * pad
    fmt = "<H" if version == 1 else "<I"
    h += " " * (-(10 + len(h) + 1) % 64) + "\n"
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack(fmt, len(h)) + h.encode() + data


def meta_of(items) -> dict:
    return json.loads(np.lib.format.read_array(io.BytesIO(items["meta.npy"])).tobytes())


def with_meta(items, change) -> dict:
    meta = meta_of(items)
    change(meta)
    return {**items, "meta.npy": npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))}


def rejected(path, *fragments, describe_too=True) -> str:
    """Load must fail with a one-line CheckpointError naming the file and every fragment;
    describe too, unless the problem is in the arrays' values, which it does not read."""
    with pytest.raises(CheckpointError) as info:
        load(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    for f in fragments:
        assert f in msg, msg
    if describe_too:
        with pytest.raises(CheckpointError):
            describe(path)
    else:
        describe(path)
    return msg


def peak_mib(fn) -> float:
    """Peak traced allocation (numpy's buffers included) while fn runs, in MiB."""
    tracemalloc.start()
    try:
        fn()
    except CheckpointError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 2**20


def same_array(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.fixture
def good(tmp_path) -> dict[str, bytes]:
    """The members of a valid file with resume state (LSTM, Adam)."""
    path = tmp_path / "good.npz"
    save_full(path)
    return members(path)


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("cell,optimizer,dtype", [
    ("lstm", "adam", np.float32), ("gru", "rmsprop", np.float64), ("rnn", "adagrad", np.float32),
    ("gru", "sgd", np.float32)])
def test_round_trip_is_exact(tmp_path, cell, optimizer, dtype):
    path = tmp_path / "model.npz"
    model = make_model(cell, hidden=6, layers=3, dtype=dtype, seed=4)
    resume = make_resume(model, optimizer)
    save(path, model, resume=resume, history=HISTORY, corpus=CORPUS, best=BEST)
    ck = load(path)

    assert isinstance(ck, Checkpoint) and ck.path == path
    assert ck.format_version == ckpt.FORMAT_VERSION == 6 and ck.charrnn_version == "0.1.0"
    assert ck.model.config == model.config and ck.model.dtype == dtype
    assert ck.model.vocab == model.vocab and "".join(ck.model.vocab.chars) == "".join(
        sorted(set(SPECIAL)))
    assert ck.model.params.keys() == model.params.keys()
    assert all(same_array(ck.model.params[k], v) for k, v in model.params.items())
    assert ck.history == HISTORY and ck.corpus == CORPUS and ck.best == BEST

    r = ck.resume
    assert r.optimizer == optimizer and r.train_config == resume.train_config
    assert (r.step, r.elapsed, r.window, r.epoch) == (3, 12.5, 17, 2)
    assert all(same_array(r.params[k], v) for k, v in resume.params.items())
    assert r.optimizer_state.keys() == resume.optimizer_state.keys()
    assert all(same_array(r.optimizer_state[k], v) for k, v in resume.optimizer_state.items())
    assert same_array(r.hidden, resume.hidden)
    # the restored state drives a real optimizer and generator exactly as the saved ones
    opt = make_optimizer(optimizer, r.params)
    opt.load_state_dict(r.optimizer_state)
    assert opt.t == 3
    saved, restored = np.random.Generator(np.random.PCG64()), np.random.default_rng()
    saved.bit_generator.state, restored.bit_generator.state = resume.rng_state, r.rng_state
    assert np.array_equal(saved.random(20), restored.random(20))
    assert np.array_equal(saved.integers(0, 2**62, 5), restored.integers(0, 2**62, 5))


def test_rng_state_with_a_pending_half_word_survives(tmp_path):
    model = make_model()
    resume = make_resume(model)
    rng = np.random.default_rng(9)
    rng.integers(0, 10, dtype=np.uint32)  # leaves has_uint32 = 1 and a cached 32-bit word
    resume.rng_state = rng.bit_generator.state
    assert resume.rng_state["has_uint32"] == 1
    save(tmp_path / "m.npz", model, resume=resume)
    other = np.random.default_rng()
    other.bit_generator.state = load(tmp_path / "m.npz").resume.rng_state
    assert np.array_equal(rng.integers(0, 2**32, 9, dtype=np.uint32),
                          other.integers(0, 2**32, 9, dtype=np.uint32))


def test_save_takes_the_path_first(tmp_path):
    with pytest.raises(TypeError, match="not CharRNN"):
        save(make_model(), tmp_path / "m.npz")
    assert not os.listdir(tmp_path)


def test_simple_save_of_model_and_vocab(tmp_path):
    model = make_model("gru", chars="ab\n")
    charrnn.save(model, tmp_path / "m.npz")  # the package-level save takes the model first
    ck = load(str(tmp_path / "m.npz"))
    assert ck.resume is None and ck.history == [] and ck.corpus is None and ck.best is None
    assert ck.model.vocab == model.vocab
    assert all(same_array(ck.model.params[k], v) for k, v in model.params.items())
    assert set(members(tmp_path / "m.npz")) == {"meta.npy", "vocab.npy"} | {
        f"params/{k}.npy" for k in model.params}


def test_any_memory_layout_or_byte_order_is_stored_plainly(tmp_path):
    model = make_model()
    resume = make_resume(model)
    model.params["head.W"] = np.asfortranarray(model.params["head.W"])
    resume.params["layers.0.W_h"] = resume.params["layers.0.W_h"].astype(">f4")
    resume.hidden = resume.hidden[::-1].copy()[::-1]  # negative strides
    save(tmp_path / "m.npz", model, resume=resume)
    ck = load(tmp_path / "m.npz")
    assert np.array_equal(ck.model.params["head.W"], model.params["head.W"])
    assert np.array_equal(ck.resume.params["layers.0.W_h"], resume.params["layers.0.W_h"])
    assert np.array_equal(ck.resume.hidden, resume.hidden)
    assert ck.resume.params["layers.0.W_h"].dtype == np.float32
    assert ck.resume.optimizer_state["t"].shape == ()


def test_corpus_object_becomes_facts(tmp_path):
    from charrnn.data import read_corpus

    text = tmp_path / "in.txt"
    text.write_text("héllo\nworld\n", encoding="utf-8")
    corpus = read_corpus([text])
    model = CharRNN(ModelConfig(vocab_size=len(corpus.vocab), hidden_size=4, num_layers=1),
                    vocab=corpus.vocab)
    save(tmp_path / "m.npz", model, corpus=corpus)
    facts = load(tmp_path / "m.npz").corpus
    assert facts == {"name": "in.txt", "files": [str(text)], "size": 13,
                     "sha256": corpus.sha256, "chars": 12}


def test_load_without_resume_skips_resume_arrays(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    save_full(path)
    read = []
    real = ckpt.read_member
    monkeypatch.setattr(ckpt, "read_member", lambda zf, info, *a: read.append(info.filename)
                        or real(zf, info, *a))
    ck = load(path, resume=False)
    assert ck.resume is None and ck.best == BEST
    assert read and not any(n.startswith("resume/") for n in read)


def test_describe_reads_only_json_headers_and_vocab(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    model = save_full(path)
    read = []
    real = ckpt.read_member
    monkeypatch.setattr(ckpt, "read_member", lambda zf, info, *a: read.append(info.filename)
                        or real(zf, info, *a))
    d = describe(path)
    assert sorted(read) == ["meta.npy", "vocab.npy"]
    assert d["model_config"] == model.config.to_dict() and d["dtype"] == "float32"
    assert d["vocab"] == "".join(model.vocab.chars) and d["num_parameters"] == model.num_parameters
    assert d["history"] == HISTORY and d["corpus"] == CORPUS and d["best"] == BEST
    assert d["format_version"] == 6 and d["charrnn_version"] == "0.1.0"
    assert d["file_size"] == path.stat().st_size and d["path"] == str(path)
    assert d["arrays"]["params/head.W"] == {"shape": (8, model.config.vocab_size),
                                            "dtype": "float32"}
    assert d["arrays"]["resume/hidden"]["shape"] == (2, 2, 3, 8)
    assert d["arrays"]["resume/optim/t"] == {"shape": (), "dtype": "int64"}
    r = d["resume"]
    assert r["train_config"]["batch_size"] == 3 and r["optimizer"] == "adam" and r["step"] == 3
    json.dumps(d)  # plain data, ready for `inspect --json`


# ----------------------------------------------------------------------------- save refuses

@pytest.mark.parametrize("spoil,fragment", [
    (lambda m, r: m.params["head.b"].__setitem__(0, np.nan), "'params/head.b' contains NaN"),
    (lambda m, r: r.params["layers.0.W_h"].__setitem__((0, 0), np.inf), "contains NaN or inf"),
    (lambda m, r: setattr(m, "vocab", None), "no vocabulary"),
    (lambda m, r: setattr(r, "hidden", r.hidden[:, :, :2]), "'resume/hidden' has shape"),
    (lambda m, r: setattr(r, "hidden", r.hidden.astype(np.float64)), "has dtype float64"),
    (lambda m, r: r.optimizer_state.pop("t"), "resume/optim/t"),
    (lambda m, r: setattr(r, "optimizer", "lbfgs"), "optimizer must be one of"),
    (lambda m, r: setattr(r, "rng_state", {"bit_generator": "MT19937"}), "PCG64"),
    (lambda m, r: setattr(r, "step", -1), "resume step must be a non-negative integer"),
])
def test_save_refuses_what_load_would_reject_and_keeps_the_old_file(tmp_path, spoil, fragment):
    path = tmp_path / "m.npz"
    save_full(path)
    before = path.read_bytes()
    model = make_model(seed=5)
    resume = make_resume(model)
    spoil(model, resume)
    with pytest.raises(CheckpointError, match="^cannot save") as info:
        save(path, model, resume=resume)
    assert fragment in str(info.value)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]


@pytest.mark.parametrize("kw,fragment", [
    ({"history": [{"step": 1, "time": 0.0, "train_loss": float("nan"), "val_loss": None,
                   "lr": 1.0}]}, "train_loss must be a number"),
    ({"history": [{"step": 1}]}, "history row 0 has no 'time'"),
    ({"best": {"val_loss": 1.0}}, "best has no 'step'"),
    ({"corpus": {"name": "x", "size": 1}}, "corpus has no 'sha256'"),
    ({"corpus": {"name": "x", "size": 1, "sha256": "0", "extra": object()}},
     "Object of type object is not JSON serializable"),
])
def test_save_checks_the_json_parts(tmp_path, kw, fragment):
    with pytest.raises(CheckpointError, match="^cannot save") as info:
        save(tmp_path / "m.npz", make_model(), **kw)
    assert fragment in str(info.value)
    assert not os.listdir(tmp_path)


def test_numpy_scalars_in_the_json_parts_are_fine(tmp_path):
    row = {"step": np.int64(5), "time": np.float32(1.5), "train_loss": np.float64(2.0),
           "val_loss": None, "lr": np.float32(0.5)}
    save(tmp_path / "m.npz", make_model(), history=[row], best={"step": np.int32(5),
                                                                   "val_loss": np.float32(2.0)})
    ck = load(tmp_path / "m.npz")
    assert ck.history == [{"step": 5, "time": 1.5, "train_loss": 2.0, "val_loss": None,
                           "lr": 0.5}]
    assert ck.best == {"step": 5, "val_loss": 2.0}


# ----------------------------------------------------------------------------- hostile files

class Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("member", ["params/head.b.npy", "meta.npy", "vocab.npy",
                                   "resume/optim/t.npy"])
def test_a_pickle_never_runs(tmp_path, good, member):
    marker = tmp_path / "pwned"
    evil = npy(np.array([Payload(marker)], dtype=object), allow_pickle=True)
    # control: the payload is live, loading it with pickle allowed does run it
    np.lib.format.read_array(io.BytesIO(evil), allow_pickle=True)
    assert marker.exists()
    marker.unlink()
    write_members(tmp_path / "m.npz", {**good, member: evil})
    rejected(tmp_path / "m.npz", "object")
    assert not marker.exists()
    # the same payload as a pickle file renamed .npz is just not a zip archive
    (tmp_path / "p.npz").write_bytes(pickle.dumps(Payload(marker)))
    rejected(tmp_path / "p.npz", "not a zip")
    assert not marker.exists()


V = len(set(SPECIAL))


@pytest.mark.parametrize("descr,shape,data,fragments", [
    ("|O", (V,), b"", ["has dtype object, expected float32"]),
    ("<i4", (V,), bytes(4 * V), ["has dtype int32, expected float32"]),
    ("<i8", (V,), bytes(8 * V), ["dtype int64"]),
    ("<f8", (V,), bytes(8 * V), ["dtype float64, expected float32"]),
    ("<f2", (V,), bytes(2 * V), ["dtype float16"]),
    ("<c8", (V,), bytes(8 * V), ["dtype complex64"]),
    ("<U1", (V,), bytes(4 * V), ["dtype str32"]),
    ("|S4", (V,), bytes(4 * V), ["dtype bytes32"]),
    ("|b1", (V,), bytes(V), ["dtype bool"]),
    ([("a", "<f4")], (V,), bytes(4 * V), ["structured"]),
    (">f4", (V,), bytes(4 * V), ["dtype float32 big-endian, expected float32"]),
    ("<f4", (1, V), bytes(4 * V), [f"has shape (1, {V}), expected ({V},)"]),
    ("<f4", (V, 1), bytes(4 * V), [f"has shape ({V}, 1), expected ({V},)"]),
    ("<f4", (V + 1,), bytes(4 * V + 4), ["has shape"]),
    ("<f4", (), bytes(4), ["has shape ()"]),
    ("<f4", (2**40,), bytes(4 * V), [f"has shape ({2**40},)"]),
    ("<f4", (V,), bytes(4 * V + 4), ["declares 12 elements but holds 52 bytes"]),
    ("<f4", (V,), bytes(4 * V - 4), ["holds 44 bytes"]),
])
def test_bias_member_must_be_exactly_right(tmp_path, good, descr, shape, data, fragments):
    assert V == 12
    write_members(tmp_path / "m.npz", {**good, "params/head.b.npy": npy_raw(descr, shape, data)})
    msg = rejected(tmp_path / "m.npz", "'params/head.b'", *fragments)
    assert peak_mib(lambda: load(tmp_path / "m.npz")) < 8, msg


def test_fortran_order_weight_is_rejected(tmp_path, good):
    w = np.asfortranarray(np.ones((8, V), np.float32))
    write_members(tmp_path / "m.npz", {**good, "params/head.W.npy": npy(w)})
    rejected(tmp_path / "m.npz", "'params/head.W' is in Fortran order")


def test_transposed_weight_is_rejected(tmp_path, good):
    write_members(tmp_path / "m.npz", {**good, "params/head.W.npy": npy(np.ones((V, 8),
                                                                               np.float32))})
    rejected(tmp_path / "m.npz", f"'params/head.W' has shape ({V}, 8), expected (8, {V})")


@pytest.mark.parametrize("member,index", [("params/head.W.npy", (0, 0)),
                                          ("params/layers.1.b.npy", (5,)),
                                          ("resume/params/layers.0.W_x.npy", (3, 3)),
                                          ("resume/optim/v/head.b.npy", (1,)),
                                          ("resume/hidden.npy", (1, 1, 1, 1))])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(tmp_path, good, member, index, bad):
    arr = np.lib.format.read_array(io.BytesIO(good[member])).copy()
    arr[index] = bad
    write_members(tmp_path / "m.npz", {**good, member: npy(arr)})
    rejected(tmp_path / "m.npz", f"'{member[:-4]}' contains NaN or infinite values",
             describe_too=False)


def test_header_over_ten_thousand_characters(tmp_path, good):
    member = npy_raw("<f4", (V,), bytes(4 * V), pad=20_000)
    write_members(tmp_path / "m.npz", {**good, "params/head.b.npy": member})
    rejected(tmp_path / "m.npz", "'params/head.b' has a 20,", "-byte header (limit 10,000)")
    # a version-2 header claiming 4 GB is refused before anything is read
    huge = b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b"{"
    write_members(tmp_path / "m.npz", {**good, "params/head.b.npy": huge})
    msg = rejected(tmp_path / "m.npz", "4,294,967,295-byte header")
    assert peak_mib(lambda: load(tmp_path / "m.npz")) < 8, msg


@pytest.mark.parametrize("data,fragment", [
    (b"not an npy at all", "is not a .npy array"),
    (b"\x93NUMPY\x03\x00" + bytes(60), "is not a .npy array of version 1 or 2"),
    (b"\x93NUMPY\x01\x00\x10", "header is truncated"),
    (b"\x93NUMPY\x01\x00\x0a\x00{'descr':}", "unreadable npy header"),
    (npy_raw("<f4", (V,), bytes(4 * V)).replace(b"'shape'", b"'shapo'"), "unreadable npy"),
    (npy_raw("<f4", (V,), bytes(4 * V)).replace(b"'<f4'", b"'<x9'"), "unreadable npy header"),
    (b"", "not a .npy array"),
])
def test_malformed_npy_members(tmp_path, good, data, fragment):
    write_members(tmp_path / "m.npz", {**good, "params/layers.0.b.npy": data})
    rejected(tmp_path / "m.npz", "'params/layers.0.b'", fragment)


def test_zip_bomb_is_refused_without_inflating(tmp_path, good):
    """64 MiB of zeros deflated to about 64 KB, as a member the loader would read."""
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w", compresslevel=9) as zf:
        for name, data in good.items():
            if name != "params/head.W.npy":
                zf.writestr(name, data)
        info = zipfile.ZipInfo("params/head.W.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as f:  # streamed: never 64 MiB in memory
            f.write(npy_raw("<f4", (2**24,)))
            for _ in range(64):
                f.write(bytes(1 << 20))
    assert path.stat().st_size < 100_000
    msg = rejected(path, "'params/head.W.npy' declares 67,108,992 bytes from", "ratio too high")
    assert peak_mib(lambda: load(path)) < 8, msg


def _central_entry(raw: bytes, name: bytes) -> int:
    """Offset of a member's record in the zip's central directory."""
    at = raw.index(b"PK\x01\x02")
    while raw[at + 46:at + 46 + len(name)] != name:
        at = raw.index(b"PK\x01\x02", at + 1)
    return at


@pytest.mark.parametrize("field,value,fragment", [
    ("<I", (2**32 - 2,), "'params/head.W.npy' declares 4,294,967,294 bytes from 512 stored"),
    # stored sizes that agree but exceed the file itself (as overlapping members would)
    ("<II", (2**31, 2**31), "the archive declares 2,147,"),
])
def test_declared_sizes_that_lie_are_refused(tmp_path, good, field, value, fragment):
    path = tmp_path / "m.npz"
    write_members(path, good)
    raw = bytearray(path.read_bytes())
    at = _central_entry(raw, b"params/head.W.npy")
    offset = 24 if field == "<I" else 20  # uncompressed size; or compressed + uncompressed
    struct.pack_into(field, raw, at + offset, *value)
    path.write_bytes(bytes(raw))
    msg = rejected(path, fragment)
    assert peak_mib(lambda: load(path)) < 8, msg


def test_whole_archive_compression_ratio_is_bounded(tmp_path, monkeypatch):
    """Members each under the ratio limit, over 100x the file in all (limits scaled down)."""
    path = tmp_path / "m.npz"
    vocab = Vocab.from_text(SPECIAL)
    cfg = ModelConfig(cell="lstm", vocab_size=len(vocab), hidden_size=256)
    zeros = {k: np.zeros(s, np.float32) for k, s in cfg.parameter_shapes().items()}
    save(path, CharRNN(cfg, zeros, vocab=vocab))  # a valid model of zeros: deflates ~1000x
    write_members(path, members(path), zipfile.ZIP_DEFLATED)
    total = sum(i.file_size for i in zipfile.ZipFile(path).infolist())
    assert 100 < total / path.stat().st_size < 1000
    monkeypatch.setattr(npzfile, "FILE_FREE", 0)
    monkeypatch.setattr(npzfile, "RATIO_FREE", 0)
    rejected(path, "the archive declares 3,21", "-byte file")
    monkeypatch.setattr(npzfile, "FILE_RATIO", 1000)
    monkeypatch.setattr(npzfile, "MAX_RATIO", 100)
    rejected(path, "compression ratio too high")
    monkeypatch.undo()  # the real limits: these sizes are allowed
    assert load(path).best is None


def test_oversized_zip_directory_is_refused_before_parsing(tmp_path, good):
    path = tmp_path / "m.npz"
    write_members(path, good)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<I", raw, raw.rindex(b"PK\x05\x06") + 12, 100 << 20)  # directory size
    path.write_bytes(bytes(raw))
    rejected(path, "the archive directory is too large (36 entries, 104,857,600 bytes)")


def test_memory_measure_sees_numpy_buffers():
    """Control for the bounds above: tracemalloc does count numpy's array buffers."""
    assert peak_mib(lambda: np.ones(40 << 20, np.uint8)) > 39


@pytest.mark.parametrize("change,fragments", [
    (lambda d: d.pop("params/head.b.npy"), ["missing member 'params/head.b.npy'"]),
    (lambda d: d.pop("meta.npy"), ["no meta.npy"]),
    (lambda d: d.pop("resume/optim/t.npy"), ["missing member 'resume/optim/t.npy'"]),
    (lambda d: d.update({"evil.npy": npy(np.zeros(3))}), ["unexpected member 'evil.npy'"]),
    (lambda d: d.update({"params/": b""}), ["unexpected member 'params/'"]),
    (lambda d: d.update({"resume/optim/m/x.npy": npy(np.zeros(3))}), ["unexpected member"]),
    (lambda d: d.update({"readme.txt": b"hi"}), ["unexpected member 'readme.txt'"]),
    (lambda d: d.update({"vocab": d.pop("vocab.npy")}), ["missing member 'vocab.npy'",
                                                         "unexpected member 'vocab'",
                                                         "(2 members differ)"]),
])
def test_member_set_must_be_exact(tmp_path, good, change, fragments):
    items = dict(good)
    change(items)
    write_members(tmp_path / "m.npz", items)
    rejected(tmp_path / "m.npz", *fragments)


@pytest.mark.parametrize("member", ["params/head.b.npy", "meta.npy"])
def test_duplicate_members_are_rejected(tmp_path, good, member):
    items = [*good.items(), (member, npy(np.zeros(V, np.float32)))]
    write_members(tmp_path / "m.npz", items)
    rejected(tmp_path / "m.npz", f"member '{member}' appears more than once")


def test_unsupported_compression_and_deflate(tmp_path, good):
    write_members(tmp_path / "m.npz", good, zipfile.ZIP_BZIP2)
    rejected(tmp_path / "m.npz", "unsupported compression")
    write_members(tmp_path / "ok.npz", good, zipfile.ZIP_DEFLATED)  # np.savez_compressed style
    assert load(tmp_path / "ok.npz").best == BEST


def _meta_bytes(data: bytes) -> bytes:
    return npy(np.frombuffer(data, np.uint8))


@pytest.mark.parametrize("meta,fragments", [
    (b"{not json", ["not a valid model file (JSONDecodeError"]),
    (b"[1, 2]", ["not a charrnn model file"]),
    (b"\xff\xfe{}", ["UnicodeDecodeError"]),
    (b'{"format": "charrnn-model", "format_version": NaN}', ["metadata JSON contains NaN"]),
    (b"[" * 100_000, ["RecursionError"]),
])
def test_bad_json(tmp_path, good, meta, fragments):
    write_members(tmp_path / "m.npz", {**good, "meta.npy": _meta_bytes(meta)})
    rejected(tmp_path / "m.npz", *fragments)


def _set(path, value):
    def change(meta):
        *parents, last = path
        d = meta
        for p in parents:
            d = d[p]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value
    return change


@pytest.mark.parametrize("path,value,fragments", [
    (["model_config", "cell"], "transformer",
     ["model config: cell must be one of rnn, gru, lstm, not 'transformer'"]),
    (["model_config", "hidden_size"], -3, ["model config: hidden_size must be"]),
    (["model_config", "vocab_size"], 13, ["'vocab' has shape (12,), expected (13,)"]),
    (["model_config", "num_layers"], 1, ["unexpected member 'params/layers.1."]),
    (["model_config", "color"], "red", ["unknown ModelConfig field(s): color"]),
    (["model_config"], [], ["ModelConfig must be a JSON object"]),
    (["dtype"], "float16", ["dtype must be float32 or float64, not 'float16'"]),
    (["dtype"], "float64", ["has dtype float32, expected float64"]),
    (["format"], "something-else", ["not a charrnn model file"]),
    (["format_version"], "1", ["format_version must be a non-negative integer"]),
    (["charrnn_version"], 7, ["charrnn_version must be a short string"]),
    (["surprise"], 1, ["metadata keys differ from format 6: ['surprise']"]),
    (["validation"], {"chars": 5}, ["validation must be a JSON object of counts"]),
    (["validation"], {"chars": 5, "of": -1}, ["validation must be a JSON object of counts"]),
    (["validation"], {"chars": 5, "of": 9, "why": 1}, ["validation must be a JSON object"]),
    (["resume", "spent"], {"steps": -1.0}, ["resume spent must be a JSON object of seconds"]),
    (["resume", "spent"], {"lunch": 1.0}, ["resume spent must be a JSON object of seconds"]),
    (["resume", "spent"], KeyError, ["resume must be a JSON object with the keys"]),
    (["history"], KeyError, ["metadata keys differ"]),
    (["history"], {}, ["history must be a JSON list"]),
    (["history", 1, "val_loss"], "low", ["history row 1 val_loss must be a number or null"]),
    (["history", 0, "step"], 1.5, ["history row 0 step must be a non-negative integer"]),
    (["history", 0, "step"], True, ["step must be a non-negative integer, not True"]),
    (["history", 0, "notes"], {"a": 1}, ["history row 0 'notes' must be a plain value"]),
    (["history", 0, "time"], 10**400, ["history row 0 time must be a number, not 1000"]),
    (["model_config", "dropout"], 10**400, ["model config: dropout must be at least 0"]),
    (["best", "val_loss"], [1], ["best val_loss must be a number or null"]),
    (["corpus", "size"], -1, ["corpus size must be a non-negative integer"]),
    (["resume", "optimizer"], "lbfgs", ["resume optimizer must be one of"]),
    (["resume", "optimizer"], "sgd", ["unexpected member 'resume/optim/m/"]),
    (["resume", "train_config", "batch_size"], 4, ["'resume/hidden' has shape (2, 2, 3, 8), "
                                                   "expected (2, 2, 4, 8)"]),
    (["resume", "train_config", "lr"], 0, ["resume train config: lr must be"]),
    (["resume", "rng_state", "state", "state"], 2**130, ["not a PCG64 state"]),
    (["resume", "rng_state", "bit_generator"], "MT19937", ["not a PCG64 state"]),
    (["resume", "elapsed"], None, ["resume elapsed must be a number"]),
    (["resume", "window"], KeyError, ["resume must be a JSON object with the keys"]),
    (["resume"], None, ["unexpected member 'resume/"]),
])
def test_metadata_schema(tmp_path, good, path, value, fragments):
    write_members(tmp_path / "m.npz", with_meta(good, _set(path, value)))
    rejected(tmp_path / "m.npz", *fragments)


# ----------------------------------------------------------------------------- metadata limits

def history_rows(n: int) -> list[dict]:
    return [{"step": 200 * i, "time": 0.25 * i, "train_loss": 1.5, "val_loss": 1.25, "lr": 0.002}
            for i in range(n)]


def test_a_history_at_the_row_limit_loads_and_one_row_more_is_refused(tmp_path, good):
    path = tmp_path / "m.npz"
    rows = history_rows(model_meta.MAX_HISTORY_ROWS)
    write_members(path, with_meta(good, _set(["history"], rows)))
    assert len(load(path).history) == model_meta.MAX_HISTORY_ROWS == 50_000
    write_members(path, with_meta(good, _set(["history"], history_rows(50_001))))
    rejected(path, "history has 50,001 rows (limit 50,000)")
    with pytest.raises(CheckpointError, match=r"^cannot save .*: history has 50,001 rows "
                                              r"\(limit 50,000\)$"):
        save(tmp_path / "new.npz", make_model(), history=history_rows(50_001))
    assert not (tmp_path / "new.npz").exists()


def _padded(good, size: int, char: str = "a"):
    """The good file's members, its metadata padded to `size` bytes of JSON (as json writes
    it, ASCII unless char is not)."""
    meta = meta_of(good)
    meta["corpus"]["pad"] = ""
    text = json.dumps(meta, ensure_ascii=False)
    meta["corpus"]["pad"] = char + "a" * (size - len(text.encode()) - len(char.encode()))
    data = json.dumps(meta, ensure_ascii=False).encode()
    assert len(data) == size
    return {**good, "meta.npy": npy(np.frombuffer(data, np.uint8))}


def test_metadata_at_the_byte_limit_loads_and_one_byte_more_is_refused(tmp_path, good):
    path = tmp_path / "m.npz"
    write_members(path, _padded(good, model_meta.MAX_META))
    assert len(load(path).corpus["pad"]) > 12_000_000
    write_members(path, _padded(good, model_meta.MAX_META + 1))
    rejected(path, "member 'meta' has 12,582,913 bytes (limit 12,582,912)")


def test_text_beyond_u_ffff_counts_four_bytes_a_character(tmp_path, good):
    """Python holds a str at the width of its widest character: one emoji makes 4 MB of ASCII
    take 16 MB."""
    path = tmp_path / "m.npz"
    write_members(path, _padded(good, model_meta.MAX_META // 4 - 100, "\U0001F600"))
    assert load(path).corpus["pad"][0] == "\U0001F600"
    write_members(path, _padded(good, model_meta.MAX_META // 4 + 100, "\U0001F600"))
    msg = rejected(path, "member 'meta' takes ", " bytes as text (limit 12,582,912)")
    assert int(msg.split("takes ")[1].split(" ")[0].replace(",", "")) > model_meta.MAX_META
    with pytest.raises(CheckpointError, match=r"^cannot save .*: member 'meta' takes 12,58"):
        save(tmp_path / "new.npz", make_model(),
             corpus={**CORPUS, "pad": "a" * model_meta.MAX_META})


def test_json_values_are_counted_before_the_parse(tmp_path, good, monkeypatch):
    path = tmp_path / "m.npz"
    write_members(path, with_meta(good, _set(["corpus", "files"], [0] * 2000)))
    monkeypatch.setattr(model_meta, "MAX_META_VALUES", 10)
    msg = rejected(path, "member 'meta' has up to ", " JSON values (limit 10)")
    count = int(msg.split("up to ")[1].split(" ")[0].replace(",", ""))
    assert 2000 < count < 2200  # the list's values and the rest of the metadata's
    monkeypatch.setattr(model_meta, "MAX_META_VALUES", count)
    assert len(load(path).corpus["files"]) == 2000
    monkeypatch.setattr(model_meta, "MAX_META_VALUES", count - 1)
    rejected(path, f"member 'meta' has up to {count:,} JSON values (limit {count - 1:,})")


@pytest.mark.parametrize("text,counted", [
    ('{"a": [1, 2], "b": "x"}', 7),  # exactly: the object, a, the list, 1, 2, b, x
    ("[[], []]", 5),  # 3 values: an empty container counts one more
    ('["a,b:c"]', 4),  # 2 values: separators in strings count too
])
def test_the_value_count_is_an_upper_bound_from_the_separators(monkeypatch, text, counted):
    monkeypatch.setattr(model_meta, "MAX_META_VALUES", counted)
    model_meta.check_meta_text(text)
    monkeypatch.setattr(model_meta, "MAX_META_VALUES", counted - 1)
    with pytest.raises(npzfile.Invalid, match=rf"^member 'meta' has up to {counted} JSON values"):
        model_meta.check_meta_text(text)


def test_the_real_limits_hold_a_long_real_run():
    """50,000 rows of history (10 million steps at --eval-every 200), written as a run writes
    them, with the largest steps and the longest floats, fit with room to spare."""
    rows = [{"step": 10**12 + i, "time": 1234567.8901234567, "train_loss": 1.2345678901234567,
             "val_loss": 1.2345678901234567e-05, "lr": 0.0012345678901234567}
            for i in range(model_meta.MAX_HISTORY_ROWS)]
    text = json.dumps({"history": rows, "corpus": {"char_counts": [10**9] * 100_000}},
                      separators=(",", ":"))
    assert len(text) < 0.8 * model_meta.MAX_META
    model_meta.check_meta_text(text)  # values: 11 a row, one a character of the vocabulary


@pytest.mark.parametrize("key", ["name", "sha256"])
def test_the_corpus_name_and_digest_are_bounded(tmp_path, good, key):
    path = tmp_path / "m.npz"
    write_members(path, with_meta(good, _set(["corpus", key], "n" * model_meta.MAX_TEXT)))
    assert len(load(path).corpus[key]) == model_meta.MAX_TEXT == 65_536
    write_members(path, with_meta(good, _set(["corpus", key], "n" * 65_537)))
    rejected(path, f"corpus {key} has 65,537 characters (limit 65,536)")


def counted_values(text: str) -> int:
    """The JSON values the limit counts in a text (from the message of a limit of 0)."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(model_meta, "MAX_META_VALUES", 0)
        with pytest.raises(npzfile.Invalid, match="JSON values") as info:
            model_meta.check_meta_text(text)
    return int(str(info.value).split("up to ")[1].split(" ")[0].replace(",", ""))


def at_every_limit(good) -> dict[str, bytes]:
    """The good file with the costliest metadata the limits allow: every history row, with
    the longest floats; short distinct strings up to the value limit; padding up to the byte
    limit."""
    meta = meta_of(good)
    meta["history"] = [{"step": 10**12 + i, "time": 1234567.8901234567 + i,
                        "train_loss": 1.2345678901234567, "val_loss": 1.2345678901234567e-05,
                        "lr": 0.0012345678901234567} for i in range(model_meta.MAX_HISTORY_ROWS)]
    meta["corpus"].update(files=["0"], pad="")
    strings = model_meta.MAX_META_VALUES - counted_values(json.dumps(meta)) + 1
    meta["corpus"]["files"] = [f"{i:x}" for i in range(strings)]
    text = json.dumps(meta)
    text = text.replace('"pad": ""', '"pad": "' + "p" * (model_meta.MAX_META - len(text)) + '"')
    assert len(text) == model_meta.MAX_META and counted_values(text) == model_meta.MAX_META_VALUES
    return {**good, "meta.npy": npy(np.frombuffer(text.encode(), np.uint8))}


def peak_rss_mib(*args) -> float:
    """Peak resident memory of a `charrnn` command, run in a process of its own, in MiB (the
    process's own high-water mark: getrusage would count the forking parent's too)."""
    script = textwrap.dedent("""
        import re, sys
        from charrnn.cli import main
        try:
            main(sys.argv[1:])
        except SystemExit as e:
            assert not e.code, e.code
        with open("/proc/self/status") as f:
            print(re.search(r"VmHWM:\\s*(\\d+) kB", f.read()).group(1))
    """)
    r = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True,
                       text=True, check=True)
    return int(r.stdout.strip().splitlines()[-1]) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_no_metadata_makes_inspect_use_150_mb_more(tmp_path, good):
    """inspect --json holds the file's metadata, the report and the JSON text at once: the
    costliest of the commands."""
    write_members(tmp_path / "plain.npz", good)
    write_members(tmp_path / "full.npz", at_every_limit(good))  # which loads: inspect exits 0
    base = peak_rss_mib("inspect", "--json", tmp_path / "plain.npz")
    full = peak_rss_mib("inspect", "--json", tmp_path / "full.npz")
    assert full - base < 150, (base, full)


def test_inspect_of_a_file_over_a_limit_is_one_line_and_exit_1(tmp_path, good):
    from click.testing import CliRunner

    from charrnn.cli import main

    path = tmp_path / "m.npz"
    write_members(path, with_meta(good, _set(["history"], history_rows(50_001))))
    for command in (["inspect"], ["inspect", "--json"], ["sample", "-m"], ["eval"]):
        r = CliRunner().invoke(main, [*command, str(path), *(["-"] if command == ["eval"] else [])],
                               input="some text")
        assert r.exit_code == 1, (command, r.output)
        assert r.stderr == f"Error: {path}: history has 50,001 rows (limit 50,000)\n", command


def test_huge_configuration_is_refused_before_reading_arrays(tmp_path, good):
    change = _set(["model_config"], {"cell": "lstm", "vocab_size": 1_000_000,
                                     "hidden_size": 16384, "num_layers": 64, "dropout": 0.0})
    write_members(tmp_path / "m.npz", with_meta(good, change))
    rejected(tmp_path / "m.npz", "the configuration implies", "bytes of arrays (limit")


def test_newer_format_says_which_version_wrote_it(tmp_path, good):
    def future(meta):
        meta.update(format_version=7, charrnn_version="0.9", new_field={"x": 1})

    items = with_meta(good, future)
    items["tensors/blob.bin"] = b"formats to come may hold anything"
    write_members(tmp_path / "model.npz", items)
    rejected(tmp_path / "model.npz", "written by charrnn 0.9 (format 7); this charrnn 0.1.0 "
             "reads format 6 — upgrade charrnn")


def test_a_format_1_file_loads_without_the_keys_format_2_added(tmp_path, good):
    def older(meta):
        meta["format_version"] = 1
        del meta["validation"]
        del meta["resume"]["spent"]
        del meta["origin"]
        del meta["chosen"]
        del meta["references"]

    write_members(tmp_path / "m.npz", with_meta(good, older))
    ck = load(tmp_path / "m.npz")
    assert ck.format_version == 1 and ck.validation is None and ck.resume.spent == {}
    assert ck.origin is None and ck.references is None

    def mixed(meta):
        meta["format_version"] = 1  # but with a key of format 2

    write_members(tmp_path / "m.npz", with_meta(good, mixed))
    rejected(tmp_path / "m.npz", "metadata keys differ from format 1: "
             "['chosen', 'origin', 'references', 'validation']")


def test_a_format_2_file_loads_without_the_record_of_chosen_options(tmp_path, good):
    def older(meta):
        meta["format_version"] = 2
        del meta["chosen"]
        del meta["references"]

    write_members(tmp_path / "m.npz", with_meta(good, older))
    ck = load(tmp_path / "m.npz")
    assert ck.format_version == 2 and ck.chosen is None


REFERENCES = {"unigram": 3.125, "ngram": 2.0625, "order": 5, "uniform": 4.125,
              "fit_chars": 86085, "predictions": 9564}


def test_the_references_round_trip_and_a_format_3_file_loads_without_them(tmp_path, good):
    save_full(tmp_path / "m.npz", references=REFERENCES)
    assert load(tmp_path / "m.npz").references == REFERENCES
    assert describe(tmp_path / "m.npz")["references"] == REFERENCES
    assert load(tmp_path / "m.npz", resume=False).references == REFERENCES
    assert load(tmp_path / "good.npz").references is None  # a run without validation

    def older(meta):
        meta["format_version"] = 3
        del meta["references"]

    write_members(tmp_path / "old.npz", with_meta(good, older))
    ck = load(tmp_path / "old.npz")
    assert ck.format_version == 3 and ck.references is None and ck.chosen is None
    write_members(tmp_path / "old.npz", with_meta(good, lambda meta: meta.update(
        format_version=3, references=REFERENCES)))
    rejected(tmp_path / "old.npz", "metadata keys differ from format 3: ['references']")


def test_the_measured_speed_round_trips_and_a_format_4_file_has_none(tmp_path, good):
    chosen = {"options": {"dropout": 0.1}, "reason": "2 minutes (9 passes at 7k, measured)",
              "measured": {"chars_per_s": {"GRU 2x256": 12000, "GRU 3x256": 7000},
                           "seconds": 1.4}}
    save_full(tmp_path / "m.npz", chosen=chosen)
    assert load(tmp_path / "m.npz").chosen == chosen
    plain = {"options": {"dropout": 0.1}, "reason": "2 minutes"}
    write_members(tmp_path / "old.npz", with_meta(good, lambda meta: meta.update(
        format_version=4, chosen=plain)))
    assert load(tmp_path / "old.npz").chosen == plain
    write_members(tmp_path / "old.npz", with_meta(good, lambda meta: meta.update(
        format_version=4, chosen=chosen)))
    rejected(tmp_path / "old.npz", "chosen must be a JSON object of options, a reason")


def test_the_weight_decay_round_trips_and_a_format_5_run_resumes_without_it(tmp_path, good):
    assert load(tmp_path / "good.npz").resume.train_config.weight_decay == \
        TrainConfig().weight_decay

    def older(meta):
        meta["format_version"] = 5
        del meta["resume"]["train_config"]["weight_decay"]

    write_members(tmp_path / "old.npz", with_meta(good, older))
    assert load(tmp_path / "old.npz").resume.train_config.weight_decay == 0.0  # as it trained


@pytest.mark.parametrize("change, message", [
    ({"ngram": -1.0}, "references ngram must be a non-negative number, not -1.0"),
    ({"unigram": "low"}, "references unigram must be a non-negative number, not 'low'"),
    ({"unigram": None}, "references unigram must be a non-negative number, not None"),
    ({"order": 0}, "references order must be an integer from 1 to 64, not 0"),
    ({"order": 5.0}, "references order must be an integer from 1 to 64, not 5.0"),
    ({"fit_chars": -2}, "references fit_chars must be a non-negative integer"),
    ({"note": {"a": 1}}, "references 'note' must be a plain value"),
    ("predictions", "references has no 'predictions'"),
])
def test_the_references_are_checked_on_load_and_on_save(tmp_path, good, change, message):
    references = ({k: v for k, v in REFERENCES.items() if k != change}
                  if isinstance(change, str) else {**REFERENCES, **change})
    write_members(tmp_path / "m.npz", with_meta(good, _set(["references"], references)))
    rejected(tmp_path / "m.npz", message)
    with pytest.raises(CheckpointError, match="references"):
        save_full(tmp_path / "n.npz", references=references)
    assert not (tmp_path / "n.npz").exists()
    write_members(tmp_path / "m.npz", with_meta(good, _set(["references"], [3.1, 2.0])))
    rejected(tmp_path / "m.npz", "references must be a JSON object, not [3.1, 2.0]")


@pytest.mark.parametrize("chosen, message", [
    ({"options": {"dropout": 0.3}}, "chosen must be a JSON object of options, a reason"),
    ({"options": {"dropout": [0.3]}, "reason": "x"}, "chosen must be a JSON object"),
    ({"options": {"dropout": True}, "reason": "x"}, "chosen must be a JSON object"),
    ({"options": [], "reason": "x"}, "chosen must be a JSON object"),
    ({"options": {}, "reason": 3}, "chosen must be a JSON object"),
])
def test_the_record_of_chosen_options_must_be_options_and_a_reason(tmp_path, good, chosen,
                                                                   message):
    write_members(tmp_path / "m.npz", with_meta(good, _set(["chosen"], chosen)))
    rejected(tmp_path / "m.npz", message)


def test_vocabulary_must_be_valid(tmp_path, good):
    cps = np.frombuffer(good["vocab.npy"][-4 * V:], "<i4").copy()
    cps[1], cps[2] = cps[2], cps[1]
    write_members(tmp_path / "m.npz", {**good, "vocab.npy": npy(cps)})
    rejected(tmp_path / "m.npz", "vocabulary characters must be sorted and distinct")
    cps[1] = 0xD800
    write_members(tmp_path / "m.npz", {**good, "vocab.npy": npy(np.sort(cps))})
    rejected(tmp_path / "m.npz", "is not a Unicode scalar value")


def test_negative_optimizer_moment_is_found_by_the_optimizer(tmp_path, good):
    """Load hands over the arrays; the optimizer's own load checks its invariants."""
    v = np.lib.format.read_array(io.BytesIO(good["resume/optim/v/head.b.npy"])).copy()
    v[0] = -1
    write_members(tmp_path / "m.npz", {**good, "resume/optim/v/head.b.npy": npy(v)})
    r = load(tmp_path / "m.npz").resume
    with pytest.raises(CheckpointError, match="must not be negative"):
        make_optimizer("adam", r.params).load_state_dict(r.optimizer_state)


def test_broken_files(tmp_path, good):
    path = tmp_path / "m.npz"
    write_members(path, good)
    data = path.read_bytes()
    for cut in (1, 10, 100, len(data) // 3, len(data) // 2, len(data) - 30, len(data) - 1):
        path.write_bytes(data[:cut])
        rejected(path, "truncated or damaged" if cut >= 4 else "not a zip")
    path.write_bytes(random.Random(1).randbytes(5000))
    rejected(path, "not a zip/.npz archive")
    path.write_bytes(b"")
    rejected(path, "the file is empty")
    path.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: no members at all
    rejected(path, "no meta.npy")
    np.savez(path, a=np.zeros(3))  # someone else's npz
    rejected(path, "no meta.npy")
    rejected(tmp_path, "is a directory")
    # a flipped byte in the weights is caught by the CRC
    flipped = bytearray(data)
    flipped[data.index(b"params/head.W.npy") + 200] ^= 0xFF
    path.write_bytes(bytes(flipped))
    rejected(path, "corrupt")


def test_special_files_are_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo.npz")  # opening it for reading would wait for a writer
    rejected(tmp_path / "fifo.npz", "is not a regular file")
    rejected(Path("/dev/zero"), "is not a regular file")


def test_missing_file_is_its_own_error(tmp_path):
    with pytest.raises(ModelNotFound, match="nothing.npz: no such model file"):
        load(tmp_path / "nothing.npz")
    with pytest.raises(ModelNotFound):
        describe(tmp_path / "nothing.npz")
    assert issubclass(ModelNotFound, CheckpointError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_file(tmp_path, good):
    path = tmp_path / "m.npz"
    write_members(path, good)
    path.chmod(0)
    rejected(path, "cannot read the file: Permission denied")


# ----------------------------------------------------------------------------- fuzzing

@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "base.npz"
    save_full(path, make_model("gru", hidden=3, layers=2, chars="ab\x00é"))
    return Base((path.read_bytes(), members(path), path.with_name("case.npz")))


class Base(tuple):
    """The fuzzed file's bytes, members and scratch path, with a short repr for hypothesis."""

    def __repr__(self):
        return "fuzz_base"


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
                    | st.text(max_size=5), lambda c: st.lists(c, max_size=3)
                    | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6)
FLIPS = st.lists(st.tuples(st.integers(0, 2**20), st.integers(1, 255)), min_size=1, max_size=8)
NAME = st.integers(0, 999) | st.text(min_size=1, max_size=8)  # an existing member's, or new
PLANS = st.one_of(
    st.tuples(st.just("flip"), FLIPS),  # raw bytes anywhere (CRC, directory, headers)
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    # members edited (mostly their npy header) and re-zipped with valid CRCs
    st.tuples(st.just("member"), st.integers(0, 999), FLIPS, st.floats(0, 1)),
    st.tuples(st.just("json"), st.lists(st.integers(0, 99), max_size=3),  # a key, mostly an
              st.integers(0, 99) | st.integers(0, 99) | st.text(max_size=3),  # existing one,
              JSON),  # of the metadata set to any JSON value
    st.tuples(st.just("rename"), st.integers(0, 999), NAME),
    st.tuples(st.just("swap"), st.integers(0, 999), st.integers(0, 999)),
    st.tuples(st.just("drop"), st.integers(0, 999)),
    st.tuples(st.just("dup"), st.integers(0, 999)),
    st.tuples(st.just("deflate")),
)


def mutate(data: bytes, items: dict[str, bytes], plan) -> bytes:
    """Apply a drawn plan to a valid file (data) or to its members (items)."""
    kind, *args = plan
    names = sorted(items)
    items = dict(items)
    if kind == "flip":
        raw = bytearray(data)
        for pos, x in args[0]:
            raw[pos % len(raw)] ^= x
        return bytes(raw)
    if kind == "truncate":
        return data[:int(args[0] * len(data))]
    if kind == "member":
        name = names[args[0] % len(names)]
        raw = bytearray(items[name])
        for pos, x in args[1]:
            raw[pos % min(len(raw), 140)] ^= x
        items[name] = bytes(raw[:round(args[2] * len(raw))])
    elif kind == "json":
        meta = meta_of(items)
        node = meta
        for i in args[0]:
            keys = sorted(node)
            if not keys or not isinstance(node[keys[i % len(keys)]], dict):
                break
            node = node[keys[i % len(keys)]]
        key = args[1] if isinstance(args[1], str) else (sorted(node) or ["x"])[args[1] % max(
            1, len(node))]
        node[key] = args[2]
        items = with_meta(items, lambda m: m.update(meta))
    elif kind == "rename":
        new = args[1] if isinstance(args[1], str) else names[args[1] % len(names)]
        items[new] = items.pop(names[args[0] % len(names)])
    elif kind == "swap":
        a, b = names[args[0] % len(names)], names[args[1] % len(names)]
        items[a], items[b] = items[b], items[a]
    elif kind == "drop":
        del items[names[args[0] % len(names)]]
    pairs = list(items.items())
    if kind == "dup":
        pairs.append(pairs[args[0] % len(pairs)])
    buf = io.BytesIO()
    write_members(buf, pairs, zipfile.ZIP_DEFLATED if kind == "deflate" else zipfile.ZIP_STORED)
    return buf.getvalue()


@settings(max_examples=1000, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(plan=PLANS)
def test_fuzz_only_checkpoint_or_checkpoint_error(fuzz_base, plan):
    data, items, path = fuzz_base
    path.write_bytes(mutate(data, items, plan))
    for read in (load, describe):
        start = time.perf_counter()
        try:
            out = read(path)
        except CheckpointError as e:
            assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
        else:
            assert isinstance(out, Checkpoint if read is load else dict)
        assert time.perf_counter() - start < 5


# ----------------------------------------------------------------------------- atomic writes

def _run(script: str, *args, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)


SAVER = """
    import sys
    import numpy as np
    from charrnn.checkpoint import save
    from charrnn.config import ModelConfig
    from charrnn.data import Vocab
    from charrnn.model import CharRNN

    path = sys.argv[1]
    vocab = Vocab.from_text("".join(map(chr, range(32, 97))))
    cfg = ModelConfig(cell="lstm", vocab_size=len(vocab), hidden_size=320, num_layers=2)
    def version(k):  # every weight equals k: a torn file cannot pass as either version
        return CharRNN(cfg, {n: np.full(s, k, np.float32) for n, s in
                             cfg.parameter_shapes().items()}, vocab=vocab)
    models = [version(1.0), version(2.0)]
    for i in range(10**9):
        save(path, models[i % 2], best={"step": i % 2 + 1, "val_loss": 1.0})
        if i == 1:
            print("ready", flush=True)
"""


def test_sigkill_at_any_moment_leaves_a_complete_file(tmp_path):
    """Kill a process that saves in a loop, until three kills have landed mid-write."""
    path = tmp_path / "model.npz"
    rnd = random.Random(7)
    rounds = mid_write = 0
    while mid_write < 3:
        rounds += 1
        assert rounds <= 20, "the kills never landed while a temporary file was open"
        proc = _run(SAVER, path)
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
        time.sleep(rnd.uniform(0.0, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        ck = load(path)
        k = ck.best["step"]
        assert k in (1, 2)
        assert all((p == float(k)).all() for p in ck.model.params.values())
        mid_write += any(".tmp-" in n for n in os.listdir(tmp_path))
    assert path.stat().st_size > 4_000_000  # a few MB: a save takes real time
    save(path, make_model())  # the next save sweeps the temporary files of the killed ones
    assert os.listdir(tmp_path) == ["model.npz"]


DISK_FULL = """
    import resource, signal, sys
    import numpy as np
    from charrnn.checkpoint import save
    from charrnn.config import ModelConfig
    from charrnn.data import Vocab
    from charrnn.errors import CheckpointError
    from charrnn.model import CharRNN

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so that write() fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # files up to 1 MiB
    vocab = Vocab.from_text("abc")
    cfg = ModelConfig(cell="lstm", vocab_size=3, hidden_size=256, num_layers=2)  # 3 MB
    params = {k: np.ones(s, np.float32) for k, s in cfg.parameter_shapes().items()}
    model = CharRNN(cfg, params, vocab=vocab)
    try:
        save(sys.argv[1], model)
    except CheckpointError as e:
        print(e)
        sys.exit(3)
"""


def test_disk_full_keeps_the_previous_file(tmp_path):
    path = tmp_path / "model.npz"
    save_full(path)
    before = path.read_bytes()
    proc = _run(DISK_FULL, path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert out.strip() == f"cannot write {path}: File too large"
    assert path.read_bytes() == before and load(path).best == BEST
    assert os.listdir(tmp_path) == ["model.npz"]


def test_interrupt_during_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    save_full(path)
    before = path.read_bytes()
    calls = []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*a, **kw)

    real = np.lib.format.write_array
    monkeypatch.setattr(np.lib.format, "write_array", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_full(path, make_model(seed=3))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.npz"]


def test_write_errors_are_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="cannot write .*no/m.npz: No such file"):
        save(tmp_path / "no" / "m.npz", make_model())
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(CheckpointError, match="d.npz: it is a directory"):
        save(tmp_path / "d.npz", make_model())
    assert os.listdir(tmp_path) == ["d.npz"]


def test_a_device_or_a_pipe_is_never_replaced(tmp_path):
    """Renamed over, /dev/null would become a plain file (as root, for everyone)."""
    os.mkfifo(tmp_path / "pipe.npz")
    (tmp_path / "null.npz").symlink_to("/dev/null")
    for name in ("pipe.npz", "null.npz"):
        with pytest.raises(CheckpointError, match="not a regular file"):
            save(tmp_path / name, make_model())
    assert stat.S_ISFIFO(os.stat(tmp_path / "pipe.npz").st_mode)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(os.listdir(tmp_path)) == ["null.npz", "pipe.npz"]


def test_stale_temporary_files_are_cleaned(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = {
        f".model.npz.tmp-{dead.pid}-0badc0de": False,  # crashed save of this target: removed
        f".model.npz.tmp-{os.getpid()}-12345678": True,  # a live process's save: kept
        f".other.npz.tmp-{dead.pid}-0badc0de": True,  # another target's: kept
        f".model.npz.tmp-{dead.pid}-notmine!": True,  # not our pattern: kept
        "model.npz.tmp-1-00000000": True,
    }
    for n in names:
        (tmp_path / n).write_bytes(b"partial")
    save(tmp_path / "model.npz", make_model())
    assert set(os.listdir(tmp_path)) == {n for n, kept in names.items() if kept} | {"model.npz"}


def test_save_replaces_and_the_temporary_file_is_in_the_same_folder(tmp_path, monkeypatch):
    seen = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: seen.append((Path(a), Path(b))) or real(a, b))
    save(tmp_path / "m.npz", make_model())
    save(tmp_path / "m.npz", make_model(seed=2))
    (tmp, target), _ = seen
    assert target == tmp_path / "m.npz" and tmp.parent == tmp_path
    assert tmp.name.startswith(f".m.npz.tmp-{os.getpid()}-")
    assert load(tmp_path / "m.npz").model.params["head.b"].shape == (V,)


def test_save_through_a_symlink_replaces_its_target_and_keeps_permissions(tmp_path):
    real = tmp_path / "runs" / "m.npz"
    real.parent.mkdir()
    save(real, make_model())
    real.chmod(0o600)
    link = tmp_path / "link.npz"
    link.symlink_to(real)
    save(link, make_model(seed=2))
    assert link.is_symlink() and link.resolve() == real
    assert (real.stat().st_mode & 0o777) == 0o600
    np.testing.assert_array_equal(load(real).model.params["head.W"],
                                  make_model(seed=2).params["head.W"])
    assert sorted(os.listdir(real.parent)) == ["m.npz"]


def test_the_validation_record_and_the_time_split_round_trip(tmp_path):
    from dataclasses import replace

    model = make_model()
    spent = {"steps": 9.5, "validation": 0.25, "saving": 0.125, "samples": 0.0, "other": 0.0625}
    record = {"chars": 131136, "of": 1_000_000, "pieces": 64, "piece_chars": 2049}
    save(tmp_path / "m.npz", model, resume=replace(make_resume(model), spent=spent),
         history=HISTORY, corpus=CORPUS, best=BEST, validation=record)
    ck = load(tmp_path / "m.npz")
    assert ck.validation == record and ck.resume.spent == spent


# ----------------------------------------------------------------------------- the description

def test_docs_model_file_describes_the_format_the_code_writes(tmp_path):
    """docs/model-file.md is the format's one description: its version, its members and the
    metadata's keys are what this charrnn writes and reads."""
    import re

    doc = (REPO / "docs" / "model-file.md").read_text()
    block = doc[doc.index("## meta.npy"):doc.index("## Versions")]
    assert f'"format_version": {ckpt.FORMAT_VERSION}' in block
    added = {k for top, _ in model_meta.ADDED.values() for k in top}
    schema, depth, documented = block.split("```")[1], 0, set()
    for m in re.finditer(r'[{}]|"(\w+)":', schema):  # the keys of the outermost object
        depth += {"{": 1, "}": -1}.get(m.group(), 0)
        if m.group(1) and depth == 1:
            documented.add(m.group(1))
    assert documented == model_meta.KEYS | added
    versions = doc[doc.index("## Versions"):]
    assert [int(v) for v in re.findall(r"Version (\d+) added", versions)] == \
        list(range(2, ckpt.FORMAT_VERSION + 1))
    # the members of a trained model's file, named as the table names them
    path = tmp_path / "m.npz"
    model = save_full(path)
    params, slots = set(model.params), {"m", "v"}
    kinds = set()
    for name in members(path):
        parts = name.removesuffix(".npy").split("/")
        parts = ["<p>" if p in params else "<slot>" if p in slots else p for p in parts]
        kinds.add("/".join(parts) + ".npy")
    table = doc[doc.index("## Members"):doc.index("The letters")]
    assert set(re.findall(r"^\| `([^`]+)` \|", table, re.M)) == kinds
