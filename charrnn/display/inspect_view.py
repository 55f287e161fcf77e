"""``charrnn inspect``: the model file, its parameters, its training history as a loss chart,
the diagnostics and the vocabulary, as rich tables."""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..references import reference_note
from .base import (
    added_text,
    clock,
    figures_text,
    one_line,
    origin_text,
    rate_text,
    time_split_text,
    validation_text,
)


def _cell(value: Any, style: str = "") -> Text:
    """A table cell from file data: a Text (never parsed as markup), control characters escaped."""
    return Text(one_line(value), style=style)


def stat_text(x: float | None) -> str:
    """A weight statistic in a narrow column: 3 decimals, or 3 significant digits if large."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.3g}"


def size_text(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n:,} bytes)"
    return f"{n:,} bytes"


def _kv(title: str, rows) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else _cell(value))
    return table


def file_rows(rep: dict) -> list[tuple[str, str]]:
    """(label, one-line text) of the file and the network (from diagnostics.model_report)."""
    f, m = rep["file"], rep["model"]
    return [
        ("file", f"{one_line(f['path'])}, {size_text(f['size'])}"),
        ("format", f"charrnn model format {f['format_version']}, written by charrnn "
                   f"{one_line(f['charrnn_version'])}, {f['dtype']} weights"),
        ("network", f"{m['cell'].upper()}: {m['num_layers']} layer(s) x {m['hidden_size']} units, "
                    f"vocabulary {m['vocab_size']}, dropout {m['dropout']:g}"),
        ("parameters", f"{m['parameters']:,}"),
    ]


def summary_tables(rep: dict) -> list:
    """The file, the network and every parameter tensor (from diagnostics.model_report)."""
    m = rep["model"]
    about = _kv("model file", file_rows(rep))
    params = Table(title="parameters", title_justify="left", box=box.SIMPLE_HEAD)
    for name, just in (("tensor", "left"), ("shape", "left"), ("count", "right"),
                       ("mean", "right"), ("std", "right"), ("min", "right"), ("max", "right"),
                       ("NaN/Inf", "right")):
        params.add_column(name, justify=just, no_wrap=True)
    for t in rep["tensors"]:
        bad = t["nan"] + t["inf"]
        params.add_row(t["name"], " x ".join(map(str, t["shape"])), f"{t['count']:,}",
                       *(stat_text(t[k]) for k in ("mean", "std", "min", "max")),
                       Text(f"{t['nan']} / {t['inf']}", style="bold red" if bad else "dim"))
    params.add_row("total", "", f"{m['parameters']:,}", "", "", "", "", "", style="bold")
    return [about, params]


def training_rows(rep: dict) -> list[tuple[str, str]]:
    """(label, one-line text) of the steps, time, speed, losses, options and corpus; what the
    file does not hold says so."""
    t, corpus = rep["training"], rep["corpus"]
    if t is None:
        rows = [("record", "none: the file was saved without a training run "
                           "(charrnn.save), so it holds weights and vocabulary only")]
    else:
        steps = "-" if t["steps"] is None else f"{t['steps']:,}"
        if t["epochs"] is not None:
            steps += f" (epoch {t['epochs']:.2f})"
        seen = "-" if t["chars_seen"] is None else f"{t['chars_seen']:,}"
        speed = "-" if not t["chars_per_s"] else rate_text(t["chars_per_s"])
        best = t["best"]
        took = time_split_text(t["seconds"], t["time_split"]) if t.get("time_split") else \
            clock(t["seconds"])
        rows = [("steps", steps), ("characters seen", seen),
                ("training time", f"{took}; {speed}"),
                ("training loss", f"{figures_text(None, t['final_train_loss'])}, "
                                  "mean over the last evaluation interval"),
                ("best validation", "-" if best is None or best["loss"] is None else
                 f"{figures_text(best)} at step {best['step']}")]
        if rep.get("references") is not None:
            rows.append(("in context", in_context(best, rep["references"])))
        if t.get("validation"):
            rows.append(("validation", f"scored on {validation_text(t['validation'])}"))
        o = t["options"]
        if o is not None:
            rows.append(("options", f"{o['optimizer']} lr {o['lr']:g}"
                         + (f" {o['lr_schedule']}" if o["lr_schedule"] != "constant" else "")
                         + (f" x{o['lr_decay']:g} every {o['lr_decay_every']}"
                            if o["lr_decay_every"] else "")
                         + f", batch {o['batch_size']} x seq-len {o['seq_len']}, clip "
                         f"{o['grad_clip']:g}, weight decay {o['weight_decay']:g}, val-frac "
                         f"{o['val_frac']:g}, seed {o['seed']}"))
    if rep.get("chosen") is not None:
        options = ", ".join(f"{k.replace('_', ' ')} {v:g}" if isinstance(v, int | float) else
                            f"the {one_line(v)} base" if k == "init_from" else
                            f"{k.replace('_', ' ')} {one_line(v)}"
                            for k, v in rep["chosen"]["options"].items())
        rows.append(("chosen by charrnn", f"{options}, for {one_line(rep['chosen']['reason'])}"))
    if rep.get("origin") is not None:
        added = rep["origin"].get("added") or ""
        rows.append(("fine-tuned from", origin_text(rep["origin"])))
        rows.append(("new characters", f"{len(added)}: {added_text(added)}" if added else
                     "none: the corpus's characters were all the base's"))
    if corpus is not None:
        chars = "" if corpus.get("chars") is None else f", {corpus['chars']:,} characters"
        rows.append(("corpus", f"{one_line(corpus.get('name'))}: "
                               f"{size_text(corpus.get('size'))}{chars}"))
        rows.append(("sha256", one_line(corpus.get("sha256"))))
        if corpus.get("sources"):  # a built-in model's provenance
            rows.append(("sources", "; ".join(one_line(str(s)) for s in corpus["sources"])))
            steps = corpus.get("steps")
            steps = f"{steps:,}" if isinstance(steps, int) else one_line(str(steps))
            rows.append(("made by", f"{one_line(str(corpus.get('trained_by')))}, "
                                    f"{steps} steps, seed {one_line(str(corpus.get('seed')))}"))
    return rows


def in_context(best: dict | None, references: dict) -> str:
    """The best validation loss beside the references' on the same text (references module):
    "val 1.61 nats/char; a 5-gram model of the training text: 2.05; character frequencies:
    3.21"."""
    loss = None if best is None else best.get("loss")
    return (("" if loss is None else f"val {loss:.2f} nats/char; ")
            + reference_note(references, "the training text"))


def training_table(rep: dict) -> Table:
    """The training record (``training_rows``) as a table."""
    return _kv("training", training_rows(rep))


SIGMA_NOTE = (
    "sigma_max: the largest singular value of the recurrent matrix W_h, the most a step can "
    "stretch the state. In a tanh RNN the gradient flowing back through time is multiplied by "
    "at most sigma_max per step: well below 1 it vanishes (long-range patterns are hard to "
    "learn), above 1 it can explode (--grad-clip guards that). GRU/LSTM gates rescale this; a "
    "gate block's value says how strongly that gate listens to the previous state.")
BIAS_NOTE = "Mean bias per gate block; 'resting' = mean sigmoid(b), how open a gate is when " \
    "input and state add nothing. "
GATE_NOTES = {
    "lstm": "LSTM blocks i f g o (input, forget, candidate, output): a forget gate near 1 keeps "
            "the cell's memory from step to step (it starts at sigmoid(1) = 0.73).",
    "gru": "GRU blocks r z n (reset, update, candidate): z near 1 keeps the old state, near 0 "
           "takes the new one; b_hn is the bias inside r * (h W_hn + b_hn)."}


def diagnostics_tables(rep: dict) -> list:
    """Recurrent spectra per layer and gate block; gate biases."""
    rec, gates = rep["diagnostics"]["recurrent"], rep["diagnostics"]["gate_biases"]
    names = list(rec[0]["gates"]) if rec and rec[0]["gates"] else []
    spectra = Table(title="recurrent weights: largest singular value (sigma_max)",
                    title_justify="left", box=box.SIMPLE_HEAD)
    spectra.add_column("layer", justify="right")
    spectra.add_column("W_h (all)", justify="right")
    for g in names:
        spectra.add_column(f"{g} block", justify="right")
    for row in rec:
        spectra.add_row(str(row["layer"]), f"{row['sigma_max']:.3f}",
                        *(f"{row['gates'][g]:.3f}" for g in names))
    out = [spectra, Text(SIGMA_NOTE, style="dim")]
    if gates:
        biases = Table(title="gate biases", title_justify="left", box=box.SIMPLE_HEAD)
        for name in ("layer", "gate", "mean bias", "std", "resting"):
            biases.add_column(name, justify="left" if name == "gate" else "right")
        gru = any(g["b_hn_mean"] is not None for g in gates)
        if gru:
            biases.add_column("b_hn mean", justify="right")
        for g in gates:
            extra = ([stat_text(g["b_hn_mean"]) if g["b_hn_mean"] is not None else ""]
                     if gru else [])
            biases.add_row(str(g["layer"]), g["gate"], f"{g['mean']:+.3f}", f"{g['std']:.3f}",
                           "-" if g["resting"] is None else f"{g['resting']:.2f}", *extra)
        out += [biases, Text(BIAS_NOTE + GATE_NOTES[rep["model"]["cell"]], style="dim")]
    return out


def vocab_table(rep: dict, width: int) -> Table:
    """Every character escaped (repr or U+XXXX) with its code point and corpus count."""
    vocab = rep["vocab"]
    counted = any(v["count"] is not None for v in vocab)
    per = 24 if counted else 16  # cells of one group of columns
    groups = max(1, min(6, (width - 4) // per))
    rows = -(-len(vocab) // groups)
    total = sum(v["count"] or 0 for v in vocab)
    table = Table(title=f"vocabulary: {len(vocab)} characters"
                  + (f", counts in the corpus it was trained on ({total:,} in all)" if counted
                     else ""),
                  title_justify="left", show_edge=False, pad_edge=False)
    for _ in range(min(groups, len(vocab))):
        table.add_column("char", no_wrap=True)
        table.add_column("U+", justify="right", style="dim", no_wrap=True)
        if counted:
            table.add_column("count", justify="right", no_wrap=True)
    for r in range(rows):
        cells: list = []
        for v in vocab[r::rows]:
            cells += [_cell(v["escaped"]), f"{v['codepoint']:04X}"]
            cells += ["-" if v["count"] is None else f"{v['count']:,}"] if counted else []
        table.add_row(*cells)
    return table


# ----------------------------------------------------------------------------- loss chart

_BRAILLE = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))  # [dot column][dot row]
CHART_SERIES = (("training loss", "cyan"), ("validation loss", "magenta"))


def _ticks(lo: float, hi: float) -> int:
    """Decimals that tell apart labels spread over [lo, hi]."""
    span = hi - lo
    return max(0, min(4, 2 - math.floor(math.log10(span)))) if span > 0 else 2


def _segments(points, to_dot):
    """Dot positions along straight lines joining the points (in x order)."""
    dots = [to_dot(x, y) for x, y in points]
    yield from dots[:1]
    for (x0, y0), (x1, y1) in zip(dots, dots[1:], strict=False):
        n = max(abs(x1 - x0), abs(y1 - y0), 1)
        for k in range(1, n + 1):
            yield round(x0 + (x1 - x0) * k / n), round(y0 + (y1 - y0) * k / n)


def chart_rows(series, width: int, height: int) -> list[list[tuple[str, int | None]]]:
    """A loss chart as rows of (text, series index or None) segments: y labels and axis,
    height rows of plot, the x axis, its labels, and a legend.

    series: [(name, [(step, loss), ...]), ...]. The first series is drawn as a braille line
    (2 x 4 dots per character cell), the second as '●' at its measured points joined by '·'
    where the first leaves room, so they are told apart without color. Non-finite losses
    (and None) are left out.
    """
    series = [(name, sorted((x, y) for x, y in pts if y is not None and math.isfinite(y)))
              for name, pts in series]
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts]
    height = max(2, height)
    if not ys:
        return [[("(no losses recorded)", None)]]
    lo, hi = min(ys), max(ys)
    if hi - lo < 1e-9:  # a flat line: room around it, but no axis below 0 for losses that are not
        lo, hi = (lo - 0.5 if lo < 0 or lo >= 0.5 else 0.0), hi + 0.5
    x0, x1 = min(xs), max(xs)
    d = _ticks(lo, hi)
    label_rows = {0, height - 1, *range(0, height - 2, max(2, (height - 1) // 4))}
    ylab = {r: f"{hi - (4 * r + 1.5) / (4 * height - 1) * (hi - lo):.{d}f}" for r in label_rows}
    gutter = max(len(s) for s in ylab.values()) + 1
    w = max(8, width - gutter - 1)
    grid: list[list[tuple[str, int | None]]] = [[(" ", None)] * w for _ in range(height)]
    bits = [[0] * w for _ in range(height)]

    def to_dot(x, y):
        fx = (x - x0) / (x1 - x0) if x1 > x0 else 0.0
        return round(fx * (2 * w - 1)), round((hi - y) / (hi - lo) * (4 * height - 1))

    for index, (_, pts) in enumerate(series[:2]):
        for dx, dy in _segments(pts, to_dot):
            r, c = dy // 4, dx // 2
            if index == 0:
                if grid[r][c][1] in (None, 0):
                    bits[r][c] |= _BRAILLE[dx % 2][dy % 4]
                    grid[r][c] = (chr(0x2800 + bits[r][c]), 0)
            elif grid[r][c][1] is None:  # the joining line yields to the other trace
                grid[r][c] = ("·", 1)
        if index == 1:  # the measured points on top of the line joining them
            for x, y in pts:
                dx, dy = to_dot(x, y)
                grid[dy // 4][dx // 2] = ("●", 1)
    rows = []
    for r in range(height):
        label = ylab.get(r, "").rjust(gutter - 1)
        rows.append([(f"{label} {'┤' if r in ylab else '│'}", None), *grid[r]])
    rows.append([(" " * gutter + "└" + "─" * w, None)])
    left, right, mid = f"{x0:,}", f"{x1:,}", "step"
    pad = max(1, w - len(left) - len(right) - len(mid))
    rows.append([(" " * (gutter + 1) + left + " " * (pad // 2) + mid + " " * (pad - pad // 2)
                  + right, None)])
    legend = [(" " * (gutter + 1), None)]
    for index, (name, pts) in enumerate(series[:2]):
        if pts:
            legend += [("⠤⠤" if index == 0 else "·●", index), (f" {name}   ", None)]
    rows.append(legend)
    return rows


def line_chart(series, width: int = 80, height: int = 12) -> list[str]:
    """The chart of ``chart_rows`` as plain lines of text (at most `width` cells each)."""
    return ["".join(text for text, _ in row).rstrip() for row in chart_rows(series, width,
                                                                              height)]


def history_chart(rep: dict, width: int, height: int = 12) -> Text | None:
    """Training and validation loss over the steps of the run, drawn in the terminal."""
    h = rep["history"]
    if not h:
        return None
    series = [(CHART_SERIES[0][0], [(r["step"], r["train_loss"]) for r in h]),
              (CHART_SERIES[1][0], [(r["step"], r["val_loss"]) for r in h])]
    out = Text("loss history (nats/char)\n", style="italic")
    for row in chart_rows(series, width, height):
        for text, index in row:
            out.append(text, style=CHART_SERIES[index][1] if index is not None else "")
        out.append("\n")
    out.rstrip()
    return out


def render_inspect(console: Console, rep: dict) -> None:
    """Every section of ``charrnn inspect`` (from diagnostics.model_report), in order."""
    width = min(console.width, 120)
    for item in summary_tables(rep):
        console.print(item)
    console.print(training_table(rep))
    chart = history_chart(rep, width)
    if chart is not None:
        console.print(chart)
    for item in diagnostics_tables(rep):
        console.print(item)
    console.print(vocab_table(rep, width))
