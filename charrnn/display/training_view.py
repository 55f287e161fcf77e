"""The training view: a live bar with the losses below it on a terminal, log lines elsewhere;
the start and end summaries of a run."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from ..config import shape_name
from ..errors import option
from ..references import reference_note
from .base import (
    added_text,
    bpc,
    clock,
    loss_text,
    origin_text,
    ppl,
    rate_text,
    safe,
    time_split_text,
    validation_text,
)

PLAIN_EVERY = 10.0  # seconds between log lines when stderr is not a terminal


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


def progress_part(r) -> str:
    """Where the run is: step, epoch, speeds (while stepping, and overall), time."""
    step = f"step {r.step}" + (f"/{r.total_steps}" if r.total_steps else "")
    speed = f"steps {rate_text(r.chars_per_s)}, overall {rate_text(r.overall_chars_per_s)}"
    return " | ".join([step, f"epoch {r.epoch:.2f}", speed,
                       f"{clock(r.elapsed)} elapsed, ETA {clock(r.eta)}"])


def metrics_part(r) -> str:
    """How the model does: smoothed training loss, latest and best validation."""
    parts = [f"loss {loss_text(r.train_loss)} (ppl {ppl(r.train_loss)})"]
    if r.val_loss is not None or r.best_val is not None:
        parts.append(f"val {loss_text(r.val_loss)} (ppl {ppl(r.val_loss)}, {bpc(r.val_loss)} bpc)")
        parts.append(f"best {loss_text(r.best_val)} @{r.best_step}")
    return " | ".join(parts)


def status_line(r) -> str:
    """One line with every figure of the run (the plain log mode)."""
    return f"{progress_part(r)} | {metrics_part(r)}"


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
        self.console.print(status_line(r), markup=False, soft_wrap=True)

    def print(self, *items) -> None:
        (self.progress.console if self.progress else self.console).print(*items)

    def update(self, r) -> None:
        if r.kind == "start":
            self.start_info = r.info
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
        if self.progress is not None and r.kind in ("step", "eval", "saved", "done"):
            done, total = _fraction(r)
            self.progress.update(self.task, completed=done, total=total or None,
                                 stats=escape(progress_part(r)))
            self.progress.metrics = metrics_part(r)
        if not self.live and r.kind == "step":
            now = time.monotonic()
            if now - self.last_plain >= PLAIN_EVERY:
                self._log(r)
                self.last_plain = now


def start_summary(r) -> Text:
    m, t, info = r.info["model"], r.info["train"], r.info
    corpus, origin = info["corpus"], info.get("origin")
    distinct = sum(1 for k in corpus["char_counts"] if k)  # the model's may hold more
    lines = [
        f"corpus {safe(corpus['name'])}: {corpus['chars']:,} characters, "
        f"{distinct} distinct; {info['train_chars']:,} train / {info['val_chars']:,} "
        f"validation",
        f"model {shape_name(m.cell, m.hidden_size, m.num_layers)}, dropout {m.dropout:g}, "
        f"{info['parameters']:,} parameters"
        + (f", fine-tuned from {origin_text(origin)}" if origin else "")
        + (f" {chosen_text(info['chosen'])}" if info.get("chosen") else ""),
        f"training {t.optimizer} lr {t.lr:g}, batch {t.batch_size} x seq {t.seq_len}, "
        f"clip {t.grad_clip:g}, weight decay {t.weight_decay:g}, {info['steps_per_epoch']:,} step"
        f"{'' if info['steps_per_epoch'] == 1 else 's'}/epoch, seed {t.seed}"
        + (f", time limit {clock(t.max_time)}" if t.max_time else "")
        + (f"; resuming at step {info['resumed_at']:,}" if info["resumed_at"] else ""),
    ]
    if info["val_chars"]:
        lines.append(f"validation every {info['eval_every']:,} steps, on "
                     f"{validation_text(info['validation'])}")
    if info.get("references"):  # a run without validation has none
        lines.append(f"references on the same text, nats/char: "
                     f"{reference_note(info['references'])}")
    if origin and not info["resumed_at"]:
        lines.insert(2, vocabulary_line(origin["added"], m.vocab_size,
                                        m.vocab_size - distinct))
    return Text("\n".join(lines))


def chosen_text(chosen: dict) -> str:
    """"(chosen for 96k characters of text and 2 minutes; --dropout, --epochs to choose
    yourself)": what charrnn chose for the run, and the options that override it."""
    if "init_from" in chosen["options"]:  # the built-in base, fine-tuned by default
        overrides = f"{option('from_scratch', True)} for a new model"
    else:
        overrides = ", ".join(map(option, chosen["options"])) + " to choose yourself"
    return f"(chosen for {safe(chosen['reason'])}; {overrides})"


def vocabulary_line(added: str, size: int, unused: int) -> str:
    """How a fine-tuned model's vocabulary was made: "vocabulary: 65 from the base (12 not in
    this corpus) + 3 new: 'é' 'ç' '—'"."""
    kept = f"vocabulary: {size - len(added)} from the base" + (
        f" ({unused} not in this corpus)" if unused else "")
    return kept + (f" + {len(added)} new: {safe(added_text(added))}" if added else
                   ", none new")


def training_summary(r) -> Table:
    """The table shown at the end of a run."""
    info = r.info
    table = Table(title="training summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    stopped = {"done": "finished", "time": "time limit reached",
               "interrupted": "interrupted (saved where it stopped)",
               "stalled": "stopped early: validation stopped improving"}[info["stopped"]]
    table.add_row("result", stopped)
    table.add_row("steps", f"{r.step:,} ({info['steps_this_run']:,} in this run), "
                  f"epoch {r.epoch:.2f}")
    table.add_row("time", time_split_text(info["seconds"], info["time_split"])
                  + (f" ({clock(info['total_seconds'])} in all)"
                     if info["total_seconds"] > info["seconds"] else ""))
    table.add_row("speed", f"{rate_text(info['chars_per_s'])} overall, "
                  f"{rate_text(info['stepping_chars_per_s'])} while stepping")
    if r.best_val is not None:
        table.add_row("best validation", f"{r.best_val:.4f} nats/char at step {r.best_step} "
                      f"(perplexity {ppl(r.best_val)}, {bpc(r.best_val)} bits/char)")
    table.add_row("saved to", escape(safe(r.path)))
    return table
