"""Everything rich: the training view (live bar or plain log lines), tables and colored text.

All of it goes to stderr except what a command produces as its result. Text that comes from
a model file or a corpus is passed through ``safe()`` so it cannot carry terminal escapes or
rich markup to the screen.
"""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from .data import escape_char

LN2 = math.log(2)
PLAIN_EVERY = 10.0  # seconds between log lines when stderr is not a terminal


def make_console(stderr: bool = True, no_color: bool = False) -> Console:
    # NO_COLOR in the environment is honoured by rich itself
    return Console(stderr=stderr, no_color=no_color or None, highlight=False)


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


def _eta(r) -> float | None:
    """Seconds left: by steps (from the recent rate) or by the time limit, whichever is sooner."""
    left = []
    if r.total_steps and r.chars_per_s > 0 and r.info.get("chars_per_step"):
        left.append((r.total_steps - r.step) * r.info["chars_per_step"] / r.chars_per_s)
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


def status_line(r) -> str:
    """One line with every figure of the run (plain mode, and the text beside the bar)."""
    step = f"step {r.step}" + (f"/{r.total_steps}" if r.total_steps else "")
    parts = [step, f"epoch {r.epoch:.2f}",
             f"loss {_loss(r.train_loss)} (ppl {ppl(r.train_loss)})"]
    if r.val_loss is not None or r.best_val is not None:
        parts.append(f"val {_loss(r.val_loss)} (ppl {ppl(r.val_loss)}, {bpc(r.val_loss)} bpc)")
        parts.append(f"best {_loss(r.best_val)} @{r.best_step}")
    parts.append(_rate(r.chars_per_s))
    parts.append(f"{clock(r.elapsed)} elapsed, ETA {clock(_eta(r))}")
    return " | ".join(parts)


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
            self.progress = Progress(
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

    def print(self, *items) -> None:
        (self.progress.console if self.progress else self.console).print(*items)

    def update(self, r) -> None:
        r.info.setdefault("chars_per_step", self.chars_per_step)
        if r.kind == "start":
            self.start_info = r.info
            self.chars_per_step = r.info["train"].batch_size * r.info["train"].seq_len
            self.console.print(start_summary(r), soft_wrap=True)
        elif r.kind == "notice":
            self.print(Text(f"note: {r.text}", style="yellow"))
        elif r.kind == "sample":
            self.print(Text(f"--- sample at step {r.step} ---", style="dim"))
            self.print(Text(safe(r.text)))
            self.print(Text("---", style="dim"))
        elif r.kind == "eval" and not self.live:
            self.console.print(status_line(r), markup=False, soft_wrap=True)
            self.last_plain = time.monotonic()
        elif r.kind == "saved" and not self.live:
            pass
        if self.progress is not None and r.kind in ("step", "eval", "saved", "done"):
            done, total = _fraction(r)
            self.progress.update(self.task, completed=done, total=total or None,
                                 stats=escape(status_line(r)))
        if not self.live and r.kind == "step":
            now = time.monotonic()
            if now - self.last_plain >= PLAIN_EVERY:
                self.console.print(status_line(r), markup=False, soft_wrap=True)
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
               "interrupted": "interrupted (Ctrl-C)"}[info["stopped"]]
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
