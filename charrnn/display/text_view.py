"""Text colored by the model: surprise per character and neuron activations (``inspect
--text``), and the figures of ``charrnn eval``."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.text import Text

from ..references import reference_note
from .base import LN2, bpc, figures_text, one_line, ppl

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


def glyph(ch: str) -> str:
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
        shown = glyph(ch)
        n = cell_len(shown)
        if row and used + n > width:
            rows.append(row)
            row, used = [], 0
        row.append((shown, level))
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
    n = tr["characters"]
    mean = (f"mean {figures_text(tr)}" if n > 1
            else "nothing to predict: the first character has no context")
    head = Text(f"surprise: -log p of each character given the ones before it; "
                f"{n:,} character{'' if n == 1 else 's'}, {mean}", style="bold")
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
             f"{result['predictions']:,} prediction{'' if result['predictions'] == 1 else 's'}"]
    unk = result["unknown"]
    if unk["count"]:
        lines.append(f"skipped      {unk['count']:,} unknown character(s): "
                     + ", ".join(one_line(u["escaped"]) for u in unk["chars"]))
    lines += [f"loss         {result['loss']:.4f} nats/char",
              f"perplexity   {ppl(result['loss'])}",
              f"bits/char    {bpc(result['loss'])}"]
    refs = result.get("references")
    if refs is not None:
        lines += [f"references   {reference_note(refs, 'the training text')} (nats/char)",
                  f"fitted to    {fitted_text(refs)}"]
    return "\n".join(lines)


def fitted_text(refs: dict) -> str:
    """What ``eval --corpus`` fitted its references to: "sonnets.txt: 86,085 training
    characters, without the last 9,565, which the model's run held out"."""
    fitted = f"{one_line(refs['corpus'])}: {refs['training_chars']:,} training characters"
    if refs["fit_chars"] < refs["training_chars"]:
        fitted += f", the last {refs['fit_chars']:,} of them"
    if refs["held_out"]:
        fitted += f", without the last {refs['held_out']:,}, which the model's run held out"
    return fitted


# ----------------------------------------------------------------------------- copy check

SHOWN_SPAN = 72  # characters of a sample's longest verbatim span quoted by the copy check


def copy_lines(reports, corpus: str) -> list[str]:
    """The copy check of ``charrnn sample --check`` (for stderr): per sample, a
    ``copies.CopyReport``'s summary and the start of its longest verbatim span, escaped."""
    lines = [f"copy check against {one_line(corpus)} (the generated text, not the prime):"]
    for i, report in enumerate(reports, 1):
        lines.append(f"  sample {i}: {report.summary()}")
        if report.longest:
            more = " ..." if report.longest > SHOWN_SPAN else ""
            lines.append(f'    longest: "{one_line(report.longest_text[:SHOWN_SPAN])}"{more}')
    return lines
