"""`charrnn sample`: streamed text on stdout, flushed as it comes (a closed pipe ends it
quietly: see common._Group)."""

from __future__ import annotations

import inspect
import os
import sys
from contextlib import suppress

import click

from ..blas import one_thread
from ..errors import flag
from ..sampling import Stream
from ..vocab import UNKNOWN_POLICIES, leave_out
from .common import (
    CONTEXT,
    ENCODING,
    apply_unknown_option,
    debug_option,
    given_options,
    library_option,
    load_model,
    main,
    normalised,
    option_range,
    read_text,
)

_STREAM = inspect.signature(Stream).parameters  # the library's defaults of sampling


def _same_file(a, b) -> bool:
    """Whether two open streams write to the same file or pipe."""
    try:
        x, y = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (OSError, ValueError, AttributeError):  # io.StringIO & co have no descriptor
        return False
    return (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino)


class _Out:
    """stdout for streamed text: flushed as it goes. On a terminal, the characters of
    ``chars`` that a terminal would obey rather than show (`data.terminal_form`) are written
    escaped, as ``\\x1b`` / <U+202E>, or as JSON's ``\\u001b`` inside ``json`` lines: a model
    trained on text with terminal escape codes cannot drive the terminal. Files and pipes get
    the exact text."""

    def __init__(self, chars=(), json: bool = False):
        from ..data import terminal_form

        self.stream = sys.stdout
        self.interactive = self.stream.isatty()
        self.shares_stderr = _same_file(self.stream, sys.stderr)  # `2>&1`: one line for both
        self.pending = 0
        self.at_line_start = True
        acting = [c for c in chars if terminal_form(c) != c] if self.interactive else []
        self.table = {ord(c): f"\\u{ord(c):04x}" if json else terminal_form(c)
                      for c in acting}  # all in the BMP: one \u escape each

    def write(self, text: str, flush: bool = False) -> None:
        if self.table:
            text = text.translate(self.table)
        was_at_line_start = self.at_line_start
        if text:  # before the write: a Ctrl-C during it leaves a line break too many at worst
            self.at_line_start = text.endswith("\n")
        try:
            self.stream.write(text)
        except UnicodeEncodeError:  # raised before anything is written
            self.at_line_start = was_at_line_start
            raise
        self.pending += len(text)
        if flush or self.interactive or self.pending >= 256:
            self.stream.flush()
            self.pending = 0

    def end_line(self) -> None:
        """On a terminal, or where stderr goes too, a line break if the text written so far
        ends without one (before an error message)."""
        if (self.interactive or self.shares_stderr) and not self.at_line_start:
            with suppress(OSError, ValueError):
                self.write("\n", flush=True)


@main.command(context_settings=CONTEXT)
@click.option("-m", "--model", "model_path", default="model.npz", show_default=True,
              envvar="CHARRNN_MODEL", show_envvar=True, help="Model file to sample from.")
@click.option("-n", "--length", type=option_range(click.IntRange, 0), default=1000,
              show_default=True, help="Characters to generate (after the prime).")
@library_option("-t", "--temperature", "--temp",
                type=option_range(click.FloatRange, 0, lo_open=True),
                shown=f"{_STREAM['temperature'].default:g}",
                help="Below 1: safer, more repetitive text; above 1: wilder.")
@click.option("--top-k", type=option_range(click.IntRange, 1), default=None,
              help="Draw only from the K likeliest characters.")
@click.option("--top-p", type=option_range(click.FloatRange, 0, 1, lo_open=True), default=None,
              help="Draw only from the likeliest characters holding this much probability.")
@click.option("--greedy", is_flag=True, help="Always take the likeliest character.")
@click.option("-p", "--prime", default="", help="Text the model reads first and continues.")
@click.option("--prime-file", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              default=None, help="Read the prime from a file (- for stdin).")
@click.option("--encoding", type=ENCODING, default="utf-8", show_default=True,
              help="Text encoding of --prime-file (e.g. latin-1, cp1252).")
@click.option("--no-echo-prime", is_flag=True, help="Do not print the prime before the text.")
@click.option("--unknown", type=click.Choice(UNKNOWN_POLICIES), default="error",
              show_default=True, help="Prime characters the model never saw: refuse, or drop.")
@click.option("--seed", type=option_range(click.IntRange, 0), default=None,
              help="Same seed, same text (default: a fresh random seed, shown on a terminal "
                   "and in --json).")
@click.option("--num-samples", type=option_range(click.IntRange, 1, 100_000), default=1,
              show_default=True, help="Independent samples, generated in parallel.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per sample on stdout.")
@debug_option
def sample(model_path, length, temperature, top_k, top_p, greedy, prime, prime_file,
           encoding, no_echo_prime, unknown, seed, num_samples, as_json):
    """Generate text from a trained model, streamed to stdout as it is produced."""
    import json
    from collections import Counter

    drawing = given_options(click.get_current_context(), ["temperature", "top_k", "top_p"])
    if greedy:
        clash = [flag(name) for name in drawing]
        if clash:
            raise click.UsageError(f"--greedy always takes the likeliest character; "
                                   f"it cannot be combined with {', '.join(clash)}")
        if num_samples > 1:
            click.echo("note: with --greedy every sample is the same text", err=True)
    if prime_file is not None:
        if prime:
            raise click.UsageError("give --prime or --prime-file, not both")
        prime = read_text([prime_file], encoding, "prime").text
    else:
        prime = normalised(prime)
    model = load_model(model_path)
    if seed is None:  # drawn here, so it can be shown and the text repeated
        import secrets

        seed = secrets.randbelow(2**32)
        if sys.stderr.isatty():
            click.echo(f"seed {seed} (--seed {seed} gives this text again)", err=True)
    missing = apply_unknown_option(model.vocab, Counter(prime), unknown, "prime")
    with one_thread():  # one character at a time
        stream = model.stream(length, prime=prime, greedy=greedy, seed=seed,
                              num_samples=num_samples, skip_unknown=True, **drawing)
        kept = leave_out(prime, missing)
        head = "" if no_echo_prime else kept
        out = _Out(model.vocab.chars, json=as_json)
        try:
            if as_json:
                for i, text in enumerate(stream.texts()):
                    out.write(json.dumps({"sample": i + 1, "prime": kept, "text": text,
                                          "seed": seed}, ensure_ascii=False) + "\n")
            elif num_samples == 1:
                out.write(head)
                for ch in stream:
                    out.write(ch)
                out.write("\n", flush=True)
            else:
                for i, text in enumerate(stream.texts()):
                    out.write(f"{'' if i == 0 else chr(10)}=== sample {i + 1} of {num_samples} "
                              f"===\n{head}{text}\n")
            out.write("", flush=True)
        except BaseException:
            out.end_line()  # so that a message (Ctrl-C, an error) starts on its own line
            raise
