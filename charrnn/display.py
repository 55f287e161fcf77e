"""Everything rich: the training view (live bar or plain log lines), tables and colored text.

All of it goes to stderr except what a command produces as its result. Text that comes from
a model file or a corpus is passed through ``safe()`` so it cannot carry terminal escapes or
rich markup to the screen.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from contextlib import contextmanager
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from .data import escape_char

LN2 = math.log(2)
PLAIN_EVERY = 10.0  # seconds between log lines when stderr is not a terminal


class _Console(Console):
    """A console whose reader may leave (`| head`): then it falls silent instead of exiting,
    so a training run goes on and still saves."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.file.fileno())


def make_console(stderr: bool = True, no_color: bool = False) -> Console:
    # NO_COLOR in the environment is honoured by rich itself
    return _Console(stderr=stderr, no_color=no_color or None, highlight=False)


def safe(text: str) -> str:
    """Text from a file made harmless for the terminal: control characters escaped.

    Newlines and tabs stay (samples are multi-line text); every other control or format
    character is shown as its escape, so no ESC sequence reaches the terminal.
    """
    out = []
    for ch in text:
        if ch in "\n\t" or (ch.isprintable() and ch != "\x7f"):
            out.append(ch)
        else:
            out.append(escape_char(ch).strip("'"))
    return "".join(out)


def ppl(loss: float | None) -> str:
    if loss is None or not math.isfinite(loss):
        return "-"
    return f"{math.exp(loss):.2f}" if loss < 20 else f"{math.exp(min(loss, 700)):.2e}"


def bpc(loss: float | None) -> str:
    return "-" if loss is None or not math.isfinite(loss) else f"{loss / LN2:.3f}"


def _loss(loss: float | None) -> str:
    return "-" if loss is None or not math.isfinite(loss) else f"{loss:.4f}"


def clock(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _rate(chars_per_s: float) -> str:
    return f"{chars_per_s / 1000:.1f}k chars/s" if chars_per_s >= 1000 else \
        f"{chars_per_s:.0f} chars/s"


def _eta(r, chars_per_step: int) -> float | None:
    """Seconds left: by steps (from the recent rate) or by the time limit, whichever is sooner."""
    left = []
    if r.total_steps and r.chars_per_s > 0 and chars_per_step:
        left.append((r.total_steps - r.step) * chars_per_step / r.chars_per_s)
    if r.time_limit:
        left.append(max(0.0, r.time_limit - r.elapsed))
    return min(left) if left else None


def _fraction(r) -> tuple[float, float]:
    """(completed, total) for the bar: steps, or seconds under --max-time, whichever is ahead."""
    options = []
    if r.total_steps:
        options.append((r.step, float(r.total_steps)))
    if r.time_limit:
        options.append((min(r.elapsed, r.time_limit), r.time_limit))
    if not options:
        return 0.0, 0.0
    return max(options, key=lambda o: o[0] / o[1])


def progress_part(r, chars_per_step: int = 0) -> str:
    """Where the run is: step, epoch, speed, time."""
    step = f"step {r.step}" + (f"/{r.total_steps}" if r.total_steps else "")
    return " | ".join([step, f"epoch {r.epoch:.2f}", _rate(r.chars_per_s),
                       f"{clock(r.elapsed)} elapsed, ETA {clock(_eta(r, chars_per_step))}"])


def metrics_part(r) -> str:
    """How the model does: smoothed training loss, latest and best validation."""
    parts = [f"loss {_loss(r.train_loss)} (ppl {ppl(r.train_loss)})"]
    if r.val_loss is not None or r.best_val is not None:
        parts.append(f"val {_loss(r.val_loss)} (ppl {ppl(r.val_loss)}, {bpc(r.val_loss)} bpc)")
        parts.append(f"best {_loss(r.best_val)} @{r.best_step}")
    return " | ".join(parts)


def status_line(r, chars_per_step: int = 0) -> str:
    """One line with every figure of the run (the plain log mode)."""
    return f"{progress_part(r, chars_per_step)} | {metrics_part(r)}"


class _BarWithMetrics(Progress):
    """The bar on one line, the losses on the line below it (so neither is cut off)."""

    metrics = ""

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        yield Text("  " + self.metrics, style="cyan")


class TrainingView:
    """Renders training reports: a live rich bar on a terminal, periodic log lines elsewhere."""

    def __init__(self, console: Console):
        self.console = console
        self.live = console.is_terminal
        self.progress: Progress | None = None
        self.task = None
        self.last_plain = 0.0
        self.chars_per_step = 0
        self.start_info: dict[str, Any] = {}

    def __enter__(self) -> TrainingView:
        if self.live:
            self.progress = _BarWithMetrics(
                TextColumn("[bold]{task.description}"), BarColumn(bar_width=30),
                TextColumn("{task.percentage:>5.1f}%"), TextColumn("{task.fields[stats]}"),
                console=self.console, transient=False, redirect_stdout=False,
                redirect_stderr=False, refresh_per_second=4)
            self.progress.__enter__()
            self.task = self.progress.add_task("train", total=None, stats="starting...")
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)
            self.progress = None

    def _log(self, r) -> None:
        self.console.print(status_line(r, self.chars_per_step), markup=False, soft_wrap=True)

    def print(self, *items) -> None:
        (self.progress.console if self.progress else self.console).print(*items)

    def update(self, r) -> None:
        if r.kind == "start":
            self.start_info = r.info
            self.chars_per_step = r.info["train"].batch_size * r.info["train"].seq_len
            self.console.print(start_summary(r), soft_wrap=True)
        elif r.kind == "notice":
            self.console.print(Text(f"note: {r.text}", style="yellow"), soft_wrap=True)
        elif r.kind == "sample":
            self.print(Text(f"--- sample at step {r.step} ---", style="dim"))
            self.print(Text(safe(r.text)))
            self.print(Text("---", style="dim"))
        elif r.kind == "eval" and not self.live:
            self._log(r)
            self.last_plain = time.monotonic()
        elif r.kind == "saved" and not self.live:
            pass
        if self.progress is not None and r.kind in ("step", "eval", "saved", "done"):
            done, total = _fraction(r)
            self.progress.update(self.task, completed=done, total=total or None,
                                 stats=escape(progress_part(r, self.chars_per_step)))
            self.progress.metrics = metrics_part(r)
        if not self.live and r.kind == "step":
            now = time.monotonic()
            if now - self.last_plain >= PLAIN_EVERY:
                self._log(r)
                self.last_plain = now


def start_summary(r) -> Text:
    m, t, info = r.info["model"], r.info["train"], r.info
    corpus = info["corpus"]
    lines = [
        f"corpus {safe(corpus['name'])}: {corpus['chars']:,} characters, "
        f"{m.vocab_size} distinct; {info['train_chars']:,} train / {info['val_chars']:,} "
        f"validation",
        f"model {m.cell.upper()} {m.num_layers}x{m.hidden_size}, dropout {m.dropout:g}, "
        f"{info['parameters']:,} parameters",
        f"training {t.optimizer} lr {t.lr:g}, batch {t.batch_size} x seq {t.seq_len}, "
        f"clip {t.grad_clip:g}, {info['steps_per_epoch']} steps/epoch, seed {t.seed}"
        + (f"; resuming at step {info['resumed_at']}" if info["resumed_at"] else ""),
    ]
    return Text("\n".join(lines))


def training_summary(r, command_hint: str) -> Table:
    """The table shown at the end of a run."""
    info = r.info
    table = Table(title="training summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    stopped = {"done": "finished", "time": "time limit reached",
               "interrupted": "interrupted (Ctrl-C)",
               "stalled": "stopped early: validation stopped improving"}[info["stopped"]]
    table.add_row("result", stopped)
    table.add_row("steps", f"{r.step:,} ({info['steps_this_run']:,} in this run), "
                  f"epoch {r.epoch:.2f}")
    table.add_row("time", f"{clock(info['seconds'])} ({clock(info['total_seconds'])} in all)")
    table.add_row("speed", _rate(info["chars_per_s"]))
    if r.best_val is not None:
        table.add_row("best validation", f"{r.best_val:.4f} nats/char at step {r.best_step} "
                      f"(perplexity {ppl(r.best_val)}, {bpc(r.best_val)} bits/char)")
    table.add_row("saved to", escape(safe(r.path)))
    table.add_row("next", escape(command_hint))
    return table


# ----------------------------------------------------------------------------- inspect

def one_line(text: str) -> str:
    """``safe`` for a table cell: newlines and tabs escaped too, so a value stays on its line."""
    return safe(str(text)).replace("\n", "\\n").replace("\t", "\\t")


def _cell(value: Any, style: str = "") -> Text:
    """A table cell from file data: a Text (never parsed as markup), control characters escaped."""
    return Text(one_line(value), style=style)


def _stat(x: float | None) -> str:
    """A weight statistic in a narrow column: 3 decimals, or 3 significant digits if large."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.3g}"


def _size(n: int | None) -> str:
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


def _figures_text(f: dict | None, nats: float | None = None) -> str:
    """'1.8234 nats/char (perplexity 6.19, 2.631 bits/char)' from diagnostics.figures()."""
    loss = nats if f is None else f.get("loss")
    if loss is None:
        return "-"
    return f"{loss:.4f} nats/char (perplexity {ppl(loss)}, {bpc(loss)} bits/char)"


def summary_tables(rep: dict) -> list:
    """The file, the network and every parameter tensor (from diagnostics.model_report)."""
    f, m = rep["file"], rep["model"]
    about = _kv("model file", [
        ("file", f"{one_line(f['path'])}, {_size(f['size'])}"),
        ("format", f"charrnn model format {f['format_version']}, written by charrnn "
                   f"{one_line(f['charrnn_version'])}, {f['dtype']} weights"),
        ("network", f"{m['cell'].upper()}: {m['num_layers']} layer(s) x {m['hidden_size']} units, "
                    f"vocabulary {m['vocab_size']}, dropout {m['dropout']:g}"),
        ("parameters", f"{m['parameters']:,}"),
    ])
    params = Table(title="parameters", title_justify="left", box=box.SIMPLE_HEAD)
    for name, just in (("tensor", "left"), ("shape", "left"), ("count", "right"),
                       ("mean", "right"), ("std", "right"), ("min", "right"), ("max", "right"),
                       ("NaN/Inf", "right")):
        params.add_column(name, justify=just, no_wrap=True)
    for t in rep["tensors"]:
        bad = t["nan"] + t["inf"]
        params.add_row(t["name"], " x ".join(map(str, t["shape"])), f"{t['count']:,}",
                       *(_stat(t[k]) for k in ("mean", "std", "min", "max")),
                       Text(f"{t['nan']} / {t['inf']}", style="bold red" if bad else "dim"))
    params.add_row("total", "", f"{m['parameters']:,}", "", "", "", "", "", style="bold")
    return [about, params]


def training_table(rep: dict) -> Table:
    """Steps, time, speed, losses, options and corpus; what the file does not hold says so."""
    t, corpus = rep["training"], rep["corpus"]
    if t is None:
        rows = [("record", "none: the file was saved without a training run "
                           "(charrnn.save), so it holds weights and vocabulary only")]
    else:
        steps = "-" if t["steps"] is None else f"{t['steps']:,}"
        if t["epochs"] is not None:
            steps += f" (epoch {t['epochs']:.2f})"
        seen = "-" if t["chars_seen"] is None else f"{t['chars_seen']:,}"
        speed = "-" if not t["chars_per_s"] else _rate(t["chars_per_s"])
        best = t["best"]
        rows = [("steps", steps), ("characters seen", seen),
                ("training time", f"{clock(t['seconds'])}, {speed}"),
                ("training loss", f"{_figures_text(None, t['final_train_loss'])}, "
                                  "mean over the last evaluation interval"),
                ("best validation", "-" if best is None or best["loss"] is None else
                 f"{_figures_text(best)} at step {best['step']}")]
        o = t["options"]
        if o is not None:
            rows.append(("options", f"{o['optimizer']} lr {o['lr']:g}"
                         + (f" {o['lr_schedule']}" if o.get("lr_schedule", "constant")
                            != "constant" else "")
                         + (f" x{o['lr_decay']:g} every {o['lr_decay_every']}"
                            if o.get("lr_decay_every") else "")
                         + f", batch {o['batch_size']} x seq-len {o['seq_len']}, clip "
                         f"{o['grad_clip']:g}, val-frac {o['val_frac']:g}, seed {o['seed']}"))
    if corpus is not None:
        chars = "" if corpus.get("chars") is None else f", {corpus['chars']:,} characters"
        rows.append(("corpus", f"{one_line(corpus.get('name'))}: {_size(corpus.get('size'))}"
                     f"{chars}"))
        rows.append(("sha256", one_line(corpus.get("sha256"))))
    return _kv("training", rows)


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
            extra = [_stat(g["b_hn_mean"]) if g["b_hn_mean"] is not None else ""] if gru else []
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
                  + (f", counts in the training corpus ({total:,} in all)" if counted else ""),
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
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
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


# ----------------------------------------------------------------------------- text views

# 256-color backgrounds, 10 levels each (xterm palette indices: exact in 256-color terminals)
SURPRISE_BG = (16, 53, 89, 125, 161, 197, 202, 208, 214, 220)  # inferno-like: calm -> hot
ACTIVATION_BG = (19, 26, 33, 75, 153, 224, 217, 210, 203, 160)  # blue -1 .. 0 .. +1 red
_DARK_SURPRISE, _DARK_ACTIVATION = range(6), (0, 1, 2, 8, 9)  # levels with white text
NEWLINE, TAB = "↵", "→"


def surprise_level(nats: float | None) -> int | None:
    """0-9: the surprise in whole bits (9: nine or more); None when there is no prediction."""
    return None if nats is None else min(9, int(nats / LN2))


def activation_level(a: float) -> int:
    """0-9 for an activation in -1 .. 1: 0 is -1, 4-5 about 0, 9 is +1."""
    return min(9, max(0, int((a + 1) / 2 * 10)))


def _glyph(ch: str) -> str:
    """One character as shown in a text view: at least one cell wide, never a control."""
    from rich.cells import cell_len

    if ch == "\n":
        return NEWLINE
    if ch == "\t":
        return TAB
    shown = one_line(ch)  # control and invisible characters as their escapes
    return shown if cell_len(shown) else f"U+{ord(ch):04X}"  # combining marks: zero width


def _layout(text: str, levels, width: int):
    """Rows of (glyph, level): a line break after each newline, and wrapped at `width` cells."""
    from rich.cells import cell_len

    rows, row, used = [], [], 0
    for ch, level in zip(text, levels, strict=True):
        glyph = _glyph(ch)
        n = cell_len(glyph)
        if row and used + n > width:
            rows.append(row)
            row, used = [], 0
        row.append((glyph, level))
        used += n
        if ch == "\n":
            rows.append(row)
            row, used = [], 0
    if row:
        rows.append(row)
    return rows


def colored_text(text: str, levels, palette, dark, width: int, color: bool) -> Text:
    """Each character on a background for its level (color), or, without color, each line of
    text with a line of digits under it: the level of the character above."""
    from rich.cells import cell_len

    out = Text()
    for row in _layout(text, levels, max(8, width)):
        if color:
            for glyph, level in row:
                style = "dim" if level is None else \
                    f"{'white' if level in dark else 'black'} on color({palette[level]})"
                out.append(glyph, style=style)
            out.append("\n")
        else:
            out.append("".join(g for g, _ in row) + "\n")
            out.append("".join(("-" if lv is None else str(lv)).ljust(cell_len(g))
                               for g, lv in row) + "\n", style="dim")
    out.rstrip()
    return out


def _scale(labels, palette, dark) -> Text:
    out = Text()
    for level, label in enumerate(labels):
        out.append(f" {label} ", style=f"{'white' if level in dark else 'black'} on "
                                       f"color({palette[level]})")
    return out


def text_views(tr: dict, width: int, color: bool) -> list:
    """The text colored by the model's surprise, then by each chosen hidden unit."""
    head = Text(f"surprise: -log p of each character given the ones before it; "
                f"{tr['characters']:,} characters, mean {_figures_text(tr)}", style="bold")
    key = (_scale([*map(str, range(9)), "9+"], SURPRISE_BG, _DARK_SURPRISE) if color else
           Text("digit under each character: its surprise in whole bits (0: under 1 bit, "
                "9: 9 or more; -: the first character, which has no context)", style="dim"))
    if color:
        key = Text("bits: ").append_text(key).append(
            "  (dim: the first character, which has no context)", style="dim")
    out = [head, key, colored_text(tr["text"], [surprise_level(s) for s in tr["surprise"]],
                                   SURPRISE_BG, _DARK_SURPRISE, width, color)]
    for n in tr["neurons"]:
        out.append(Text(f"\nlayer {n['layer']}, unit {n['unit']}: activation after each "
                        f"character (variance {n['variance']:.3f} over the text)", style="bold"))
        centers = [f"{(2 * k - 9) / 10:+.1f}".replace("0.", ".") for k in range(10)]
        out.append(Text("activation: ").append_text(
            _scale(centers, ACTIVATION_BG, _DARK_ACTIVATION)) if color
            else Text("digit under each character: activation from 0 (-1) through 4-5 (0) "
                      "to 9 (+1)", style="dim"))
        out.append(colored_text(tr["text"], [activation_level(a) for a in n["activations"]],
                                ACTIVATION_BG, _DARK_ACTIVATION, width, color))
    return out


# ----------------------------------------------------------------------------- eval

@contextmanager
def eval_progress(console: Console | None, total: int):
    """A transient bar on a terminal: yields a callback on_progress(done, total), or None
    when there is no console or it is not a terminal."""
    if console is None or not console.is_terminal:
        yield None
        return
    progress = Progress(TextColumn("evaluating"), BarColumn(bar_width=40),
                        TextColumn("{task.percentage:>5.1f}%"), TextColumn("{task.fields[n]}"),
                        console=console, transient=True, redirect_stdout=False,
                        redirect_stderr=False)
    with progress:
        task = progress.add_task("eval", total=total, n="")

        def update(done: int, of: int) -> None:
            progress.update(task, completed=done, total=of, n=f"{done:,}/{of:,} characters")

        yield update


def eval_lines(result: dict) -> str:
    """The figures of ``charrnn eval`` as plain aligned lines (stdout: grep-able)."""
    lines = [f"model        {one_line(result['model'])}",
             f"text         {one_line(result['text'])}: {result['characters']:,} characters, "
             f"{result['predictions']:,} predictions"]
    unk = result["unknown"]
    if unk["count"]:
        lines.append(f"skipped      {unk['count']:,} unknown character(s): "
                     + ", ".join(one_line(u["escaped"]) for u in unk["chars"]))
    lines += [f"loss         {result['loss']:.4f} nats/char",
              f"perplexity   {ppl(result['loss'])}",
              f"bits/char    {bpc(result['loss'])}"]
    return "\n".join(lines)
