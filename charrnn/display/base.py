"""The console and the small formatting helpers every view shares.

Text that comes from a model file or a corpus is passed through ``safe()`` (or ``one_line()``
for a table cell) so it cannot carry terminal escapes or rich markup to the screen.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys

from rich.console import Console

from ..data import escape_char, terminal_form

LN2 = math.log(2)


class _Console(Console):
    """A console whose reader may leave (`| head`): then it falls silent instead of exiting,
    so a training run goes on and still saves."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.file.fileno())


REDIRECTED_WIDTH = 120  # columns for output to a file or pipe (rich would assume 80)


def make_console(stderr: bool = True, no_color: bool = False) -> Console:
    # NO_COLOR in the environment is honoured by rich itself; a file or pipe has no width, and
    # at rich's 80 columns wide tables would cut their figures short, so it gets more
    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = REDIRECTED_WIDTH
    return _Console(stderr=stderr, no_color=no_color or None, highlight=False, width=width)


def safe(text: str) -> str:
    """Text from a file made harmless for the terminal: what a terminal would obey rather than
    show (controls but line break and tab, bidi controls) escaped, everything else as it is
    (`data.terminal_form`), so no ESC sequence reaches the terminal."""
    return "".join(map(terminal_form, text))


def ppl(loss: float | None) -> str:
    if loss is None or not math.isfinite(loss):
        return "-"
    try:
        return f"{math.exp(loss):.2f}" if loss < 20 else f"{math.exp(loss):.2e}"
    except OverflowError:  # a diverged model's loss
        return "inf"


def bpc(loss: float | None) -> str:
    return "-" if loss is None or not math.isfinite(loss) else f"{loss / LN2:.3f}"


def loss_text(loss: float | None) -> str:
    if loss is None or not math.isfinite(loss):
        return "-"
    return f"{loss:.4f}" if abs(loss) < 1e6 else f"{loss:.4e}"


def clock(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def rate_text(chars_per_s: float) -> str:
    return f"{chars_per_s / 1000:.1f}k chars/s" if chars_per_s >= 1000 else \
        f"{chars_per_s:.0f} chars/s"


def one_line(text: str) -> str:
    """A name or value for a table cell or a summary line: everything that is not plainly
    visible escaped (controls, newlines and tabs too, invisible and format characters as
    U+XXXX), so a value stays on its line and hides nothing."""
    return "".join(ch if ch.isprintable() else escape_char(ch).strip("'") for ch in str(text))


def figures_text(f: dict | None, nats: float | None = None) -> str:
    """'1.8234 nats/char (perplexity 6.19, 2.631 bits/char)' from diagnostics.figures()."""
    loss = nats if f is None else f.get("loss")
    if loss is None:
        return "-"
    return f"{loss:.4f} nats/char (perplexity {ppl(loss)}, {bpc(loss)} bits/char)"


def time_split_text(seconds: float, split: dict[str, float]) -> str:
    """"10:00: 9:31 training steps, 0:22 validation, 0:07 saving" (phases that took time)."""
    names = {"steps": "training steps", "validation": "validation", "saving": "saving",
             "samples": "samples"}
    parts = [f"{clock(split[k])} {name}" for k, name in names.items()
             if k == "steps" or split.get(k, 0) >= 0.5]
    return f"{clock(seconds)}: " + ", ".join(parts)


def validation_text(record: dict) -> str:
    """What validation scores: "all 9,565 held-out characters", or the pieces of a long text."""
    if "pieces" not in record:
        return f"all {record['of']:,} held-out characters"
    return (f"{record['pieces']} evenly spaced pieces ({record['chars']:,} characters) of the "
            f"{record['of']:,} held out")
NAMED_CHARS = 20  # new characters a summary names one by one; the rest are counted


def origin_text(origin: dict) -> str:
    """A fine-tuned model's base in one line: 'base.npz (sha256 1a2b3c4d5e6f..., 5,000 steps,
    best validation 1.4912 nats/char)'; what the record lacks is left out."""
    about = []
    if origin.get("sha256"):
        about.append(f"sha256 {one_line(origin['sha256'])[:12]}...")
    if isinstance(origin.get("steps"), int):
        about.append(f"{origin['steps']:,} steps")
    if isinstance(origin.get("val_loss"), int | float):
        about.append(f"best validation {loss_text(origin['val_loss'])} nats/char")
    name = one_line(origin["name"]) if origin.get("name") else "a model in memory"
    return name + (f" ({', '.join(about)})" if about else "")


def added_text(added: str) -> str:
    """New characters, each escaped for the terminal: "'é' 'ç' '—'" (the first NAMED_CHARS,
    then how many more)."""
    shown = " ".join(escape_char(c) for c in added[:NAMED_CHARS])
    more = len(added) - NAMED_CHARS
    return shown + (f" and {more:,} more" if more > 0 else "")
