"""What is inside a model, as plain data: parameter statistics, training record, recurrent
spectra, gate biases, vocabulary, and a text seen through the model (surprise, hidden units).

NumPy only: ``charrnn inspect`` renders these dicts as tables (charrnn.display) or prints them as
JSON, so both views show the same numbers. Shapes: V vocab, H hidden, G gate blocks (RNN 1,
GRU 3, LSTM 4), L layers, T characters of text.

Figures, all in nats (natural log) unless named otherwise:

    loss        = mean over predictions of -log p(next character)     (nats/char)
    perplexity  = exp(loss)             the model is as unsure as a uniform pick among this many
    bits/char   = loss / ln 2           what an ideal compressor using the model would spend
    surprise_i  = -log p(x_i | x_0..x_{i-1})     per character; the first one has no context
    sigma_max   = largest singular value of a recurrent matrix W_h (or of one gate block)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .config import plain  # the commands print reports through it
from .data import escape_char, validation_chars
from .model import GATE_NAMES, SIGMOID_GATES, gate_slice  # the layout of charrnn.cells

__all__ = ["GATE_NAMES", "char_counts", "figures", "gate_biases", "model_report", "plain",
           "recurrent_spectra", "steps_per_epoch", "tensor_histograms", "tensor_stats",
           "text_report", "unknown_chars", "vocabulary"]

MAX_EXP = math.log(np.finfo(np.float64).max)  # exp of more overflows (709.78...)
TEXT_CHUNK = 1024  # characters per forward call when reading a text: bounds the cache's memory
LN2 = math.log(2)
HISTOGRAM_BINS = 40  # bars per parameter tensor in ``tensor_histograms``


def figures(loss: float | None) -> dict[str, float | None]:
    """loss (nats/char) -> {"loss", "perplexity", "bits_per_char"}; None stays None, and so
    does a perplexity too large for a float (JSON has no inf)."""
    if loss is None or not math.isfinite(loss):
        return {"loss": loss, "perplexity": None, "bits_per_char": None}
    return {"loss": loss, "perplexity": math.exp(loss) if loss < MAX_EXP else None,
            "bits_per_char": loss / LN2}


# ----------------------------------------------------------------------------- parameters

def tensor_stats(params: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per tensor: name, shape, count, and mean/std/min/max over its finite values (float64);
    nan and inf count the non-finite entries (a loaded model file has none)."""
    out = []
    for name, p in params.items():
        a = np.asarray(p, dtype=np.float64).reshape(-1)
        finite = np.isfinite(a)
        vals = a if finite.all() else a[finite]
        stats = ({"mean": float(vals.mean()), "std": float(vals.std()),
                  "min": float(vals.min()), "max": float(vals.max())} if vals.size else
                 dict.fromkeys(("mean", "std", "min", "max")))
        out.append({"name": name, "shape": list(p.shape), "count": int(p.size), **stats,
                    "nan": int(np.isnan(a).sum()), "inf": int(np.isinf(a).sum())})
    return out


def tensor_histograms(params: dict[str, np.ndarray], bins: int = HISTOGRAM_BINS
                      ) -> list[dict[str, Any]]:
    """Per tensor: name, and ``counts`` of its finite values in ``bins`` equal bins from
    ``lo`` (its min) to ``hi`` (its max); a constant tensor gets the bins of lo - 0.5 .. lo +
    0.5, and one without finite values no bins."""
    out = []
    for name, p in params.items():
        a = np.asarray(p, dtype=np.float64).reshape(-1)
        a = a[np.isfinite(a)]
        counts, edges = np.histogram(a, bins=bins) if a.size else (np.zeros(0, int), [0, 0])
        out.append({"name": name, "lo": float(edges[0]), "hi": float(edges[-1]),
                    "counts": [int(k) for k in counts]})
    return out


def _sigma_max(w: np.ndarray) -> float:
    """Largest singular value (the spectral norm), from the singular values alone."""
    return float(np.linalg.svd(np.asarray(w, np.float64), compute_uv=False)[0])


def recurrent_spectra(model) -> list[dict[str, Any]]:
    """Per layer, sigma_max of W_h (H, G*H) and of each H x H gate block.

    For a tanh RNN, ||dh_t / dh_{t-1}|| <= sigma_max(W_h): below 1 the gradient through time
    shrinks geometrically (vanishes), above 1 it can grow (explode; clipping guards it). Gates
    rescale this in a GRU/LSTM; a block's value says how strongly that gate reads the state.
    """
    cfg = model.config
    H, names = cfg.hidden_size, GATE_NAMES[cfg.cell]
    out = []
    for layer in range(cfg.num_layers):
        W = model.params[f"layers.{layer}.W_h"]
        blocks = {g: _sigma_max(W[:, gate_slice(cfg.cell, g, width=H)]) for g in names}
        out.append({"layer": layer, "sigma_max": _sigma_max(W) if len(names) > 1
                    else blocks[names[0]], "gates": blocks if len(names) > 1 else {}})
    return out


def gate_biases(model) -> list[dict[str, Any]]:
    """Per layer and gate block of b: mean and std of the bias; for sigmoid gates also
    ``resting`` = mean sigmoid(b), how open the gate is when input and state add nothing
    (LSTM forget gate: starts at sigmoid(1) = 0.73, remember by default). ``b_hn_mean``: for
    a GRU's n block, the mean of b_hn, the bias inside r * (h W_hn + b_hn) (else None).
    Empty for a plain RNN."""
    cfg = model.config
    if cfg.cell == "rnn":
        return []
    H = cfg.hidden_size
    out = []
    for layer in range(cfg.num_layers):
        b = np.asarray(model.params[f"layers.{layer}.b"], np.float64)
        for g in GATE_NAMES[cfg.cell]:
            block = b[gate_slice(cfg.cell, g, width=H)]
            row = {"layer": layer, "gate": g, "mean": float(block.mean()),
                   "std": float(block.std()), "resting": None, "b_hn_mean": None}
            if g in SIGMOID_GATES[cfg.cell]:
                with np.errstate(over="ignore"):  # exp(-b) = inf for b << 0: resting 0
                    row["resting"] = float((1 / (1 + np.exp(-block))).mean())
            if cfg.cell == "gru" and g == "n":
                row["b_hn_mean"] = float(np.mean(model.params[f"layers.{layer}.b_hn"]))
            out.append(row)
    return out


def vocabulary(vocab, counts=None) -> list[dict[str, Any]]:
    """Every character in id order: id, char, escaped (terminal-safe), codepoint, count
    (occurrences in the training corpus, or None when the file does not record them)."""
    counts = counts if counts is not None and len(counts) == len(vocab) else None
    return [{"id": i, "char": c, "escaped": escape_char(c), "codepoint": ord(c),
             "count": None if counts is None else int(counts[i])}
            for i, c in enumerate(vocab.chars)]


# ----------------------------------------------------------------------------- training record

def steps_per_epoch(chars: int, val_frac: float, batch_size: int, seq_len: int) -> int:
    """Training windows per pass over a corpus of `chars` characters, as training cuts it
    (data.split_train_val keeps the first n - validation_chars(n, val_frac); StreamBatches
    makes (n_train - 1) // B columns per stream, read T at a time)."""
    train = chars - validation_chars(chars, val_frac)
    return max(train - 1, 0) // batch_size // seq_len


def _training(ck) -> dict[str, Any] | None:
    rs, history, best = ck.resume, ck.history, ck.best
    if rs is None and not history and best is None:
        return None
    out: dict[str, Any] = dict.fromkeys(
        ("steps", "epochs", "chars_seen", "seconds", "chars_per_s", "final_train_loss",
         "options"))
    if history:
        out["steps"] = history[-1]["step"]
        out["seconds"] = history[-1]["time"]
        out["final_train_loss"] = history[-1]["train_loss"]
    if rs is not None:
        cfg = rs.train_config
        out["steps"], out["seconds"] = rs.step, rs.elapsed
        out["chars_seen"] = rs.step * cfg.batch_size * cfg.seq_len
        out["chars_per_s"] = out["chars_seen"] / rs.elapsed if rs.elapsed > 0 else None
        per = steps_per_epoch(ck.corpus["chars"], cfg.val_frac, cfg.batch_size, cfg.seq_len) \
            if ck.corpus and isinstance(ck.corpus.get("chars"), int) else 0
        out["epochs"] = rs.epoch + rs.window / per if per else float(rs.epoch)
        out["options"] = cfg.to_dict()
    val = None if best is None else best.get("val_loss")
    out["best"] = None if best is None else {"step": best.get("step"), **figures(val)}
    out["time_split"] = rs.spent or None if rs is not None else None  # seconds per phase
    out["validation"] = ck.validation  # what the validation losses scored
    return out


def model_report(ck, file_size: int | None = None) -> dict[str, Any]:
    """Everything ``charrnn inspect`` shows about a loaded model file (a checkpoint.Checkpoint)
    as JSON-ready data; sections the file does not hold are None or empty."""
    model, cfg = ck.model, ck.model.config
    corpus = None
    if ck.corpus is not None:
        corpus = {k: ck.corpus.get(k) for k in ("name", "size", "sha256", "chars")}
        # a built-in model's provenance: its sources, steps, seed and the script that made it
        corpus.update({k: ck.corpus[k] for k in PROVENANCE if k in ck.corpus})
    return {
        "file": {"path": None if ck.path is None else str(ck.path), "size": file_size,
                 "format_version": ck.format_version, "charrnn_version": ck.charrnn_version,
                 "dtype": model.dtype.name},
        "model": {"cell": cfg.cell, "num_layers": cfg.num_layers,
                  "hidden_size": cfg.hidden_size, "vocab_size": cfg.vocab_size,
                  "dropout": cfg.dropout, "parameters": int(model.num_parameters)},
        "tensors": tensor_stats(model.params),
        "training": _training(ck),
        "corpus": corpus,
        "origin": ck.origin,  # a fine-tuned model's base, or None
        "chosen": ck.chosen,  # the options charrnn chose for the run, and why, or None
        "history": [{k: row.get(k) for k in ("step", "time", "train_loss", "val_loss", "lr")}
                    for row in ck.history],
        "diagnostics": {"recurrent": recurrent_spectra(model), "gate_biases": gate_biases(model)},
        "vocab": vocabulary(model.vocab, (ck.corpus or {}).get("char_counts")),
    }


# ----------------------------------------------------------------------------- text

def _read(model, ids: np.ndarray, layer: int | None, top: int = 0):
    """One forward pass over ids (T,), chunk by chunk with the state carried: the surprise
    -log p(ids[i+1] | ids[..i]) of each next character (T - 1,); if layer is given, that
    layer's output at every position (T, H); if top > 0, after each character the ``top``
    likeliest next characters as [[id, p], ...], likeliest first (ties: lower id first)."""
    state = model.initial_state(1)
    surprise, hidden, likeliest = [], [], []
    for start in range(0, len(ids), TEXT_CHUNK):
        chunk = np.asarray(ids[start:start + TEXT_CHUNK])[None, :]
        lp, outputs, state = model.read(chunk, state)  # one pass gives all three
        if layer is not None:
            hidden.append(outputs[layer][0])
        targets = np.asarray(ids[start + 1:start + 1 + chunk.shape[1]])  # the last has none
        surprise.append(-lp[0, np.arange(len(targets)), targets])
        if top > 0:
            order = np.argsort(-lp[0], axis=-1, kind="stable")[:, :top]
            probs = np.exp(np.take_along_axis(lp[0], order, axis=-1))
            likeliest += [[[int(k), float(p)] for k, p in zip(row, ps, strict=True)]
                          for row, ps in zip(order, probs, strict=True)]
    return (np.concatenate(surprise) if surprise else np.zeros(0),
            np.concatenate(hidden) if hidden else None, likeliest)


def text_report(model, text: str, ids: np.ndarray, *, layer: int | None = None,
                neurons=(), top_neurons: int = 0, top: int = 0) -> dict[str, Any]:
    """A text seen through the model, per character (T = len(ids), text the matching chars).

    surprise[i] = -log p(x_i | x_0..x_{i-1}) in nats (None for i = 0, which has no context);
    ``loss`` is their mean. Neurons: the chosen units of ``layer`` (default the last), plus the
    ``top_neurons`` units whose activation varies most over the text; each with its activation
    at every character (tanh-bounded, -1 .. 1: the unit's value after reading that character).
    With top > 0, ``next[i]`` holds the ``top`` likeliest characters after x_0..x_i as
    [[id, p], ...], likeliest first.
    """
    L = model.config.num_layers
    layer = L - 1 if layer is None else layer
    want = bool(neurons) or top_neurons > 0
    surprise, hs, likeliest = _read(model, ids, layer if want else None, top)
    T = len(ids)
    loss = float(surprise.mean()) if len(surprise) else None
    out: dict[str, Any] = {"text": text, "characters": T, "predictions": len(surprise),
                           **figures(loss), "surprise": [None, *surprise.tolist()][:T],
                           "layer": layer, "neurons": []}
    if top > 0:
        out["next"] = likeliest
    if want:
        var = hs.var(axis=0, dtype=np.float64) if T else np.zeros(hs.shape[1])
        top = [int(k) for k in np.argsort(-var, kind="stable")[:top_neurons]]
        chosen = list(dict.fromkeys([*neurons, *top]))  # in order, without repeats
        out["neurons"] = [{"layer": layer, "unit": k, "variance": float(var[k]),
                           "activations": hs[:, k].astype(np.float64).tolist()} for k in chosen]
    return out


# ----------------------------------------------------------------------------- eval

PROVENANCE = ("sources", "steps", "seed", "trained_by")


def char_counts(corpus) -> dict[str, int]:
    """Occurrences of each character of a data.Corpus."""
    return {c: int(k) for c, k in zip(corpus.vocab.chars, corpus.char_counts, strict=True)}


def unknown_chars(vocab, counts: dict[str, int]) -> list[dict[str, Any]]:
    """The characters of a text (given as {char: occurrences}) that a vocabulary lacks:
    [{"char", "escaped", "codepoint", "count"}] in code point order."""
    missing = vocab.unknown("".join(sorted(counts)))
    return [{"char": c, "escaped": escape_char(c), "codepoint": ord(c), "count": counts[c]}
            for c in missing]
